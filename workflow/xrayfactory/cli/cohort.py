"""Subcommands of workflow/rules/cohort.smk."""

from __future__ import annotations

import argparse
from pathlib import Path

from xrayfactory.cli.common import add_settings


def fetch_demo_data(a: argparse.Namespace) -> None:
    from xrayfactory.core.fetch import fetch

    for item in a.file:
        name, _, digest = item.partition("=")
        fetch(name, digest, Path(a.dest) / name, mirror=a.mirror, url=a.url)


def demo_landmarks(a: argparse.Namespace) -> None:
    from xrayfactory.cohort.jobs import demo_landmarks as job

    job(a.ct, a.seg, a.settings["labels"], a.settings["names"], a.out)


def demo_subject(a: argparse.Namespace) -> None:
    from xrayfactory.cohort.deform import DeformationParams
    from xrayfactory.cohort.jobs import demo_subject as job

    s = a.settings
    params = DeformationParams(**s["deformation"])
    out = (a.out_ct, a.out_seg, a.out_landmarks)
    job(a.ct, a.seg, a.landmarks, s["names"], a.subject, params, s["seed"], out)


def cohort_sheet(a: argparse.Namespace) -> None:
    from xrayfactory.cohort.jobs import cohort_sheet as job

    job(a.out, a.subjects, a.ct, a.segmentation, a.landmarks)


def cohort_qc(a: argparse.Namespace) -> None:
    from xrayfactory.imaging.qc import cohort_qc as job

    job(a.subjects, a.ct, a.seg, a.landmarks, a.settings["names"], a.out)


def check_cohort(a: argparse.Namespace) -> None:
    from xrayfactory.cohort.check import SubjectFiles, check_cohort

    columns = (a.subjects, a.ct, a.seg, a.landmarks)
    subjects = [SubjectFiles(*row) for row in zip(*columns, strict=True)]
    check_cohort(subjects, a.settings["names"], a.settings["groups"], a.out)


def folds(a: argparse.Namespace) -> None:
    from xrayfactory.cohort.jobs import folds as job

    job(a.out, a.subjects, a.settings["scheme"], a.settings["n_folds"], a.settings["folds"])


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fetch-demo-data", help="copy from a mirror or download, verifying sha256")
    p.add_argument("--dest", required=True)
    p.add_argument("--mirror", default=None)
    p.add_argument("--url", required=True)
    p.add_argument("--file", action="append", required=True, help="NAME=SHA256")
    p.set_defaults(handler=fetch_demo_data)

    p = sub.add_parser("demo-landmarks", help="derive 3D landmarks from a segmentation")
    for flag in ("--ct", "--seg", "--out"):
        p.add_argument(flag, required=True)
    add_settings(p)
    p.set_defaults(handler=demo_landmarks)

    p = sub.add_parser("demo-subject", help="one deformed demo subject")
    for flag in ("--ct", "--seg", "--landmarks", "--subject"):
        p.add_argument(flag, required=True)
    for flag in ("--out-ct", "--out-seg", "--out-landmarks"):
        p.add_argument(flag, required=True)
    add_settings(p)
    p.set_defaults(handler=demo_subject)

    p = sub.add_parser("cohort-sheet", help="write and validate a cohort sheet")
    p.add_argument("--out", required=True)
    for flag in ("--subjects", "--ct", "--segmentation", "--landmarks"):
        p.add_argument(flag, nargs="+", required=True)
    p.set_defaults(handler=cohort_sheet)

    p = sub.add_parser("cohort-qc", help="QC figure of each subject's 3D landmarks")
    for flag in ("--subjects", "--ct", "--seg", "--landmarks", "--out"):
        p.add_argument(flag, nargs="+", required=True)
    add_settings(p)
    p.set_defaults(handler=cohort_qc)

    p = sub.add_parser(
        "check-cohort", help="read and cross-check every subject; report every problem at once"
    )
    p.add_argument("--out", required=True)
    for flag in ("--subjects", "--ct", "--seg", "--landmarks"):
        p.add_argument(flag, nargs="+", required=True)
    add_settings(p)
    p.set_defaults(handler=check_cohort)

    p = sub.add_parser("folds", help="subject-level folds")
    p.add_argument("--out", required=True)
    p.add_argument("--subjects", nargs="+", required=True)
    add_settings(p)
    p.set_defaults(handler=folds)
