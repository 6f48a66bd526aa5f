"""Where a study's minutes went: per-rule job time and memory from Snakemake's benchmark files.

    python benchmarks/rule_times.py [results/benchmarks]

Every heavy rule writes results/benchmarks/<rule>/...tsv (wall seconds, CPU seconds, peak RSS).
Prints one row per rule (jobs, total, mean and longest wall seconds, CPU seconds, peak RSS in
MB) and the total, longest first. Bookkeeping rules without a benchmark file are not listed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def rule_times(folder: Path) -> pd.DataFrame:
    """One row per rule (the first folder under `folder`) from its jobs' benchmark files."""
    rows = []
    for tsv in sorted(folder.rglob("*.tsv")):
        runs = pd.read_csv(tsv, sep="\t")
        if not {"s", "cpu_time", "max_rss"} <= set(runs.columns) or runs.empty:
            raise SystemExit(f"error: {tsv}: not a Snakemake benchmark file")
        run = runs.iloc[-1]  # the last repeat
        rows.append(
            {"rule": tsv.relative_to(folder).parts[0], "s": run.s, "cpu_s": run.cpu_time,
             "max_rss_mb": run.max_rss}
        )  # fmt: skip
    if not rows:
        raise SystemExit(f"error: {folder}: no benchmark files (run the study first)")
    jobs = pd.DataFrame(rows)
    table = jobs.groupby("rule").agg(
        jobs=("s", "size"), total_s=("s", "sum"), mean_s=("s", "mean"), max_s=("s", "max"),
        cpu_s=("cpu_s", "sum"), max_rss_mb=("max_rss_mb", "max"),
    )  # fmt: skip
    table = table.sort_values("total_s", ascending=False)
    table.loc["total"] = [
        table.jobs.sum(), table.total_s.sum(), float("nan"), table.max_s.max(),
        table.cpu_s.sum(), table.max_rss_mb.max(),
    ]  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=Path("results/benchmarks"))
    table = rule_times(parser.parse_args().folder)
    print(table.to_markdown(floatfmt=".1f"))


if __name__ == "__main__":
    main()
