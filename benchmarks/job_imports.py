"""What each kind of job pays before it starts working: the import of its job module.

    python benchmarks/job_imports.py [--repeats 3]

Every job is a fresh `python -m xrayfactory <rule>`; the CLI imports only the module of the
job it runs. This times `import <module>` in a fresh interpreter for each job module (the
median of `--repeats`), beside torch and MONAI alone, and prints a table. Light jobs (QC
figures, the baseline, the tables of all folds) should stay near the interpreter's own start.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

MODULES = {
    "python (nothing)": "",
    "torch": "torch",
    "MONAI (monai.networks.nets)": "monai.networks.nets",
    "diffusers": "diffusers",
    "cohort.jobs": "xrayfactory.cohort.jobs",
    "imaging.jobs (render)": "xrayfactory.imaging.jobs",
    "imaging.qc (QC figures)": "xrayfactory.imaging.qc",
    "synth3d.jobs": "xrayfactory.synth3d.jobs",
    "synth3d.tables": "xrayfactory.synth3d.tables",
    "synth2d.jobs": "xrayfactory.synth2d.jobs",
    "synth2d.tables": "xrayfactory.synth2d.tables",
    "detection.jobs": "xrayfactory.detection.jobs",
    "detection.baseline": "xrayfactory.detection.baseline",
    "study.jobs": "xrayfactory.study.jobs",
}


def seconds(module: str) -> float:
    """Wall time of a fresh interpreter that imports `module`."""
    code = f"import {module}" if module else "pass"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    for module in MODULES.values():  # warm the file cache
        seconds(module)
    rows = [
        (name, statistics.median(seconds(m) for _ in range(a.repeats)))
        for name, m in MODULES.items()
    ]
    print(f"| job module | import s |  (median of {a.repeats}, fresh interpreter each)")
    print("| --- | --- |")
    for name, s in rows:
        print(f"| {name} | {s:.2f} |")


if __name__ == "__main__":
    main()
