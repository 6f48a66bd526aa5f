"""Subcommands of workflow/rules/imaging.smk."""

from __future__ import annotations

import argparse

from xrayfactory.cli.common import add_settings


def render_imageset(a: argparse.Namespace) -> None:
    from xrayfactory.imaging.acquisition import AcquisitionParams
    from xrayfactory.imaging.jobs import render_imageset as job
    from xrayfactory.imaging.render import ViewPlan

    s = a.settings
    plan = ViewPlan.from_settings(s)
    if a.arm == "real":
        form = AcquisitionParams.from_config(s["acquisition"], s["device"])
    else:
        form = s["drr"]
    job(a.subject, a.ct, a.landmarks, a.out, plan, form, s["device"])


def imageset_qc(a: argparse.Namespace) -> None:
    from xrayfactory.imaging.qc import imageset_qc as job

    job(a.shards, a.out)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render-imageset",
        help="a subject's image set: proxy-real X-rays (real) or DRRs (drr)",
    )
    p.add_argument("--arm", required=True, choices=("real", "drr"))
    for flag in ("--subject", "--ct", "--landmarks", "--out"):
        p.add_argument(flag, required=True)
    add_settings(p)
    p.set_defaults(handler=render_imageset)

    p = sub.add_parser("imageset-qc", help="QC grid of an arm's image sets")
    p.add_argument("--out", required=True)
    p.add_argument("shards", nargs="+")
    p.set_defaults(handler=imageset_qc)
