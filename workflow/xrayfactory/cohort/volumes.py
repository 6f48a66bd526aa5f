"""CT and segmentation volumes: NIfTI I/O with the checks that turn bad files into clear errors.

World coordinates are millimetres in the NIfTI (RAS+) frame given by each file's affine:
+x towards the patient's right, +y anterior, +z superior. Any voxel orientation is accepted;
everything downstream works in world coordinates.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from xrayfactory.core.atomic import atomic_path
from xrayfactory.core.errors import InputError


@dataclass(frozen=True)
class Volume:
    """A 3D array on a grid: `affine` maps voxel indices (i, j, k) to world mm."""

    data: np.ndarray
    affine: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    def world_to_voxel(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world mm -> (N, 3) continuous voxel indices."""
        inv = np.linalg.inv(self.affine)
        return np.asarray(points, float) @ inv[:3, :3].T + inv[:3, 3]

    def voxel_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """(N, 3) voxel indices -> (N, 3) world mm."""
        return np.asarray(ijk, float) @ self.affine[:3, :3].T + self.affine[:3, 3]

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Whether world points lie inside the volume's extent (voxel centres +- half a voxel)."""
        ijk = self.world_to_voxel(np.atleast_2d(points))
        return np.all((ijk >= -0.5) & (ijk <= np.asarray(self.shape) - 0.5), axis=1)


def read_nifti(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A 3D volume's voxels and affine, checked to be readable, 3D and on a valid grid."""
    if not os.path.exists(path):
        raise InputError(path, "file does not exist")
    try:
        img = nib.load(os.fspath(path))
        data = np.asarray(img.dataobj)
    except (nib.filebasedimages.ImageFileError, EOFError, zlib.error, OSError, ValueError) as e:
        raise InputError(path, f"not a readable NIfTI file (corrupt or truncated?): {e}") from e
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(path, f"expected a 3D volume, got shape {data.shape}")
    affine = np.asarray(img.affine, float)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputError(path, f"invalid (non-finite or singular) affine:\n{affine}")
    return data, affine


def load_ct(path: str | os.PathLike) -> Volume:
    """Read a CT in Hounsfield units as float32 in C order (NIfTI's is Fortran order: ray
    casting reads C-ordered slabs); reject NaN/inf voxels."""
    data, affine = read_nifti(path)
    if not np.issubdtype(data.dtype, np.number):
        raise InputError(path, f"voxel type {data.dtype} is not numeric")
    data = np.ascontiguousarray(data, dtype=np.float32)
    bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise InputError(path, f"{bad} voxels are NaN or infinite")
    return Volume(data, affine)


def load_segmentation(path: str | os.PathLike, ct: Volume, ct_path: str | os.PathLike) -> Volume:
    """Read an integer label map that must share the CT's grid (shape and affine)."""
    data, affine = read_nifti(path)
    if data.shape != ct.shape:
        raise InputError(
            path, f"segmentation grid {data.shape} differs from the CT {ct_path} grid {ct.shape}"
        )
    if not np.allclose(affine, ct.affine, atol=1e-3):
        raise InputError(
            path,
            f"segmentation affine differs from the CT {ct_path} affine:\n{affine}\nvs\n{ct.affine}",
        )
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
            raise InputError(path, "label map holds non-integer or NaN values")
    return Volume(data.astype(np.int16), affine)


def save_nifti(path: str | os.PathLike, data: np.ndarray, affine: np.ndarray) -> None:
    """Write a NIfTI atomically (no partial file on failure)."""
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
