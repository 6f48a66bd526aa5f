"""The synth3d stages of `python -m xrayfactory`: train the autoencoder and the latent diffusion
model of a fold, sample CTs for deformed training masks, and measure their quality."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from xrayfactory.errors import InputError

log = logging.getLogger("xrayfactory")


def _fold_subjects(a: argparse.Namespace) -> list[str]:
    """The given subjects, checked to be exactly the fold's training subjects (no leakage)."""
    from xrayfactory.splits import fold_subjects

    train, _ = fold_subjects(a.folds, a.fold)
    if sorted(a.subjects) != sorted(train):
        raise InputError(
            a.folds, f"fold {a.fold} trains on {train}, but synth3d was given {a.subjects}"
        )
    for flag in ("ct", "seg", "landmarks"):
        files = getattr(a, flag, None)
        if files is not None and len(files) != len(a.subjects):
            raise InputError(f"--{flag}", f"{len(files)} files for {len(a.subjects)} subjects")
    return list(a.subjects)


def _load(a: argparse.Namespace, i: int):
    from xrayfactory.volumes import load_ct, load_segmentation

    ct = load_ct(a.ct[i])
    return ct, load_segmentation(a.seg[i], ct, a.ct[i])


def _training_data(a: argparse.Namespace, spec) -> tuple[np.ndarray, np.ndarray]:
    from xrayfactory.ctgrid import training_pair

    pairs = [training_pair(*_load(a, i), spec) for i in range(len(a.subjects))]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def _meta(a: argparse.Namespace) -> dict:
    return {"fold": a.fold, "subjects": sorted(a.subjects)}


def cmd_train_autoencoder(a: argparse.Namespace) -> None:
    from xrayfactory.ctgrid import grid_spec
    from xrayfactory.synth3d import autoencoder_settings, runtime, train_autoencoder

    s = a.settings
    section = s["synth3d"]
    spec, ae = grid_spec(section), autoencoder_settings(section)
    _fold_subjects(a)
    volumes, _ = _training_data(a, spec)
    log.info("training the synth3d autoencoder of fold %d on %d CTs", a.fold, len(volumes))
    train_autoencoder(
        volumes,
        spec,
        ae,
        runtime(section, s["seed"]),
        Path(a.out),
        meta=_meta(a),
        device=s["device"],
    )


def cmd_train_diffusion(a: argparse.Namespace) -> None:
    from xrayfactory.synth3d import diffusion_settings, load_autoencoder, runtime, train_diffusion

    s = a.settings
    section = s["synth3d"]
    _fold_subjects(a)
    _, _, spec, _, meta = load_autoencoder(a.autoencoder)
    if meta != _meta(a):
        raise InputError(a.autoencoder, f"trained on {meta}, not on {_meta(a)}")
    volumes, conditions = _training_data(a, spec)
    log.info("training the synth3d latent diffusion model of fold %d", a.fold)
    train_diffusion(
        a.autoencoder,
        volumes,
        conditions,
        diffusion_settings(section),
        runtime(section, s["seed"]),
        Path(a.out),
        meta=_meta(a),
        device=s["device"],
    )


def cmd_sample(a: argparse.Namespace) -> None:
    from xrayfactory.cohort import rng_for
    from xrayfactory.ctgrid import deformed_mask, to_hu
    from xrayfactory.deform import DeformationParams
    from xrayfactory.landmarks import load_landmarks, save_landmarks
    from xrayfactory.progress import Progress
    from xrayfactory.synth3d import Synth3D
    from xrayfactory.volumes import save_nifti

    s = a.settings
    subjects = _fold_subjects(a)
    model = Synth3D(a.autoencoder, a.diffusion, device=s["device"])
    if model.meta.get("fold") != a.fold:
        raise InputError(a.autoencoder, f"trained for fold {model.meta.get('fold')}, not {a.fold}")
    params = DeformationParams(**s["deformation"])
    sampler = s["sampler"]
    sources = []  # (ct, seg, landmarks) per training subject, each read once
    for i in range(len(subjects)):
        ct, seg = _load(a, i)
        sources.append((ct, seg, load_landmarks(a.landmarks[i], s["names"], ct)))
    n = len(a.out_ct)
    progress = Progress(n, "synth3d generation", unit="volumes", interval=0)
    for start in range(0, n, sampler["batch_size"]):
        masks = []
        for k in range(start, min(n, start + sampler["batch_size"])):
            i = k % len(subjects)
            rng = rng_for(s["seed"], "synth3d-mask", a.fold, k)
            masks.append(deformed_mask(subjects[i], *sources[i], model.spec, params, rng))
        volumes = model.generate(
            np.stack([m.condition for m in masks]),
            sampler=sampler["kind"],
            steps=sampler["steps"],
            rng_key=(s["seed"], "synth3d", a.fold, start),
            batch_size=len(masks),
            mixed_precision=s["mixed_precision"],
            progress=progress,
        )
        for k, (m, x) in enumerate(zip(masks, volumes, strict=True), start):
            hu = np.round(to_hu(x, model.spec)).astype(np.int16)
            save_nifti(a.out_ct[k], hu, m.affine)
            save_nifti(a.out_seg[k], m.seg, m.affine)
            save_landmarks(a.out_landmarks[k], m.landmarks)
            log.info("volume %d from %s's deformed mask -> %s", k, m.source, a.out_ct[k])


