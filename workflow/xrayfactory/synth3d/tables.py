"""synth3d's quality table of all folds (rule report_synth3d): pandas only, so that the job
imports neither torch nor MONAI."""

from __future__ import annotations

import pandas as pd

from xrayfactory.core.atomic import PathLike, write_csv


def quality_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per-volume rows (generated CTs and, as the reference, the real ones) plus a `mean` row
    per kind over all folds: the landmark offset pooled over every derived landmark (a volume
    with none adds nothing to it, and lowers `landmarks_derived`, the mean count)."""
    g = df.drop(columns=["fold", "volume"]).groupby("kind", sort=False)
    mean = g.mean()
    pooled = (df.landmark_offset_mm.fillna(0) * df.landmarks_derived).groupby(df.kind).sum()
    mean["landmark_offset_mm"] = pooled / g.landmarks_derived.sum().replace(0, float("nan"))
    mean = mean.reset_index()
    mean.insert(0, "fold", "mean")
    mean.insert(1, "volume", "all")
    return pd.concat([df.astype({"fold": str, "volume": str}), mean], ignore_index=True)


def report_synth3d(tables: list[str], out: PathLike) -> None:
    """The synth3d quality table of all folds."""
    table = quality_table(pd.concat([pd.read_csv(p) for p in tables], ignore_index=True))
    write_csv(table, out)
