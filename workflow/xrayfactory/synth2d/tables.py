"""synth2d's tables of all folds (rule report_synth2d): pandas only, so that the job imports
neither torch nor diffusers."""

from __future__ import annotations

import pandas as pd

from xrayfactory.core.atomic import PathLike, write_csv


def concat_tables(paths: list[str], keys: list[str]) -> pd.DataFrame:
    """Per-fold tables stacked, with a `mean` block averaged over folds per `keys` (without
    intervals: a mean of per-fold interval ends is none)."""
    df = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    mean = df.drop(columns="fold").groupby(keys, sort=False).mean(numeric_only=True)
    mean[[c for c in mean.columns if "ci95" in c]] = float("nan")
    mean = mean.reset_index()
    mean.insert(0, "fold", "mean")
    return pd.concat([df.astype({"fold": str}), mean], ignore_index=True)


def report_synth2d(fidelity: list[str], steps: list[str], out: tuple[PathLike, PathLike]) -> None:
    """The label-fidelity and sampler-steps tables of all folds."""
    write_csv(concat_tables(fidelity, ["landmark"]), out[0])
    write_csv(concat_tables(steps, ["sampler", "steps", "guidance"]), out[1])
