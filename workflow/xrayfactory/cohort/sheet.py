"""Subjects, cohort sheets, folds and per-job random streams.

A cohort sheet is a TSV with columns subject, ct, segmentation, landmarks (paths relative to the
sheet's folder unless absolute); workflow/schemas/cohort.schema.yaml describes it. The demo
cohort is written in the same layout, so a user's own cohort plugs in by pointing
`cohort.sheet` at their sheet.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import yaml

from xrayfactory.core.errors import InputError

SHEET_COLUMNS = ("subject", "ct", "segmentation", "landmarks")


def demo_subjects(n: int) -> list[str]:
    return [f"demo{i:02d}" for i in range(n)]


def read_sheet(path: str | os.PathLike, schema_path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate a cohort sheet; paths come back absolute."""
    import jsonschema

    if not os.path.exists(path):
        raise InputError(path, "cohort sheet does not exist")
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    for i, row in enumerate(df.to_dict("records")):
        try:
            jsonschema.validate(row, schema)
        except jsonschema.ValidationError as e:
            raise InputError(path, f"row {i + 2}: {e.message}") from e
    if df.empty:
        raise InputError(path, "cohort sheet lists no subjects")
    dup = df["subject"][df["subject"].duplicated()].tolist()
    if dup:
        raise InputError(path, f"duplicate subject id(s): {', '.join(dup)}")
    base = Path(path).parent
    for col in SHEET_COLUMNS[1:]:
        df[col] = [str(p if os.path.isabs(p) else (base / p)) for p in df[col]]
    return df.set_index("subject", drop=False)


def write_sheet(path: str | os.PathLike, rows: list[dict[str, str]]) -> None:
    from xrayfactory.core.atomic import atomic_path

    base = Path(path).parent.resolve()
    out = []
    for r in rows:
        out.append(
            {
                c: (r[c] if c == "subject" else os.path.relpath(Path(r[c]).resolve(), base))
                for c in SHEET_COLUMNS
            }
        )
    with atomic_path(path) as tmp:
        pd.DataFrame(out, columns=list(SHEET_COLUMNS)).to_csv(tmp, sep="\t", index=False)


def folds(
    subjects: list[str], scheme: str, n_folds: int, run: list[int] | None = None
) -> pd.DataFrame:
    """Subject-level folds: one row per (fold, subject) with role train or test, for the folds
    in `run` (default: every fold of the scheme)."""
    subjects = sorted(subjects)
    k = len(subjects) if scheme == "loso" else n_folds
    if not 2 <= k <= len(subjects):
        raise InputError("split.n_folds", f"need 2 <= folds <= {len(subjects)} subjects, got {k}")
    unknown = sorted(set(run or []) - set(range(k)))
    if unknown:
        raise InputError("split.folds", f"folds {unknown} do not exist; the scheme has 0..{k - 1}")
    rows = []
    for f in sorted(run) if run else range(k):
        test = set(subjects[f::k])
        rows += [
            {"fold": f, "subject": s, "role": "test" if s in test else "train"} for s in subjects
        ]
    return pd.DataFrame(rows)
