"""Subcommands of workflow/rules/synth3d.smk."""

from __future__ import annotations

import argparse

from xrayfactory.cli.common import add_settings


def _fold_cts(fold: int, subjects: list[str], ct: list[str], seg: list[str], lm: list[str] | None):
    from xrayfactory.synth3d.jobs import FoldCTs

    return FoldCTs(fold, subjects, ct, seg, lm or [])


def train_synth3d_autoencoder(a: argparse.Namespace) -> None:
    from xrayfactory.synth3d.ctgrid import grid_spec
    from xrayfactory.synth3d.jobs import train_synth3d_autoencoder as job
    from xrayfactory.synth3d.model import autoencoder_settings, runtime

    s, section = a.settings, a.settings["synth3d"]
    run = runtime(section, s["seed"])
    job(
        _fold_cts(a.fold, a.subjects, a.ct, a.seg, a.landmarks),
        grid_spec(section),
        autoencoder_settings(section),
        run,
        a.out,
        s["device"],
    )


def train_synth3d_diffusion(a: argparse.Namespace) -> None:
    from xrayfactory.synth3d.jobs import train_synth3d_diffusion as job
    from xrayfactory.synth3d.model import diffusion_settings, runtime

    s, section = a.settings, a.settings["synth3d"]
    run = runtime(section, s["seed"])
    job(
        _fold_cts(a.fold, a.subjects, a.ct, a.seg, a.landmarks),
        a.autoencoder,
        diffusion_settings(section),
        run,
        a.out,
        s["device"],
    )


def sample_synth3d(a: argparse.Namespace) -> None:
    from xrayfactory.cohort.deform import DeformationParams
    from xrayfactory.synth3d.jobs import SamplingPlan
    from xrayfactory.synth3d.jobs import sample_synth3d as job

    s = a.settings
    plan = SamplingPlan(
        names=s["names"],
        deformation=DeformationParams(**s["deformation"]),
        kind=s["sampler"].get("kind"),  # none for synth3d_nolatent, which samples nothing
        steps=s["sampler"].get("steps"),
        batch_size=s["sampler"]["batch_size"],
        mixed_precision=s["mixed_precision"],
        seed=s["seed"],
    )
    out = (a.out_ct, a.out_seg, a.out_landmarks)
    job(
        _fold_cts(a.fold, a.subjects, a.ct, a.seg, a.landmarks),
        a.autoencoder,
        a.diffusion,
        plan,
        out,
        s["device"],
    )


def _render(s: dict):
    """The render settings of the `drr` arm: view plan, DRR options, device."""
    from xrayfactory.imaging.render import ViewPlan

    return ViewPlan.from_settings(s), s["drr"], s["device"]


def render_synth3d(a: argparse.Namespace) -> None:
    from xrayfactory.synth3d.jobs import render_synth3d as job

    job(a.arm, a.fold, a.volume, a.part, a.ct, a.landmarks, a.out, *_render(a.settings))


def render_drr_grid(a: argparse.Namespace) -> None:
    from xrayfactory.synth3d.ctgrid import grid_spec
    from xrayfactory.synth3d.jobs import render_drr_grid as job

    plan, drr, device = _render(a.settings)
    spec = grid_spec(a.settings["synth3d"])
    job(a.subject, a.ct, a.landmarks, a.out, plan, drr, spec, device)


def render_drr_recon(a: argparse.Namespace) -> None:
    from xrayfactory.synth3d.jobs import render_drr_recon as job

    job(a.fold, a.subject, a.ct, a.seg, a.landmarks, a.autoencoder, a.out, *_render(a.settings))