def cmd_quality(a: argparse.Namespace) -> None:
    import pandas as pd

    from xrayfactory.atomic import atomic_path
    from xrayfactory.ctgrid import grid_hu, grid_spec, resample
    from xrayfactory.ctquality import (
        drawn_landmarks,
        landmark_offset,
        tissue_values,
        volume_quality,
    )
    from xrayfactory.landmarks import load_landmarks
    from xrayfactory.volumes import load_ct, load_segmentation

    s = a.settings
    spec = grid_spec(s["synth3d"])
    _fold_subjects(a)
    bone_hu = s["synth3d"]["bone_hu"]
    names, labels = s["names"], s["labels"]
    real = []
    for i in range(len(a.subjects)):
        ct, seg = _load(a, i)
        hu = grid_hu(ct, spec)
        grid_seg = resample(seg.data, seg.affine, hu.affine, spec.shape, order=0, cval=0)
        real.append((hu.data, grid_seg, hu.affine, load_landmarks(a.landmarks[i], names)))
    reference = tissue_values([(hu, seg) for hu, seg, _, _ in real], spec)

    def row(kind: str, volume, hu, seg, affine, landmarks) -> dict:
        drawn = drawn_landmarks(hu, seg, affine, spec, bone_hu, labels, names)
        q = volume_quality(hu, seg, reference, spec, bone_hu)
        return {
            "fold": a.fold,
            "volume": volume,
            "kind": kind,
            **q,
            **landmark_offset(drawn, landmarks),
        }

    rows = [row("real", subject, *r) for subject, r in zip(a.subjects, real, strict=True)]
    generated = zip(a.generated_ct, a.generated_seg, a.generated_landmarks, strict=True)
    for k, (ct_path, seg_path, lm_path) in enumerate(generated):
        ct = load_ct(ct_path)
        seg = load_segmentation(seg_path, ct, ct_path)
        rows.append(
            row("generated", k, ct.data, seg.data, ct.affine, load_landmarks(lm_path, names))
        )
        log.info(
            "fold %d volume %d: bone Dice %.3f, carried landmarks %.1f mm from the drawn bone's",
            a.fold,
            k,
            rows[-1]["bone_dice"],
            rows[-1]["landmark_offset_mm"],
        )
    with atomic_path(a.out) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def cmd_report(a: argparse.Namespace) -> None:
    import pandas as pd

    from xrayfactory.atomic import atomic_path
    from xrayfactory.ctquality import quality_table

    table = quality_table(pd.concat([pd.read_csv(p) for p in a.tables], ignore_index=True))
    with atomic_path(a.out) as tmp:
        table.to_csv(tmp, index=False)


def add_commands(add, settings: tuple) -> None:
    """Register the synth3d subcommands with the CLI's `add(name, fn, help, *args)`."""
    req = {"required": True}
    many = {"nargs": "+", "required": True}
    fold = [("--fold", {"type": int, "required": True}), ("--folds", req), ("--subjects", many)]
    training = [*fold, ("--ct", many), ("--seg", many), settings]
    add(
        "train-synth3d-autoencoder",
        cmd_train_autoencoder,
        "train a fold's synth3d autoencoder on its training CTs",
        *training,
        ("--out", req),
    )
    add(
        "train-synth3d-diffusion",
        cmd_train_diffusion,
        "train a fold's mask-conditioned latent diffusion model",
        *training,
        ("--autoencoder", req),
        ("--out", req),
    )
    add(
        "sample-synth3d",
        cmd_sample,
        "generate CTs (NIfTI + label map + landmarks) for deformed training masks",
        *training,
        ("--landmarks", many),
        ("--autoencoder", req),
        ("--diffusion", req),
        ("--out-ct", many),
        ("--out-seg", many),
        ("--out-landmarks", many),
    )
    add(
        "synth3d-quality",
        cmd_quality,
        "bone Dice and per-tissue HU distances of a fold's generated CTs",
        *training,
        ("--landmarks", many),
        ("--generated-ct", many),
        ("--generated-seg", many),
        ("--generated-landmarks", many),
        ("--out", req),
    )
    add(
        "report-synth3d",
        cmd_report,
        "synth3d quality table from per-fold tables",
        ("--out", req),
        ("tables", {"nargs": "+"}),
    )
