"""Landmark-detection metrics, visibility-aware as in SyntheX.

Predictions tables have one row per (run, test image, landmark): arm, fold, seed, image_id,
subject, landmark, gt_col, gt_row, visible, pred_col, pred_row, score, found,
pixel_spacing_mm, magnification. A landmark's error counts when its ground truth is in the image
and the detector found it; missed and spurious detections are counted separately.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from xrayfactory.imageset import ImageSet

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
    """Predictions (N, L, 2), scores and found flags (N, L) on a test set -> PRED_COLUMNS rows."""
    names = list(test.attrs["landmark_names"])
    n, n_lm = test.visible.shape
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
    ok = df.visible.astype(bool) & df.found.astype(bool)
    px = np.hypot(df.pred_col - df.gt_col, df.pred_row - df.gt_row)
    df["err_px"] = np.where(ok, px, np.nan)
    df["err_mm"] = df.err_px * df.pixel_spacing_mm
    df["err_mm_iso"] = df.err_mm / df.magnification
    return df


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean."""
    values = np.asarray(values, float)
    if len(values) < 2:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(axis=1)
    return tuple(np.percentile(means, [2.5, 97.5]))  # type: ignore[return-value]


def summary(df: pd.DataFrame, thresholds_mm: list[float]) -> dict:
    """One arm's summary row (errors in mm at the detector unless marked _iso)."""
    e = df.err_mm.dropna().to_numpy()
    vis, found = df.visible.astype(bool), df.found.astype(bool)
    lo, hi = bootstrap_ci(e)
    row = {
        "n_images": df.groupby(["fold", "seed"]).image_id.nunique().sum(),
        "n_errors": len(e),
        "mean_mm": e.mean() if len(e) else np.nan,
        "sd_mm": e.std(ddof=1) if len(e) > 1 else np.nan,
        "median_mm": np.median(e) if len(e) else np.nan,
        "ci95_low_mm": lo,
        "ci95_high_mm": hi,
        "mean_mm_iso": df.err_mm_iso.mean(),
        "median_mm_iso": df.err_mm_iso.median(),
        "mean_px": df.err_px.mean(),
    }
    for t in thresholds_mm:
        # success: a visible landmark found within t mm (a miss is a failure)
        row[f"success_{t:g}mm"] = float(((df.err_mm <= t) & vis).sum() / max(vis.sum(), 1))
    row.update(
        {
            "tp": int((vis & found).sum()),
            "fn": int((vis & ~found).sum()),
            "fp": int((~vis & found).sum()),
            "tn": int((~vis & ~found).sum()),
        }
    )
    row["detection_rate"] = row["tp"] / max(row["tp"] + row["fn"], 1)
    row["false_positive_rate"] = row["fp"] / max(row["fp"] + row["tn"], 1)
    return row


def paired_vs(df: pd.DataFrame, arm: str, reference: str) -> dict:
    """Paired comparison on the same test images: per-image mean error of `arm` minus that of
    `reference` (both averaged over seeds); Wilcoxon signed-rank and a bootstrap CI."""
    per_image = df.groupby(["arm", "fold", "image_id"]).err_mm.mean().unstack("arm")
    if arm not in per_image or reference not in per_image:
        return {
            "paired_n": 0,
            "diff_mean_mm": np.nan,
            "diff_ci95_low_mm": np.nan,
            "diff_ci95_high_mm": np.nan,
            "wilcoxon_p": np.nan,
        }
    both = per_image[[arm, reference]].dropna()
    diff = (both[arm] - both[reference]).to_numpy()
    lo, hi = bootstrap_ci(diff)
    p = stats.wilcoxon(diff).pvalue if len(diff) > 1 and np.any(diff != 0) else np.nan
    return {
        "paired_n": len(diff),
        "diff_mean_mm": diff.mean() if len(diff) else np.nan,
        "diff_ci95_low_mm": lo,
        "diff_ci95_high_mm": hi,
        "wilcoxon_p": p,
    }


def per_landmark(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["arm", "landmark"], sort=False)
    out = g.err_mm.agg(["count", "mean", "std", "median"]).rename(
        columns={"count": "n_errors", "mean": "mean_mm", "std": "sd_mm", "median": "median_mm"}
    )
    vis = df.visible.astype(bool)
    out["detection_rate"] = (df.found.astype(bool) & vis).groupby(
        [df.arm, df.landmark], sort=False
    ).sum() / vis.groupby([df.arm, df.landmark], sort=False).sum().clip(lower=1)
    return out.reset_index()
