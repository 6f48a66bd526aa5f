"""`python -m xrayfactory <stage> ...`: every workflow step, runnable and debuggable by hand.

Settings that come from the config are passed as JSON (`--settings`), so a rule's params show
exactly what the step used, and a change in them reruns the step.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from xrayfactory.errors import InputError

log = logging.getLogger("xrayfactory")


def _json(text: str) -> dict:
    return json.loads(text)


def cmd_fetch(a: argparse.Namespace) -> None:
    from xrayfactory.fetch import fetch

    for item in a.file:
        name, _, digest = item.partition("=")
        fetch(name, digest, Path(a.dest) / name, mirror=a.mirror, url=a.url)


def cmd_landmarks(a: argparse.Namespace) -> None:
    from xrayfactory.landmarks import derive_landmarks, save_landmarks
    from xrayfactory.volumes import load_ct, load_segmentation

    ct = load_ct(a.ct)
    seg = load_segmentation(a.seg, ct, a.ct)
    lm = derive_landmarks(seg, a.settings["labels"], a.settings["names"], a.seg)
    save_landmarks(a.out, lm)
    log.info("derived %d landmarks from %s", len(lm), a.seg)


def cmd_make_subject(a: argparse.Namespace) -> None:
    from xrayfactory.cohort import rng_for
    from xrayfactory.deform import DeformationParams, deform_subject
    from xrayfactory.landmarks import load_landmarks, save_landmarks
    from xrayfactory.volumes import load_ct, load_segmentation, save_nifti

    s = a.settings
    ct = load_ct(a.ct)
    seg = load_segmentation(a.seg, ct, a.ct)
    lm = load_landmarks(a.landmarks, s["names"], ct)
    rng = rng_for(s["seed"], "cohort", a.subject)
    new_ct, new_seg, new_lm, warp = deform_subject(
        ct, seg, lm, DeformationParams(**s["deformation"]), rng
    )
    log.info("%s: min Jacobian determinant %.3f", a.subject, warp.min_jacobian())
    save_nifti(a.out_ct, np.round(new_ct.data).astype(np.int16), new_ct.affine)
    save_nifti(a.out_seg, new_seg.data.astype(np.uint8), new_seg.affine)
    save_landmarks(a.out_landmarks, new_lm)


def cmd_sheet(a: argparse.Namespace) -> None:
    from xrayfactory.cohort import read_sheet, write_sheet

    columns = [a.subjects, a.ct, a.segmentation, a.landmarks]
    if len({len(c) for c in columns}) != 1:
        raise InputError(a.out, "--subjects, --ct, --segmentation and --landmarks differ in length")
    keys = ("subject", "ct", "segmentation", "landmarks")
    write_sheet(a.out, [dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)])
    read_sheet(a.out, a.schema)


def cmd_split(a: argparse.Namespace) -> None:
    from xrayfactory.atomic import atomic_path
    from xrayfactory.cohort import folds

    df = folds(a.subjects, a.settings["scheme"], a.settings["n_folds"])
    with atomic_path(a.out) as tmp:
        df.to_csv(tmp, index=False)


def cmd_qc_subject(a: argparse.Namespace) -> None:
    from xrayfactory.landmarks import load_landmarks
    from xrayfactory.qc import subject_figure
    from xrayfactory.volumes import load_ct, load_segmentation

    ct = load_ct(a.ct)
    load_segmentation(a.seg, ct, a.ct)
    lm = load_landmarks(a.landmarks, a.settings["names"], ct)
    subject_figure(ct, lm, f"{a.subject}: 3D landmarks", a.out)


def cmd_render(a: argparse.Namespace) -> None:
    from xrayfactory.cohort import rng_for
    from xrayfactory.geometry import CArm, ViewSampler
    from xrayfactory.imageset import write_imageset
    from xrayfactory.landmarks import load_landmarks
    from xrayfactory.views import subject_imageset
    from xrayfactory.volumes import load_ct

    s = a.settings
    ct = load_ct(a.ct)
    lm = load_landmarks(a.landmarks, s["names"], ct)
    carm = CArm(**s["carm"])
    sampler = ViewSampler(**{k: tuple(v) for k, v in s["views"].items()})
    rng = rng_for(s["seed"], a.arm, a.subject)
    if a.arm == "drr":
        from xrayfactory.drr import make_renderer

        opts = dict(s["drr"])
        renderer = make_renderer(opts.pop("backend"), device=s["device"], **opts)
        form = lambda ps: renderer.render(ct, ps, carm.rows, carm.cols)  # noqa: E731
        attrs = {
            "arm": "drr",
            "generator": f"drr:{type(renderer).__name__}",
            "intensity": "log_attenuation",
            "proxy": False,
        }
    elif a.arm == "real":
        from xrayfactory.acquisition import AcquisitionParams, ProxyRealAcquisition

        params = AcquisitionParams(
            device=s["device"],
            **{k: tuple(v) if isinstance(v, list) else v for k, v in s["acquisition"].items()},
        )
        model = ProxyRealAcquisition(params)
        anchors = np.stack(list(lm.values()))
        form = lambda ps: model.acquire(ct, ps, carm.rows, carm.cols, carm.spacing, anchors, rng)  # noqa: E731
        attrs = {
            "arm": "real",
            "generator": "proxy-real acquisition model (PROXY for real X-rays)",
            "intensity": "processed",
            "proxy": True,
        }
    else:
        raise InputError("--arm", f"unknown arm {a.arm!r} for rendering (drr, real)")
    result = subject_imageset(a.subject, lm, carm, sampler, s["n_images"], rng, form, attrs)
    write_imageset(a.out, result)
    log.info(
        "%s/%s: %d images, %.0f%% of landmarks visible",
        a.arm,
        a.subject,
        len(result),
        100 * result.visible.mean(),
    )


def cmd_qc_imageset(a: argparse.Namespace) -> None:
    from xrayfactory.imageset import concatenate, read_imageset
    from xrayfactory.qc import imageset_grid

    s = concatenate([read_imageset(p) for p in a.shards], a.out)
    proxy = " (PROXY-real images from the acquisition model)" if s.attrs.get("proxy") else ""
    imageset_grid(s, f"arm {s.attrs.get('arm')}: {len(s)} images{proxy}", a.out)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xrayfactory", description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn, help_: str, *args: tuple[str, dict]) -> None:
        sp = sub.add_parser(name, help=help_)
        for flag, kw in args:
            sp.add_argument(flag, **kw)
        sp.set_defaults(func=fn)

    req = {"required": True}
    many = {"nargs": "+", "required": True}
    settings = (
        "--settings",
        {"type": _json, "required": True, "help": "JSON settings from the config"},
    )
    add(
        "fetch",
        cmd_fetch,
        "copy from a mirror or download, verifying sha256",
        ("--dest", req),
        ("--mirror", {"default": None}),
        ("--url", req),
        ("--file", {"action": "append", "required": True, "help": "NAME=SHA256"}),
    )
    add(
        "landmarks",
        cmd_landmarks,
        "derive 3D landmarks from a segmentation",
        ("--ct", req),
        ("--seg", req),
        ("--out", req),
        settings,
    )
    add(
        "make-subject",
        cmd_make_subject,
        "one deformed demo subject",
        ("--ct", req),
        ("--seg", req),
        ("--landmarks", req),
        ("--subject", req),
        ("--out-ct", req),
        ("--out-seg", req),
        ("--out-landmarks", req),
        settings,
    )
    add(
        "cohort-sheet",
        cmd_sheet,
        "write and validate a cohort sheet",
        ("--out", req),
        ("--schema", req),
        ("--subjects", many),
        ("--ct", many),
        ("--segmentation", many),
        ("--landmarks", many),
    )
    add("split", cmd_split, "subject-level folds", ("--out", req), ("--subjects", many), settings)
    add(
        "qc-subject",
        cmd_qc_subject,
        "QC figure of a subject's landmarks",
        ("--ct", req),
        ("--seg", req),
        ("--landmarks", req),
        ("--subject", req),
        ("--out", req),
        settings,
    )
    add(
        "render",
        cmd_render,
        "image set of one subject (drr or proxy-real)",
        ("--arm", req),
        ("--subject", req),
        ("--ct", req),
        ("--landmarks", req),
        ("--out", req),
        settings,
    )
    add(
        "qc-imageset",
        cmd_qc_imageset,
        "QC grid of an image set",
        ("--out", req),
        ("shards", {"nargs": "+"}),
    )
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    args = _parser().parse_args(argv)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    try:
        args.func(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
