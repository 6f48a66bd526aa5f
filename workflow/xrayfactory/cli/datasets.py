"""Subcommands of workflow/rules/datasets.smk (DeepFluoro)."""

from __future__ import annotations

import argparse

from xrayfactory.cli.common import add_settings


def download_deepfluoro(a: argparse.Namespace) -> None:
    from xrayfactory.datasets.jobs import download_deepfluoro as job

    job(
        a.archive,
        a.member,
        a.out,
        url=a.url,
        mirror=a.mirror,
        sha256=a.sha256,
        checksum_url=a.checksum_url,
    )


def import_deepfluoro(a: argparse.Namespace) -> None:
    from xrayfactory.datasets.deepfluoro import Preprocessing
    from xrayfactory.datasets.jobs import ImportOutputs
    from xrayfactory.datasets.jobs import import_deepfluoro as job

    s = a.settings
    prep = Preprocessing(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in s["preprocessing"].items()}
    )
    out = ImportOutputs(a.out_ct, a.out_seg, a.out_landmarks, a.out_labels, a.out_images)
    job(
        a.file,
        a.specimen,
        a.subject,
        list(s["names"]),
        prep,
        s["sid"],
        s["max_reprojection_px"],
        out,
        a.preprocessed,
    )


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "download-deepfluoro",
        help="copy the archive from a mirror or download it, verify it, extract one member",
    )
    p.add_argument("--archive", required=True)
    p.add_argument("--sha256", default=None, help="pinned sha256 of the archive")
    p.add_argument("--checksum-url", default=None, help="Dataverse listing with its checksum")
    p.add_argument("--member", required=True)
    p.add_argument("--mirror", default=None)
    p.add_argument("--url", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(handler=download_deepfluoro)

    p = sub.add_parser(
        "import-deepfluoro",
        help="one DeepFluoro specimen: CT, label map, 3D landmarks and its real image set",
    )
    for flag in ("--file", "--specimen", "--subject", "--out-ct", "--out-seg"):
        p.add_argument(flag, required=True)
    p.add_argument("--out-landmarks", required=True)
    p.add_argument("--out-labels", required=True, help="label id <TAB> name (vol-seg/labels-def)")
    p.add_argument("--out-images", required=True)
    p.add_argument("--preprocessed", default=None, help="ipcai_2020_ds_<d>x.h5: images, labels")
    add_settings(p)
    p.set_defaults(handler=import_deepfluoro)
