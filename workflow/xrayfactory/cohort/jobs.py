"""The cohort's jobs, one per rule of workflow/rules/cohort.smk: each reads its inputs, checks
them and writes its outputs atomically."""

from __future__ import annotations

import logging

import numpy as np

from xrayfactory.cohort.deform import DeformationParams, deform_subject
from xrayfactory.cohort.landmarks import derive_landmarks, load_landmarks, save_landmarks
from xrayfactory.cohort.sheet import folds as make_folds
from xrayfactory.cohort.sheet import read_sheet, write_sheet
from xrayfactory.cohort.volumes import load_ct, load_segmentation, save_nifti
from xrayfactory.core.atomic import PathLike, write_csv
from xrayfactory.core.config import schema_file
from xrayfactory.core.errors import InputError
from xrayfactory.core.rng import rng_for

log = logging.getLogger("xrayfactory")


def demo_landmarks(
    ct: PathLike, seg: PathLike, labels: dict[str, int], names: list[str], out: PathLike
):
    """The demo CT's 3D landmarks, derived from its segmentation."""
    volume = load_ct(ct)
    lm = derive_landmarks(load_segmentation(seg, volume, ct), labels, names, seg)
    save_landmarks(out, lm)
    log.info("derived %d landmarks from %s", len(lm), seg)


def demo_subject(
    ct: PathLike,
    seg: PathLike,
    landmarks: PathLike,
    names: list[str],
    subject: str,
    deformation: DeformationParams,
    seed: int,
    out: tuple[PathLike, PathLike, PathLike],
) -> None:
    """One deformed demo subject: CT, label map and landmarks `out` (in that order)."""
    volume = load_ct(ct)
    labels = load_segmentation(seg, volume, ct)
    lm = load_landmarks(landmarks, names, volume)
    rng = rng_for(seed, "cohort", subject)
    new_ct, new_seg, new_lm, warp = deform_subject(volume, labels, lm, deformation, rng)
    log.info("%s: min Jacobian determinant %.3f", subject, warp.min_jacobian())
    save_nifti(out[0], np.round(new_ct.data).astype(np.int16), new_ct.affine)
    save_nifti(out[1], new_seg.data.astype(np.uint8), new_seg.affine)
    save_landmarks(out[2], new_lm)


def cohort_sheet(
    out: PathLike,
    subjects: list[str],
    ct: list[str],
    seg: list[str],
    landmarks: list[str],
) -> None:
    """The demo cohort's sheet, written in the layout of a user's sheet and read back (checked
    against the cohort schema)."""
    columns = [subjects, ct, seg, landmarks]
    if len({len(c) for c in columns}) != 1:
        raise InputError(out, "subjects, CTs, segmentations and landmark files differ in number")
    keys = ("subject", "ct", "segmentation", "landmarks")
    write_sheet(out, [dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)])
    read_sheet(out, schema_file("cohort.schema.yaml"))


def folds(
    out: PathLike, subjects: list[str], scheme: str, n_folds: int, run: list[int] | None
) -> None:
    """The subject-level folds (the workflow resolves them the same way when it plans)."""
    df = make_folds(subjects, scheme, n_folds, run)
    write_csv(df, out)
