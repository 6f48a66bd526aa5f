"""Subcommands of workflow/rules/study.smk."""

from __future__ import annotations

import argparse

from xrayfactory.cli.common import add_settings


def realism(a: argparse.Namespace) -> None:
    from xrayfactory.study.jobs import realism as job

    s = a.settings
    sample = (s["n_images"], s["train_images"], s["selection_seed"])
    job(a.arms, a.fold, a.train_subjects, a.shards, a.test, a.detector, sample, s["device"], a.out)


def report(a: argparse.Namespace) -> None:
    from xrayfactory.study.jobs import report as job
    from xrayfactory.study.report import StatsSettings

    e = a.settings["evaluation"]
    stats = StatsSettings(
        thresholds_mm=e["thresholds_mm"],
        n_boot=e["n_bootstrap"],
        min_subject_clusters=e["min_subject_clusters"],
    )
    s = a.settings
    job(a.predictions, a.test, a.out_dir, stats, s["cohort_source"], s["training_sets"])


def report_realism(a: argparse.Namespace) -> None:
    from xrayfactory.study.jobs import report_realism as job

    job(a.tables, a.out)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "realism", help="Fréchet and intensity distances of each arm's images to the test images"
    )
    p.add_argument("--arms", nargs="+", required=True)
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--train-subjects", nargs="+", required=True)
    p.add_argument("--detector", required=True, help="the fold's real detector (features)")
    p.add_argument("--test", nargs="+", required=True, help="test subjects' real image sets")
    p.add_argument("--out", required=True)
    add_settings(p)
    p.add_argument("shards", nargs="+", help="the arms' image sets of the fold's training data")
    p.set_defaults(handler=realism)

    p = sub.add_parser("report", help="the study's tables and figures from prediction files")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--test", nargs="+", required=True, help="every subject's real image set")
    p.add_argument("--predictions", nargs="+", required=True)
    add_settings(p)
    p.set_defaults(handler=report)

    p = sub.add_parser("report-realism", help="realism table from per-fold tables")
    p.add_argument("--out", required=True)
    p.add_argument("tables", nargs="+")
    p.set_defaults(handler=report_realism)
