"""The cohort check: every subject's CT, label map and landmarks read and cross-checked before
any other job, and every problem of every subject reported at once.

Per subject: the CT is readable, 3D, numeric and finite; the label map is readable and on the
CT's grid (shape and affine); it holds every required label group (the synth3d bone groups,
where a job builds on them); the landmark file has numeric, unique, finite landmarks inside the
CT. A cohort that passes is summarised in a table (one row per subject).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from xrayfactory.cohort.landmarks import load_landmarks
from xrayfactory.cohort.volumes import Volume, load_ct, load_segmentation, read_nifti
from xrayfactory.core.atomic import PathLike, write_csv
from xrayfactory.core.errors import InputError


@dataclass(frozen=True)
class SubjectFiles:
    subject: str
    ct: str
    seg: str
    landmarks: str


def _attempt(problems: list[str], fn: Callable, *args):
    """fn(*args), or None with its InputError added to `problems`."""
    try:
        return fn(*args)
    except InputError as e:
        problems.append(str(e))
        return None


def check_subject(
    files: SubjectFiles, names: list[str], groups: dict[str, list[int]]
) -> tuple[dict, list[str]]:
    """A subject's summary row and its problems ("file: problem")."""
    problems: list[str] = []
    ct: Volume | None = _attempt(problems, load_ct, files.ct)
    if ct is None:
        _attempt(problems, read_nifti, files.seg)  # still report a broken label map
        _attempt(problems, load_landmarks, files.landmarks, names)
        return {"subject": files.subject}, problems
    seg = _attempt(problems, load_segmentation, files.seg, ct, files.ct)
    present: set[int] = set() if seg is None else {int(v) for v in np.unique(seg.data)}
    if seg is not None:
        for group, ids in groups.items():
            if not present & set(ids):
                problems.append(
                    f"{files.seg}: no voxel of label group {group} (labels {ids}), which the "
                    "synth3d grid needs (config synth3d.condition and synth3d.bone)"
                )
    _attempt(problems, load_landmarks, files.landmarks, names, ct)
    row = {
        "subject": files.subject,
        "shape": "x".join(map(str, ct.shape)),
        "spacing_mm": "x".join(f"{s:.3g}" for s in ct.spacing),
        "hu_min": float(ct.data.min()),
        "hu_max": float(ct.data.max()),
        "labels": " ".join(map(str, sorted(present - {0}))),
    }
    return row, problems


def check_cohort(
    subjects: list[SubjectFiles], names: list[str], groups: dict[str, list[int]], out: PathLike
) -> None:
    """Check every subject; write the summary `out`, or stop with every problem found."""
    rows, problems = [], []
    for files in subjects:
        row, found = check_subject(files, names, groups)
        rows.append(row)
        problems += [f"subject {files.subject}: {p}" for p in found]
    if problems:
        bad = len({p.split(":", 1)[0] for p in problems})
        raise InputError(
            "cohort",
            f"{len(problems)} problem(s) in {bad} of {len(subjects)} subject(s); nothing was "
            "computed from them:\n  " + "\n  ".join(problems),
        )
    write_csv(pd.DataFrame(rows), out)