def synth3d_quality(a: argparse.Namespace) -> None:
    from xrayfactory.synth3d.ctgrid import grid_spec
    from xrayfactory.synth3d.jobs import synth3d_quality as job

    s = a.settings
    generated = (a.generated_ct, a.generated_seg, a.generated_landmarks)
    spec = grid_spec(s["synth3d"])
    job(
        _fold_cts(a.fold, a.subjects, a.ct, a.seg, a.landmarks),
        generated,
        a.autoencoder,
        spec,
        s["synth3d"]["bone_hu"],
        s["labels"],
        s["names"],
        a.out,
        a.out_qc,
    )


def report_synth3d(a: argparse.Namespace) -> None:
    from xrayfactory.synth3d.tables import report_synth3d as job

    job(a.tables, a.out)


def _fold_args(p: argparse.ArgumentParser, *, landmarks: bool) -> None:
    """A fold and its training subjects' CTs and label maps (and landmarks), in one order."""
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--subjects", nargs="+", required=True, help="the fold's training subjects")
    p.add_argument("--ct", nargs="+", required=True)
    p.add_argument("--seg", nargs="+", required=True)
    p.add_argument("--landmarks", nargs="+", required=landmarks, default=None)
    add_settings(p)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-synth3d-autoencoder", help="a fold's 3D autoencoder, on its training CTs"
    )
    _fold_args(p, landmarks=False)
    p.add_argument("--out", required=True)
    p.set_defaults(handler=train_synth3d_autoencoder)

    p = sub.add_parser(
        "train-synth3d-diffusion", help="a fold's mask-conditioned latent diffusion model"
    )
    _fold_args(p, landmarks=False)
    p.add_argument("--autoencoder", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(handler=train_synth3d_diffusion)

    for name, help in (
        ("sample-synth3d", "generated CTs for deformed training masks"),
        ("sample-synth3d-nolatent", "control synth3d_nolatent: the same masks, decoder alone"),
    ):
        p = sub.add_parser(name, help=help)
        _fold_args(p, landmarks=True)
        p.add_argument("--autoencoder", required=True)
        if name == "sample-synth3d":
            p.add_argument("--diffusion", required=True)
        for flag in ("--out-ct", "--out-seg", "--out-landmarks"):
            p.add_argument(flag, nargs="+", required=True)
        p.set_defaults(handler=sample_synth3d, diffusion=None)

    p = sub.add_parser("render-synth3d", help="one part of the DRRs of one generated CT")
    p.add_argument("--arm", choices=["synth3d", "synth3d_nolatent"], required=True)
    for flag in ("--fold", "--volume", "--part"):
        p.add_argument(flag, type=int, required=True)
    for flag in ("--ct", "--landmarks", "--out"):
        p.add_argument(flag, required=True)
    add_settings(p)
    p.set_defaults(handler=render_synth3d)

    p = sub.add_parser("render-drr-grid", help="control drr_grid: DRRs of a CT on the model grid")
    for flag in ("--subject", "--ct", "--landmarks", "--out"):
        p.add_argument(flag, required=True)
    add_settings(p)
    p.set_defaults(handler=render_drr_grid)

    p = sub.add_parser(
        "render-drr-recon", help="control drr_recon: DRRs of a CT's autoencoder reconstruction"
    )
    p.add_argument("--fold", type=int, required=True)
    for flag in ("--subject", "--ct", "--seg", "--landmarks", "--autoencoder", "--out"):
        p.add_argument(flag, required=True)
    add_settings(p)
    p.set_defaults(handler=render_drr_recon)

    p = sub.add_parser(
        "synth3d-quality", help="bone Dice and HU distances of generated CTs, and their QC figures"
    )
    _fold_args(p, landmarks=True)
    for flag in ("--generated-ct", "--generated-seg", "--generated-landmarks", "--out-qc"):
        p.add_argument(flag, nargs="+", required=True)
    p.add_argument("--autoencoder", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(handler=synth3d_quality)

    p = sub.add_parser("report-synth3d", help="synth3d quality table from per-fold tables")
    p.add_argument("--out", required=True)
    p.add_argument("tables", nargs="+")
    p.set_defaults(handler=report_synth3d)
