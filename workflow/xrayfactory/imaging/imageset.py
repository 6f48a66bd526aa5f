"""The image-set format: one HDF5 file per (arm, shard).

Datasets (N images, L landmarks):
  images      (N, H, W) float32  bone-bright intensities; attribute `intensity` says which:
                                 "log_attenuation" = -ln(I/I0) (DRRs), "processed" = clinical
                                 post-processed log image in [0, 1] (real / proxy-real),
                                 "normalised" = per-image 1st-99th percentile in [0, 1] (synth2d)
  landmarks   (N, L, 2) float32  pixel (col, row); may lie outside the image
  visible     (N, L)    bool     landmark projects onto the detector
  projection  (N, 3, 4) float64  P mapping world mm (RAS+) to pixels
  subject     (N,)      str
  view        (N, 6)    float32  lao, cran, roll (deg), tx, ty, tz (mm)
File attributes: arm, generator, generator_version, landmark_names, pixel_spacing_mm (at the
detector), magnification, intensity, proxy (True when the images are proxy-real); generated
sets add fold (the fold whose training subjects the generator learnt from) and trained_on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import h5py
import numpy as np

from xrayfactory import __version__
from xrayfactory.core.atomic import atomic_path
from xrayfactory.core.errors import InputError

DATASETS = ("images", "landmarks", "visible", "projection", "subject", "view")


@dataclass
class ImageSet:
    images: np.ndarray
    landmarks: np.ndarray
    visible: np.ndarray
    projection: np.ndarray
    subject: np.ndarray
    view: np.ndarray
    attrs: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    def check(self, where: str) -> None:
        """Consistent shapes across datasets, or an InputError naming `where`."""
        n = len(self.images)
        if self.images.ndim != 3:
            raise InputError(where, f"images must be (N, H, W), got {self.images.shape}")
        n_lm = len(self.attrs.get("landmark_names", []))
        expected = {
            "landmarks": (n, n_lm, 2),
            "visible": (n, n_lm),
            "projection": (n, 3, 4),
            "subject": (n,),
            "view": (n, 6),
        }
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise InputError(where, f"dataset {name} has shape {got}, expected {shape}")


def write_imageset(path: str | os.PathLike, s: ImageSet) -> None:
    """Write atomically; `attrs` must hold arm, generator, landmark_names, pixel_spacing_mm."""
    s.check(str(path))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset(
            "images",
            data=s.images.astype(np.float32),
            compression="lzf",
            chunks=(1, *s.images.shape[1:]) if len(s) else None,
        )
        f.create_dataset("landmarks", data=s.landmarks.astype(np.float32))
        f.create_dataset("visible", data=s.visible.astype(bool))
        f.create_dataset("projection", data=s.projection.astype(np.float64))
        f.create_dataset("subject", data=s.subject.astype(object), dtype=h5py.string_dtype())
        f.create_dataset("view", data=s.view.astype(np.float32))
        f.attrs["generator_version"] = __version__
        for k, v in s.attrs.items():
            f.attrs[k] = v


def read_imageset(path: str | os.PathLike) -> ImageSet:
    """Read and validate one shard."""
    try:
        with h5py.File(path, "r") as f:
            missing = [d for d in DATASETS if d not in f]
            if missing:
                raise InputError(path, f"not an image set: missing dataset(s) {', '.join(missing)}")
            s = ImageSet(
                images=f["images"][()],
                landmarks=f["landmarks"][()],
                visible=f["visible"][()],
                projection=f["projection"][()],
                subject=np.array(
                    [x.decode() if isinstance(x, bytes) else x for x in f["subject"][()]]
                ),
                view=f["view"][()],
                attrs={k: _plain(v) for k, v in f.attrs.items()},
            )
    except OSError as e:
        raise InputError(path, f"not a readable HDF5 file: {e}") from e
    s.check(str(path))
    return s


def _plain(v: object) -> object:
    if isinstance(v, np.ndarray):
        return [x.decode() if isinstance(x, bytes) else x for x in v.tolist()]
    return v.item() if isinstance(v, np.generic) else v


def concatenate(sets: list[ImageSet], where: str) -> ImageSet:
    """Join shards of one arm: same landmark names, image size, arm and pixel spacing required
    (the joined set keeps the first shard's attributes; a generated arm's folds may mix, as in
    its QC grid)."""
    if not sets:
        raise InputError(where, "no image-set shards to join")
    first = sets[0]
    for s in sets[1:]:
        if s.attrs.get("landmark_names") != first.attrs.get("landmark_names"):
            raise InputError(where, "shards disagree on landmark names")
        if s.attrs.get("arm") != first.attrs.get("arm"):
            raise InputError(
                where, f"shards disagree on arm: {s.attrs.get('arm')} vs {first.attrs.get('arm')}"
            )
        spacing = [x.attrs.get("pixel_spacing_mm", np.nan) for x in (s, first)]
        if not np.isclose(*spacing, equal_nan=True):
            raise InputError(
                where, f"shards disagree on pixel spacing: {spacing[0]} vs {spacing[1]}"
            )
        if s.images.shape[1:] != first.images.shape[1:]:
            raise InputError(
                where,
                f"shards disagree on image size: {s.images.shape[1:]} vs {first.images.shape[1:]}",
            )
    return ImageSet(
        *(np.concatenate([getattr(s, d) for s in sets]) for d in DATASETS), attrs=dict(first.attrs)
    )
