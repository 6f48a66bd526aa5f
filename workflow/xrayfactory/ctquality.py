"""Quality of generated CTs: mask adherence and per-tissue HU histogram distance to real CTs.

Tissues come from the label map on the model grid: `bone` (the bone label groups), `organ` (the
other label groups) and `other` (every other voxel: fat, muscle, air).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import wasserstein_distance

from xrayfactory.ctgrid import GridSpec

TISSUES = ("bone", "organ", "other")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1.0 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def tissues(seg: np.ndarray, spec: GridSpec) -> dict[str, np.ndarray]:
    bone = np.isin(seg, spec.bone_labels())
    labelled = np.isin(seg, [i for _, ids in spec.groups for i in ids])
    return {"bone": bone, "organ": labelled & ~bone, "other": ~labelled}


def _sample(values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return values if len(values) <= n else rng.choice(values, n, replace=False)


def tissue_values(
    pairs: list[tuple[np.ndarray, np.ndarray]], spec: GridSpec, *, n: int = 100_000
) -> dict[str, np.ndarray]:
    """HU values per tissue pooled over (hu, seg) pairs, at most `n` per tissue (fixed seed)."""
    rng = np.random.default_rng(0)
    out = {}
    for t in TISSUES:
        values = np.concatenate([hu[tissues(seg, spec)[t]] for hu, seg in pairs])
        out[t] = _sample(values, n, rng)
    return out


def volume_quality(
    hu: np.ndarray, seg: np.ndarray, real: dict[str, np.ndarray], spec: GridSpec, bone_hu: float
) -> dict[str, float]:
    """Bone Dice (HU > bone_hu vs the conditioning bone labels) and, per tissue, the earth
    mover's distance (HU) between the generated and the real CTs' histograms."""
    row = {"bone_dice": dice(hu > bone_hu, np.isin(seg, spec.bone_labels()))}
    generated = tissue_values([(hu, seg)], spec)
    for t in TISSUES:
        ok = len(generated[t]) and len(real[t])
        row[f"hu_emd_{t}"] = (
            float(wasserstein_distance(generated[t], real[t])) if ok else float("nan")
        )
        row[f"hu_mean_{t}"] = float(generated[t].mean()) if len(generated[t]) else float("nan")
    return row


def quality_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per-volume rows (generated CTs and, as the reference, the real ones) plus a `mean` row
    per kind over all folds."""
    mean = df.drop(columns=["fold", "volume"]).groupby("kind", sort=False).mean().reset_index()
    mean.insert(0, "fold", "mean")
    mean.insert(1, "volume", "all")
    return pd.concat([df.astype({"fold": str, "volume": str}), mean], ignore_index=True)
