"""Label fidelity of generated images: does an image show its landmarks where its labels say?

The `real`-arm detector of the same fold predicts landmarks on generated images; its error
against the conditioning landmarks (visible ones the detector found) is the fidelity, in pixels
of the generated image and in mm at the detector. Lower is better; the detector's own error on
real images bounds what can be told apart, and the error of guessing each landmark at its mean
labelled position (`mean_position_mm`, no image read) says where the labels stop being
recoverable at all. Intervals resample whole generated images (their labels are correlated);
samplers are compared paired, on the same views, shapes and starting noise.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from xrayfactory.core.bootstrap import cluster_bootstrap
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


def _stats(df: pd.DataFrame, n_boot: int) -> dict:
    vis = df.visible.astype(bool)
    lo, hi = cluster_bootstrap(df.err_mm.to_numpy(), df.image_id.to_numpy(), n_boot=n_boot)
    return {
        "n_images": df.image_id.nunique(),
        "n_labels": int(vis.sum()),
        "detection_rate": float((vis & df.found.astype(bool)).sum() / max(vis.sum(), 1)),
        "mean_px": df.err_px.mean(),
        "median_px": df.err_px.median(),
        "mean_mm": df.err_mm.mean(),
        "ci95_low_mm": lo,
        "ci95_high_mm": hi,
        "median_mm": df.err_mm.median(),
        "mean_position_mm": df.guess_mm.mean(),
    }


def paired_difference(rows: pd.DataFrame, reference: pd.DataFrame, n_boot: int = 2000) -> dict:
    """`rows` minus `reference`, label errors on the same generated images (ids): the mean
    error difference on the visible labels both found, with an image-clustered 95% interval,
    and the difference in detection rate over the visible labels."""
    keys = ["image_id", "landmark"]
    both = rows.merge(reference, on=keys, suffixes=("", "_ref"), validate="one_to_one")
    both = both[both.visible.astype(bool)]
    diff = (both.err_mm - both.err_mm_ref).to_numpy()
    common = ~np.isnan(diff)
    lo, hi = cluster_bootstrap(diff, both.image_id.to_numpy(), n_boot=n_boot)
    found = both.found.astype(float) - both.found_ref.astype(float)
    return {
        "paired_n": int(common.sum()),
        "diff_mean_mm": diff[common].mean() if common.any() else np.nan,
        "diff_ci95_low_mm": lo,
        "diff_ci95_high_mm": hi,
        "detection_rate_diff": found.mean() if len(found) else np.nan,
    }


def fidelity_table(rows: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """One row per landmark and an `all` row (intervals from `n_boot` resamples)."""
    out = [{"landmark": "all", **_stats(rows, n_boot)}]
    by_landmark = rows.groupby("landmark", sort=False)
    out += [{"landmark": name, **_stats(g, n_boot)} for name, g in by_landmark]
    return pd.DataFrame(out)


def timed(fn, *args, **kwargs) -> tuple[object, float]:
    """(fn(*args, **kwargs), wall seconds)."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def sampler_row(
    errors: pd.DataFrame,
    sampler: dict,
    seconds: float,
    fold: int,
    reference: pd.DataFrame | None = None,
    n_boot: int = 2000,
) -> dict:
    """One line of the sampler-steps table from the label errors of the images `sampler` made
    in `seconds`; paired with the `reference` sampler's errors on the same images if given."""
    row = {
        "fold": fold,
        "sampler": sampler["kind"],
        "steps": sampler["steps"],
        "guidance": sampler["guidance"],
        "evaluations_per_image": network_evaluations(sampler["steps"], sampler["guidance"]),
        "images_per_s": errors.image_id.nunique() / seconds if seconds > 0 else np.nan,
        **_stats(errors, n_boot),
    }
    if reference is not None:
        row.update(paired_difference(errors, reference, n_boot))
    return row
