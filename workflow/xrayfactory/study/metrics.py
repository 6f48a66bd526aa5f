"""Landmark-detection metrics, visibility-aware as in SyntheX, with clustered statistics.

Predictions tables have one row per (run, test image, landmark): arm, fold, seed, image_id,
subject, landmark, gt_col, gt_row, visible, known, pred_col, pred_row, score, found,
pixel_spacing_mm, magnification. A landmark's error counts when its ground truth is in the image
and the detector found it; missed and spurious detections are counted separately, spurious ones
only where the ground truth puts the landmark outside the image (`known`).

Statistics are computed on *cells*, one per (arm, fold, test image, landmark), averaged over
seeds first (seeds repeat the same images). Intervals come from a cluster bootstrap that
resamples whole test images (or whole subjects, where there are enough of them), because the
landmarks of one image, and the images of one subject, are not independent. Arms are compared
on the same cells: error differences only where both arms found the landmark, with the
difference in detection rate beside them, and success rates that count a miss as a failure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from xrayfactory.core.bootstrap import cluster_bootstrap

CELL_KEYS = ["fold", "subject", "image_id", "landmark"]


def cells(df: pd.DataFrame, thresholds_mm: list[float]) -> pd.DataFrame:
    """Seed-averaged cells of `with_errors` rows: one row per (arm, fold, subject, image,
    landmark) with `visible`, `err_mm` / `err_mm_iso` / `err_px` (mean over the seeds that found
    it, NaN if none), `found` and `success_<t>mm` (fractions of seeds) and `n_seeds`."""
    vis = df.visible.astype(bool)
    found = df.found.astype(bool)
    parts = {
        "visible": vis,
        "found": found.astype(float),
        "detected": (found & vis).astype(float),
        "err_mm": df.err_mm,
        "err_mm_iso": df.err_mm_iso,
        "err_px": df.err_px,
    }
    for t in thresholds_mm:
        parts[f"success_{t:g}mm"] = ((df.err_mm <= t) & vis).astype(float)
    g = pd.DataFrame(parts).groupby([df.arm, *(df[k] for k in CELL_KEYS)], sort=False)
    out = g.mean()
    out["visible"] = out.visible.astype(bool)
    out["n_seeds"] = g.size()
    return out.reset_index()


def cluster_unit(c: pd.DataFrame, min_subject_clusters: int) -> str:
    """'subject' when the test set has at least `min_subject_clusters` subjects, else 'image'."""
    return "subject" if c.subject.nunique() >= min_subject_clusters else "image"


def cluster_ids(c: pd.DataFrame, unit: str) -> np.ndarray:
    """The bootstrap cluster of each cell: its test image (fold, image id) or its subject."""
    if unit == "subject":
        return c.subject.astype(str).to_numpy()
    return (c.fold.astype(str) + ":" + c.image_id.astype(str)).to_numpy()


def summary(
    df: pd.DataFrame,
    c: pd.DataFrame,
    thresholds_mm: list[float],
    unit: str,
    *,
    n_boot: int = 2000,
) -> dict:
    """One arm's summary row from its rows `df` (all seeds) and its cells `c` (errors in mm at
    the detector unless marked _iso; means and intervals over seed-averaged cells)."""
    e = c.err_mm.dropna().to_numpy()
    clusters = cluster_ids(c, unit)
    lo, hi = cluster_bootstrap(c.err_mm.to_numpy(), clusters, n_boot=n_boot)
    vis, found = df.visible.astype(bool), df.found.astype(bool)
    absent = ~vis & df.known.astype(bool)  # outside the image, not merely unannotated
    visible_cells = c[c.visible]
    visible_clusters = clusters[c.visible.to_numpy()]
    row = {
        "n_images": c[["fold", "image_id"]].drop_duplicates().shape[0],
        "n_seeds": df.seed.nunique(),
        "n_errors": len(e),
        "mean_mm": e.mean() if len(e) else np.nan,
        "sd_mm": e.std(ddof=1) if len(e) > 1 else np.nan,
        "median_mm": np.median(e) if len(e) else np.nan,
        "ci95_low_mm": lo,
        "ci95_high_mm": hi,
        "ci_cluster": unit,
        "n_clusters": len(np.unique(clusters[c.err_mm.notna().to_numpy()])),  # the interval's
        "mean_mm_iso": c.err_mm_iso.mean(),
        "median_mm_iso": c.err_mm_iso.median(),
        "mean_px": c.err_px.mean(),
    }
    for t in thresholds_mm:
        # success: a visible landmark found within t mm (a miss is a failure)
        name = f"success_{t:g}mm"
        row[name] = visible_cells[name].mean()
        row[f"{name}_ci95_low"], row[f"{name}_ci95_high"] = cluster_bootstrap(
            visible_cells[name].to_numpy(), visible_clusters, n_boot=n_boot
        )
    row.update(
        {
            "tp": int((vis & found).sum()),
            "fn": int((vis & ~found).sum()),
            "fp": int((absent & found).sum()),
            "tn": int((absent & ~found).sum()),
        }
    )
    row["detection_rate"] = _rate(row["tp"], row["fn"])
    row["false_positive_rate"] = _rate(row["fp"], row["tn"])
    return row


def _rate(hits: int, misses: int) -> float:
    """hits / (hits + misses); NaN when there is nothing to count."""
    return hits / (hits + misses) if hits + misses else np.nan


def paired_vs(
    c: pd.DataFrame,
    arm: str,
    reference: str,
    thresholds_mm: list[float],
    unit: str,
    *,
    n_boot: int = 2000,
) -> dict:
    """`arm` minus `reference` on the same test cells (seed-averaged), with cluster-bootstrap
    intervals: the error difference on the cells both arms found (`paired_n` of them; Wilcoxon
    signed-rank over the clusters' mean differences), and beside it the differences in
    detection rate and in success at each threshold over all visible cells (a miss fails)."""
    cols = ["err_mm", "detected", *(f"success_{t:g}mm" for t in thresholds_mm)]
    a = c[c.arm == arm].set_index(CELL_KEYS)
    r = c[c.arm == reference].set_index(CELL_KEYS)
    both = a[["visible", *cols]].merge(
        r[cols], left_index=True, right_index=True, suffixes=("", "_ref")
    )
    both = both.reset_index()
    both = both[both.visible]
    clusters = cluster_ids(both, unit)
    diff = (both.err_mm - both.err_mm_ref).to_numpy()
    common = ~np.isnan(diff)
    row = {"paired_n": int(common.sum())}
    row["diff_mean_mm"] = diff[common].mean() if common.any() else np.nan
    row["diff_ci95_low_mm"], row["diff_ci95_high_mm"] = cluster_bootstrap(
        diff, clusters, n_boot=n_boot
    )
    per_cluster = pd.Series(diff[common]).groupby(clusters[common]).mean().to_numpy()
    nonzero = per_cluster[per_cluster != 0]
    row["wilcoxon_p"] = stats.wilcoxon(nonzero).pvalue if len(nonzero) > 1 else np.nan
    for col in cols[1:]:
        name = "detection_rate" if col == "detected" else col
        d = (both[col] - both[col + "_ref"]).to_numpy()
        row[f"{name}_diff"] = d.mean() if len(d) else np.nan
        row[f"{name}_diff_ci95_low"], row[f"{name}_diff_ci95_high"] = cluster_bootstrap(
            d, clusters, n_boot=n_boot
        )
    return row


def per_fold(
    df: pd.DataFrame, c: pd.DataFrame, thresholds_mm: list[float], *, n_boot: int = 2000
) -> pd.DataFrame:
    """One row per (arm, fold): seed-averaged errors with an image-clustered interval, success
    and detection rates, and the spread of the per-seed mean error (sd over seeds)."""
    rows = []
    for (arm, fold), cf in c.groupby(["arm", "fold"], sort=False):
        runs = df[(df.arm == arm) & (df.fold == fold)]
        s = summary(runs, cf, thresholds_mm, "image", n_boot=n_boot)
        seed_means = runs.groupby("seed").err_mm.mean()
        rows.append(
            {
                "arm": arm,
                "fold": fold,
                **{k: s[k] for k in ("n_images", "n_seeds", "mean_mm", "median_mm")},
                "ci95_low_mm": s["ci95_low_mm"],
                "ci95_high_mm": s["ci95_high_mm"],
                "seed_sd_mm": seed_means.std(ddof=1) if len(seed_means) > 1 else np.nan,
                **{f"success_{t:g}mm": s[f"success_{t:g}mm"] for t in thresholds_mm},
                "detection_rate": s["detection_rate"],
                "false_positive_rate": s["false_positive_rate"],
            }
        )
    return pd.DataFrame(rows)


def per_landmark(c: pd.DataFrame) -> pd.DataFrame:
    """Per (arm, landmark) on seed-averaged cells: error count, mean, sd, median, detection."""
    g = c.groupby(["arm", "landmark"], sort=False)
    out = g.err_mm.agg(["count", "mean", "std", "median"]).rename(
        columns={"count": "n_errors", "mean": "mean_mm", "std": "sd_mm", "median": "median_mm"}
    )
    out["detection_rate"] = c[c.visible].groupby(["arm", "landmark"], sort=False).detected.mean()
    return out.reset_index()
