"""Prediction tables: one row per (run, test image, landmark), with the error where the
landmark is in the image and was found (what `evaluate_detector` writes and the study reads)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from xrayfactory.imaging.geometry import located
from xrayfactory.imaging.imageset import ImageSet

PRED_COLUMNS = [
    "arm",
    "fold",
    "seed",
    "image_id",
    "subject",
    "landmark",
    "gt_col",
    "gt_row",
    "visible",
    "known",
    "pred_col",
    "pred_row",
    "score",
    "found",
    "pixel_spacing_mm",
    "magnification",
]


def prediction_table(
    arm: str,
    fold: int,
    seed: int,
    test: ImageSet,
    ids: np.ndarray,
    pts: np.ndarray,
    scores: np.ndarray,
    found: np.ndarray,
) -> pd.DataFrame:
    """Predictions (N, L, 2), scores and found flags (N, L) on a test set -> PRED_COLUMNS rows.
    `known`: the ground truth says where the landmark is, in the image or outside it (an
    unannotated landmark that projects into the image is unknown, as in training)."""
    names = list(test.attrs["landmark_names"])
    n, n_lm = test.visible.shape
    rows, cols = test.images.shape[1:]
    known = located(test.landmarks, test.visible, rows, cols)
    return pd.DataFrame(
        {
            "arm": arm,
            "fold": fold,
            "seed": seed,
            "image_id": np.repeat(ids, n_lm),
            "subject": np.repeat(test.subject, n_lm),
            "landmark": np.tile(names, n),
            "gt_col": test.landmarks[..., 0].ravel(),
            "gt_row": test.landmarks[..., 1].ravel(),
            "visible": test.visible.ravel(),
            "known": known.ravel(),
            "pred_col": pts[..., 0].ravel(),
            "pred_row": pts[..., 1].ravel(),
            "score": scores.ravel(),
            "found": found.ravel(),
            "pixel_spacing_mm": test.attrs["pixel_spacing_mm"],
            "magnification": test.attrs["magnification"],
        }
    )[PRED_COLUMNS]


def with_errors(df: pd.DataFrame) -> pd.DataFrame:
    """Add err_px, err_mm (at the detector) and err_mm_iso (at the isocentre), NaN where the
    landmark is not both visible and found."""
    df = df.copy()
    if "known" not in df:  # tables written before the column: every label taken as known
        df["known"] = True
    ok = df.visible.astype(bool) & df.found.astype(bool)
    px = np.hypot(df.pred_col - df.gt_col, df.pred_row - df.gt_row)
    df["err_px"] = np.where(ok, px, np.nan)
    df["err_mm"] = df.err_px * df.pixel_spacing_mm
    df["err_mm_iso"] = df.err_mm / df.magnification
    return df
