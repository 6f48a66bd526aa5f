"""The synth3d model grid: CTs and label maps resampled to a fixed shape and spacing, HU
normalisation, and the mask condition (a body channel plus one channel per label group, as voxel
fractions) on the model grid and on the latent grid.

The model grid of a volume keeps its voxel axes' directions and its centre, so world (RAS mm)
coordinates, landmarks included, mean the same on both grids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from xrayfactory.cohort.deform import DeformationParams, draw_warp
from xrayfactory.cohort.volumes import Volume

AIR_HU = -1024.0


@dataclass(frozen=True, kw_only=True)
class GridSpec:
    """Shape and spacing of the model grid, the HU window and the conditioning label groups."""

    shape: tuple[int, int, int]
    spacing_mm: float
    hu_range: tuple[float, float] = (-1024.0, 1600.0)
    body_hu: float = -500.0
    groups: tuple[tuple[str, tuple[int, ...]], ...] = ()
    bone: tuple[str, ...]

    @property
    def channels(self) -> list[str]:
        """Condition channel names: body first, then the label groups."""
        return ["body", *[name for name, _ in self.groups]]

    def bone_labels(self) -> list[int]:
        return [i for name, ids in self.groups if name in self.bone for i in ids]


def grid_spec(section: dict) -> GridSpec:
    """GridSpec from a config `synth3d` section."""
    return GridSpec(
        shape=tuple(section["shape"]),
        spacing_mm=float(section["spacing_mm"]),
        hu_range=tuple(section["hu_range"]),
        body_hu=float(section["body_hu"]),
        groups=tuple((k, tuple(v)) for k, v in section["condition"].items()),
        bone=tuple(section["bone"]),
    )


def model_affine(ref: Volume, spec: GridSpec) -> np.ndarray:
    """Affine of the model grid centred on `ref` with `ref`'s axis directions."""
    direction = ref.affine[:3, :3] / ref.spacing
    linear = direction * spec.spacing_mm
    centre = ref.voxel_to_world((np.asarray(ref.shape)[None] - 1) / 2)[0]
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = centre - linear @ ((np.asarray(spec.shape) - 1) / 2)
    return affine


def resample(
    data: np.ndarray,
    src_affine: np.ndarray,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    *,
    order: int,
    cval: float,
) -> np.ndarray:
    """`data` (on src_affine) at the voxels of (affine, shape). For order >= 1 the source is first
    Gaussian-smoothed where the target is coarser (sigma (ratio - 1) / 2 source voxels), so
    downsampling does not alias."""
    src_spacing = np.linalg.norm(src_affine[:3, :3], axis=0)
    ratio = np.linalg.norm(affine[:3, :3], axis=0) / src_spacing
    if order >= 1 and ratio.max() > 1:
        sigma = np.maximum(ratio - 1, 0) / 2
        data = ndi.gaussian_filter(data.astype(np.float32), sigma=sigma, mode="nearest")
    m = np.linalg.inv(src_affine) @ affine
    return ndi.affine_transform(
        data, m[:3, :3], offset=m[:3, 3], output_shape=shape, order=order, cval=cval
    )


def normalise_hu(hu: np.ndarray, spec: GridSpec) -> np.ndarray:
    lo, hi = spec.hu_range
    return np.clip((hu - lo) / (hi - lo), 0, 1).astype(np.float32)


def to_hu(x: np.ndarray, spec: GridSpec) -> np.ndarray:
    lo, hi = spec.hu_range
    return (lo + np.clip(x, 0, 1) * (hi - lo)).astype(np.float32)


def condition(
    seg: np.ndarray, body: np.ndarray, src_affine: np.ndarray, affine: np.ndarray, spec: GridSpec
) -> np.ndarray:
    """(C, *shape) voxel fractions on the model grid: body, then each label group."""
    masks = [body.astype(np.float32)] + [
        np.isin(seg, ids).astype(np.float32) for _, ids in spec.groups
    ]
    return np.stack(
        [resample(m, src_affine, affine, spec.shape, order=1, cval=0.0) for m in masks]
    ).clip(0, 1)


def latent_condition(cond: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, C, *shape) fractions -> the same fractions averaged over each latent voxel."""
    return F.avg_pool3d(cond, factor) if factor > 1 else cond


def grid_hu(ct: Volume, spec: GridSpec) -> Volume:
    """The CT's HU on its model grid (air outside the scan)."""
    affine = model_affine(ct, spec)
    return Volume(resample(ct.data, ct.affine, affine, spec.shape, order=1, cval=AIR_HU), affine)


def training_pair(ct: Volume, seg: Volume, spec: GridSpec) -> tuple[np.ndarray, np.ndarray]:
    """A training subject on its model grid: normalised CT (1, *shape) and condition (C, *shape)."""
    hu = grid_hu(ct, spec)
    cond = condition(seg.data, ct.data > spec.body_hu, ct.affine, hu.affine, spec)
    return normalise_hu(hu.data, spec)[None], cond


@dataclass(frozen=True)
class NewMask:
    """A deformed training mask on the model grid: what one generated CT must follow."""

    condition: np.ndarray  # (C, *shape) fractions
    seg: np.ndarray  # label map on the model grid (nearest)
    affine: np.ndarray
    landmarks: dict[str, np.ndarray]
    source: str


def deformed_mask(
    source: str,
    ct: Volume,
    seg: Volume,
    landmarks: dict[str, np.ndarray],
    spec: GridSpec,
    params: DeformationParams,
    rng: np.random.Generator,
) -> NewMask:
    """Deform a training subject's label map, body mask and landmarks with the cohort's
    deformation model and put the result on the model grid."""
    warp = draw_warp(seg, params, rng)
    new_seg = warp.resample(seg, order=0)
    body = warp.resample(Volume((ct.data > spec.body_hu).astype(np.uint8), ct.affine), order=0)
    names = list(landmarks)
    moved = warp.push(np.stack([landmarks[n] for n in names]))
    affine = model_affine(ct, spec)
    return NewMask(
        condition=condition(new_seg, body, ct.affine, affine, spec),
        seg=resample(new_seg, ct.affine, affine, spec.shape, order=0, cval=0).astype(np.int16),
        affine=affine,
        landmarks={n: moved[i] for i, n in enumerate(names)},
        source=source,
    )
