"""Random smooth anatomical deformation (plus intensity variation) of a CT with its
segmentation and landmarks: how the demo cohort turns one real CT into K subjects.

The warp is a pull-back map phi: output world point x -> input world point
phi(x) = c + A (x - c) + u(x), with A a random rotation-and-scale about the volume centre c and u
a cubic B-spline displacement on a coarse control grid. Volumes are resampled at phi(x);
landmarks move to the q with phi(q) = p (solved by fixed-point iteration).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial.transform import Rotation

from xrayfactory.cohort.volumes import Volume
from xrayfactory.core.errors import InputError

# How the displacement's spline is evaluated from its (prefiltered) coefficients: pointwise and
# on the whole grid alike.
_SPLINE = {"order": 3, "mode": "nearest", "prefilter": False}


@dataclass(frozen=True, kw_only=True)
class DeformationParams:
    control_spacing_mm: float = 80.0
    displacement_sd_mm: float = 3.0
    scale_sd: float = 0.05
    rotation_sd_deg: float = 2.0
    bone_density_sd: float = 0.08
    soft_tissue_offset_sd_hu: float = 15.0
    noise_sd_hu: float = 10.0


class Warp:
    """A sampled random pull-back map for one grid (see module docstring)."""

    def __init__(self, grid: Volume, params: DeformationParams, rng: np.random.Generator):
        self.grid = grid
        extent = np.asarray(grid.shape) * grid.spacing
        self.centre = grid.voxel_to_world((np.asarray(grid.shape)[None] - 1) / 2)[0]
        rot = Rotation.from_rotvec(np.deg2rad(params.rotation_sd_deg) * rng.standard_normal(3))
        self.linear = rot.as_matrix() @ np.diag(1 + params.scale_sd * rng.standard_normal(3))
        n_ctrl = np.maximum(np.ceil(extent / params.control_spacing_mm).astype(int) + 1, 4)
        # displacement (mm, world axes) on a control grid spanning the volume's voxel extent
        coeff = params.displacement_sd_mm * rng.standard_normal((3, *n_ctrl))
        self._coeff = [ndi.spline_filter(c, order=3, mode="nearest") for c in coeff]
        self._ctrl_scale = (n_ctrl - 1) / np.maximum(np.asarray(grid.shape) - 1, 1)

    def displacement(self, points: np.ndarray) -> np.ndarray:
        """u at world points (N, 3) -> (N, 3) mm."""
        ctrl = (self.grid.world_to_voxel(points) * self._ctrl_scale).T
        return np.stack(
            [ndi.map_coordinates(c, ctrl, **_SPLINE) for c in self._coeff],
            axis=1,
        )

    def _affine(self, points: np.ndarray) -> np.ndarray:
        """c + A (x - c): phi without its displacement."""
        return self.centre + (points - self.centre) @ self.linear.T

    def pull(self, points: np.ndarray) -> np.ndarray:
        """phi: output world points -> input world points."""
        points = np.asarray(points, float)
        return self._affine(points) + self.displacement(points)

    def push(self, points: np.ndarray, *, tol_mm: float = 1e-4, max_iter: int = 200) -> np.ndarray:
        """phi^-1: where input world points land in the output (fixed-point iteration)."""
        points = np.atleast_2d(np.asarray(points, float))
        lin_inv = np.linalg.inv(self.linear)
        q = points.copy()
        for _ in range(max_iter):
            residual = self.pull(q) - points
            q = q - residual @ lin_inv.T
            if np.abs(residual).max() < tol_mm:
                return q
        raise InputError(
            "config key cohort.deformation",
            "landmark transport did not converge: the deformation is too strong "
            "(reduce displacement_sd_mm)",
        )

    def min_jacobian(self) -> float:
        """Smallest Jacobian determinant of phi over a coarse lattice (must stay positive)."""
        idx = np.stack(
            np.meshgrid(*[np.linspace(0, s - 1, 12) for s in self.grid.shape], indexing="ij"), -1
        )
        x = self.grid.voxel_to_world(idx.reshape(-1, 3))
        h = 0.5
        jac = np.stack(
            [(self.pull(x + h * e) - self.pull(x - h * e)) / (2 * h) for e in np.eye(3)], -1
        )
        return float(np.linalg.det(jac).min())

    def grid_displacement(self) -> np.ndarray:
        """u at every voxel of the grid, (*shape, 3) mm: the cubic B-spline is a tensor product,
        so it is a product of one small weight matrix per axis (the same values as
        `displacement` at the voxels, without a spline evaluation per voxel)."""
        weights = [
            _spline_weights(n_ctrl, n_vox, scale)
            for n_ctrl, n_vox, scale in zip(
                self._coeff[0].shape, self.grid.shape, self._ctrl_scale, strict=True
            )
        ]
        return np.stack(
            [np.einsum("abc,ia,jb,kc->ijk", c, *weights, optimize=True) for c in self._coeff], -1
        )

    @functools.cached_property
    def _sources(self) -> np.ndarray:
        """phi(x) for every voxel x of the grid, (N, 3) world points: shared by the volumes."""
        x = self.grid.voxel_to_world(np.indices(self.grid.shape).reshape(3, -1).T)
        return self._affine(x) + self.grid_displacement().reshape(-1, 3)

    def resample(self, volume: Volume, *, order: int) -> np.ndarray:
        """Volume values at phi(x) for every voxel x of the grid (edge values outside)."""
        src = volume.world_to_voxel(self._sources).T
        out = ndi.map_coordinates(volume.data, src, order=order, mode="nearest")
        return out.reshape(self.grid.shape)


def _spline_weights(n_ctrl: int, n_vox: int, scale: float) -> np.ndarray:
    """(n_vox, n_ctrl): the weight of each control point at each voxel along one axis (the 1D
    spline of each unit coefficient vector, at `displacement`'s control-grid scale)."""
    at = np.arange(n_vox, dtype=float)[None] * scale
    return np.stack(
        [ndi.map_coordinates(unit, at, **_SPLINE) for unit in np.eye(n_ctrl)],
        axis=1,
    )


def draw_warp(grid: Volume, params: DeformationParams, rng: np.random.Generator) -> Warp:
    """A random warp of `grid` whose Jacobian determinant stays above 0.2 (a diffeomorphism)."""
    for _ in range(20):
        warp = Warp(grid, params, rng)
        if warp.min_jacobian() > 0.2:
            return warp
    raise InputError(
        "config key cohort.deformation.displacement_sd_mm",
        "could not draw a diffeomorphic deformation in 20 tries: reduce it",
    )


def vary_intensity(
    hu: np.ndarray, params: DeformationParams, rng: np.random.Generator
) -> np.ndarray:
    """Random bone density scale, soft-tissue offset and noise (air left as it is)."""
    bone_scale = max(0.5, 1 + params.bone_density_sd * rng.standard_normal())
    offset = params.soft_tissue_offset_sd_hu * rng.standard_normal()
    out = hu.astype(np.float32).copy()
    bone = out > 200
    soft = (out > -200) & ~bone
    out[bone] = 200 + (out[bone] - 200) * bone_scale
    out[soft] += offset
    body = out > -900
    out[body] += params.noise_sd_hu * rng.standard_normal(int(body.sum())).astype(np.float32)
    return out


def deform_subject(
    ct: Volume,
    seg: Volume,
    landmarks: dict[str, np.ndarray],
    params: DeformationParams,
    rng: np.random.Generator,
) -> tuple[Volume, Volume, dict[str, np.ndarray], Warp]:
    """One synthetic subject: warped CT (with intensity variation), segmentation and landmarks."""
    warp = draw_warp(ct, params, rng)
    new_ct = vary_intensity(warp.resample(ct, order=1), params, rng)
    new_seg = warp.resample(seg, order=0).astype(seg.data.dtype)
    names = list(landmarks)
    moved = warp.push(np.stack([landmarks[n] for n in names])) if names else np.empty((0, 3))
    return (
        Volume(new_ct, ct.affine),
        Volume(new_seg, ct.affine),
        {n: moved[i] for i, n in enumerate(names)},
        warp,
    )
