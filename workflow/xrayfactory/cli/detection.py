"""Subcommands of workflow/rules/detection.smk, and `predict` for users' X-rays."""

from __future__ import annotations

import argparse

from xrayfactory.cli.common import add_settings


def train_detector(a: argparse.Namespace) -> None:
    from xrayfactory.detection.detector import DetectorSettings
    from xrayfactory.detection.jobs import train_detector as job

    s = a.settings
    settings = DetectorSettings.from_config(s["detector"], a.seed)
    n_default = s["detector"]["train_images"]
    # a sweep point or a recipe: its images per source; an arm: train_images of its own
    counts = s.get("training_set", {a.arm: n_default})
    job(
        a.arm,
        counts,
        a.fold,
        a.train_subjects,
        a.shards,
        n_default,
        settings,
        a.out,
        s["device"],
    )


def augmentation_qc(a: argparse.Namespace) -> None:
    from xrayfactory.detection.jobs import augmentation_qc as job

    job(a.shards, a.fold, a.image_size, a.seed, a.out)


def evaluate_detector(a: argparse.Namespace) -> None:
    from xrayfactory.detection.jobs import evaluate_detector as job

    job(a.arm, a.fold, a.seed, a.model, a.image_size, a.test, a.out)


def baseline_predictions(a: argparse.Namespace) -> None:
    from xrayfactory.detection.baseline import baseline_predictions as job

    job(a.fold, a.seed, a.n_images, a.train, a.test, a.out)


def predict(a: argparse.Namespace) -> None:
    from xrayfactory.detection.jobs import predict as job

    job(a.model, a.images, a.out_dir)


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-detector", help="train one detector (arm, fold, seed)")
    p.add_argument("--arm", required=True)
    _run_args(p)
    p.add_argument("--train-subjects", nargs="+", required=True)
    add_settings(p)
    p.add_argument("shards", nargs="+", help="the arm's image sets of the fold's training data")
    p.set_defaults(handler=train_detector)

    p = sub.add_parser("augmentation-qc", help="what the detectors train on, augmented")
    _run_args(p)
    p.add_argument("--image-size", type=int, required=True)
    p.add_argument("shards", nargs="+", help="the arms' image sets of the fold's training data")
    p.set_defaults(handler=augmentation_qc)

    p = sub.add_parser("evaluate-detector", help="a detector's predictions on its fold's test set")
    p.add_argument("--arm", required=True)
    _run_args(p)
    p.add_argument("--model", required=True)
    p.add_argument("--image-size", type=int, required=True)
    p.add_argument("test", nargs="+", help="the fold's test subjects' real image sets")
    p.set_defaults(handler=evaluate_detector)

    p = sub.add_parser("baseline-predictions", help="mean-position baseline of a fold")
    _run_args(p)
    p.add_argument("--n-images", type=int, required=True)
    p.add_argument("--train", nargs="+", required=True, help="training subjects' real sets")
    p.add_argument("--test", nargs="+", required=True, help="test subjects' real sets")
    p.set_defaults(handler=baseline_predictions)

    p = sub.add_parser("predict", help="detect landmarks on DICOM / PNG / JPEG / TIFF X-rays")
    p.add_argument("--model", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("images", nargs="+")
    p.set_defaults(handler=predict)
