"""Label fidelity of generated images: does an image show its landmarks where its labels say?

The `real`-arm detector of the same fold predicts landmarks on generated images; its error
against the conditioning landmarks (visible ones the detector found) is the fidelity, in pixels
of the generated image and in mm at the detector. Lower is better; the detector's own error on
real images bounds what can be told apart, and the error of guessing each landmark at its mean
labelled position (`mean_position_mm`, no image read) says where the labels stop being
recoverable at all.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from xrayfactory.detection.predictions import prediction_table, with_errors
from xrayfactory.imaging.imageset import ImageSet
from xrayfactory.imaging.splits import image_ids
from xrayfactory.synth2d.model import network_evaluations

if TYPE_CHECKING:  # the generator's jobs import it only to measure fidelity (MONAI: seconds)
    from xrayfactory.detection.detector import Detector


def fidelity_rows(det: Detector, s: ImageSet, arm: str, fold: int) -> pd.DataFrame:
    """The detector's label errors on the images of `s` (label_errors)."""
    return label_errors(s, *det.predict(s.images), arm, fold)


def label_errors(
    s: ImageSet, pts: np.ndarray, scores: np.ndarray, found: np.ndarray, arm: str, fold: int
) -> pd.DataFrame:
    """Per (image, landmark) rows of predictions on `s` with err_px / err_mm
    (metrics.PRED_COLUMNS + errors) and guess_mm: the distance (mm at the detector) of a
    visible label from its landmark's mean visible label in `s`."""
    table = with_errors(prediction_table(arm, fold, 0, s, image_ids(s.subject), pts, scores, found))
    vis = table.visible.astype(bool)
    centre = table[vis].groupby("landmark")[["gt_col", "gt_row"]].transform("mean")
    guess = np.hypot(table.gt_col - centre.gt_col, table.gt_row - centre.gt_row)
    table["guess_mm"] = guess * table.pixel_spacing_mm  # NaN where invisible (not in `centre`)
    return table


def _stats(df: pd.DataFrame) -> dict:
    vis = df.visible.astype(bool)
    return {
        "n_labels": int(vis.sum()),
        "detection_rate": float((vis & df.found.astype(bool)).sum() / max(vis.sum(), 1)),
        "mean_px": df.err_px.mean(),
        "median_px": df.err_px.median(),
        "mean_mm": df.err_mm.mean(),
        "median_mm": df.err_mm.median(),
        "mean_position_mm": df.guess_mm.mean(),
    }


def fidelity_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per landmark and an `all` row."""
    out = [{"landmark": "all", **_stats(rows)}]
    out += [{"landmark": name, **_stats(g)} for name, g in rows.groupby("landmark", sort=False)]
    return pd.DataFrame(out)


def timed(fn, *args, **kwargs) -> tuple[object, float]:
    """(fn(*args, **kwargs), wall seconds)."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def sampler_row(det: Detector, s: ImageSet, sampler: dict, seconds: float, fold: int) -> dict:
    """One line of the sampler-steps table for images `s` made with `sampler`."""
    return {
        "fold": fold,
        "sampler": sampler["kind"],
        "steps": sampler["steps"],
        "guidance": sampler["guidance"],
        "evaluations_per_image": network_evaluations(sampler["steps"], sampler["guidance"]),
        "images_per_s": len(s) / seconds if seconds > 0 else np.nan,
        **_stats(fidelity_rows(det, s, "synth2d", fold)),
    }
