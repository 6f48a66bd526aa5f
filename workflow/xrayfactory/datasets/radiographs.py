"""Reading clinical X-ray files (DICOM, PNG, JPEG, TIFF) as bone-bright float images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from xrayfactory.core.errors import InputError

RASTER = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}


def read_radiograph(path: str | os.PathLike) -> np.ndarray:
    """(H, W) float32, bone bright (DICOM MONOCHROME1 is inverted; rescale slope/intercept
    applied). Raster images are taken as displayed, converted to grey."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "file does not exist")
    suffix = p.suffix.lower()
    try:
        if suffix in RASTER:
            from PIL import Image

            with Image.open(p) as im:
                img = np.asarray(
                    im.convert("F") if im.mode not in ("I;16", "I") else im, np.float32
                )
        else:
            import pydicom

            ds = pydicom.dcmread(p)
            img = ds.pixel_array.astype(np.float32)
            img = img * float(getattr(ds, "RescaleSlope", 1)) + float(
                getattr(ds, "RescaleIntercept", 0)
            )
            if getattr(ds, "PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
                img = img.max() - img
    except Exception as e:  # any decoder failure is the file's problem, reported as such
        raise InputError(p, f"not a readable X-ray image (DICOM, PNG, JPEG or TIFF): {e}") from e
    if img.ndim == 3:  # colour or multi-frame: take the first frame / average channels
        img = img.mean(axis=-1) if img.shape[-1] in (3, 4) else img[0]
    if img.ndim != 2 or min(img.shape) < 8:
        raise InputError(p, f"expected a 2D image, got shape {img.shape}")
    if not np.all(np.isfinite(img)):
        raise InputError(p, "image holds NaN or infinite values")
    return img
