"""Planning at paper scale: wall time of `snakemake -n` and the number of jobs it plans.

    python benchmarks/dag_planning.py [--repeats 3]

Plans benchmarks/paper_scale.yaml (6 folds x 4 arms x 3 seeds, 10,000 images per arm, sharded)
over config/config.yaml in an empty working directory. Goals: <= 10 s and <= 500 jobs.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OVERRIDES = REPO / "benchmarks" / "paper_scale.yaml"


def plan(workdir: Path) -> tuple[float, int]:
    """Seconds for one dry run of the paper-scale study in `workdir`, and its job count."""
    start = time.perf_counter()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(workdir),
            "-n",
            "--quiet",
            "rules",
            "--configfile",
            str(OVERRIDES),
        ],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(r.stderr)
    return seconds, int(re.search(r"^total\s+(\d+)$", r.stdout + r.stderr, re.M)[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "config").mkdir()
        shutil.copy(REPO / "config" / "config.yaml", workdir / "config" / "config.yaml")
        runs = [plan(workdir) for _ in range(args.repeats)]
    print("| run | plan s | jobs |\n|---|---|---|")
    for i, (seconds, jobs) in enumerate(runs, 1):
        print(f"| {i} | {seconds:.2f} | {jobs} |")
    worst = max(s for s, _ in runs)
    print(f"\nworst {worst:.2f} s (goal <= 10 s), {runs[0][1]} jobs (goal <= 500)")


if __name__ == "__main__":
    main()
