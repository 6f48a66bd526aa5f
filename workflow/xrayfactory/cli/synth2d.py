"""Subcommands of workflow/rules/synth2d.smk."""

from __future__ import annotations

import argparse

from xrayfactory.cli.common import add_settings


def resize_real(a: argparse.Namespace) -> None:
    from xrayfactory.synth2d.jobs import resize_real as job

    job(a.shard, a.size, a.out)


def train_synth2d(a: argparse.Namespace) -> None:
    from xrayfactory.synth2d.jobs import train_synth2d as job
    from xrayfactory.synth2d.model import settings_from

    s = a.settings
    selection = (s["selection"]["n_images"], s["selection"]["seed"])
    settings = settings_from(s["synth2d"], s["seed"])
    job(a.fold, a.train_subjects, a.shards, selection, settings, a.out, s["device"])


def _generator(model: str, fold: int, landmarks: list[str], s: dict):
    """The fold's generator with its shape model, C-arm and view ranges from the settings."""
    from xrayfactory.imaging.geometry import CArm, ViewSampler
    from xrayfactory.synth2d.jobs import Generator

    views = ViewSampler.from_config(s["views"])
    carm = CArm(**s["carm"])
    return Generator.load(model, fold, landmarks, s["names"], carm, views, s["device"])


def sample_synth2d(a: argparse.Namespace) -> None:
    from xrayfactory.synth2d.jobs import sample_synth2d as job

    s = a.settings
    gen = _generator(a.model, a.fold, a.landmarks, s)
    job(
        gen,
        a.shard,
        s["shard_size"],
        s["sampler"],
        s["shape_scale"],
        s["seed"],
        a.out,
    )


def synth2d_fidelity(a: argparse.Namespace) -> None:
    from xrayfactory.synth2d.jobs import synth2d_fidelity as job

    s = a.settings
    f = s["fidelity"]
    out = (a.out_fidelity, a.out_steps)
    gen = _generator(a.model, a.fold, a.landmarks, s)
    sampling = (f["samplers"], f["n_images"], s["shape_scale"])
    job(gen, a.detector, a.shards, sampling, s["seed"], s["device"], out, s["n_bootstrap"])


def report_synth2d(a: argparse.Namespace) -> None:
    from xrayfactory.synth2d.tables import report_synth2d as job

    job(a.fidelity, a.steps, (a.out_fidelity, a.out_steps))


def _generator_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--model", required=True)
    p.add_argument(
        "--landmarks", nargs="+", required=True, help="the fold's training subjects' landmarks"
    )
    add_settings(p)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "resize-real", help="control real_resized: real images through the synth2d image size"
    )
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("shard")
    p.set_defaults(handler=resize_real)

    p = sub.add_parser(
        "train-synth2d", help="a fold's generator, on the real arm's training images"
    )
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--train-subjects", nargs="+", required=True)
    p.add_argument("--out", required=True)
    add_settings(p)
    p.add_argument("shards", nargs="+", help="the training subjects' real image sets")
    p.set_defaults(handler=train_synth2d)

    p = sub.add_parser("sample-synth2d", help="one shard of generated, labelled images")
    _generator_args(p)
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(handler=sample_synth2d)

    p = sub.add_parser(
        "synth2d-fidelity", help="label fidelity of generated images and its sampler-step curve"
    )
    _generator_args(p)
    p.add_argument("--detector", required=True)
    p.add_argument("--out-fidelity", required=True)
    p.add_argument("--out-steps", required=True)
    p.add_argument("shards", nargs="+")
    p.set_defaults(handler=synth2d_fidelity)

    p = sub.add_parser("report-synth2d", help="label-fidelity and sampler-steps tables")
    for flag in ("--fidelity", "--steps"):
        p.add_argument(flag, nargs="+", required=True)
    p.add_argument("--out-fidelity", required=True)
    p.add_argument("--out-steps", required=True)
    p.set_defaults(handler=report_synth2d)
