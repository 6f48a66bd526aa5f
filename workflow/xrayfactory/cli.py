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

from xrayfactory.deepfluoro_cli import add_commands as add_deepfluoro_commands
from xrayfactory.errors import InputError
from xrayfactory.synth3d_cli import add_commands as add_synth3d_commands

log = logging.getLogger("xrayfactory")


def _json(text: str) -> dict:
    return json.loads(text)


def cmd_fetch(a: argparse.Namespace) -> None:
    from xrayfactory.fetch import fetch

    for item in a.file:
        name, _, digest = item.partition("=")
        fetch(name, digest, Path(a.dest) / name, mirror=a.mirror, url=a.url)


def cmd_fetch_archive(a: argparse.Namespace) -> None:
    from xrayfactory.fetch import Checksum, fetch_archive, published_checksum

    if a.sha256:
        expected = Checksum("sha256", a.sha256, "the pinned sha256 (deepfluoro.sha256)")
    elif a.checksum_url:
        try:
            expected = published_checksum(a.checksum_url, url=a.url, filename=a.archive)
        except InputError as e:
            raise InputError(e.where, f"{e.problem}; pin the sha256 (deepfluoro.sha256)") from e
        log.info(
            "%s: %s %s published by %s",
            a.archive,
            expected.algorithm,
            expected.value,
            a.checksum_url,
        )
    else:
        raise InputError(
            "config keys deepfluoro.sha256 and deepfluoro.checksum_url",
            "both unset: the archive is only used after its checksum is verified",
        )
    fetch_archive(a.archive, expected, a.member, a.out, mirror=a.mirror, url=a.url)


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


def _generated_fold(a: argparse.Namespace) -> int:
    """The fold a generated volume belongs to (required for synth3d renders)."""
    if a.fold is None:
        raise InputError("--fold", f"rendering {a.subject} of arm {a.arm} needs its fold")
    return a.fold


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
    # the DRR controls take the `drr` arm's views of the same subject: only the CT differs
    rng = rng_for(s["seed"], "drr" if a.arm in ("drr_grid", "drr_recon") else a.arm, a.subject)
    if a.arm in ("drr", "synth3d", "drr_grid", "drr_recon"):
        from xrayfactory.drr import make_renderer

        opts = dict(s["drr"])
        renderer = make_renderer(opts.pop("backend"), device=s["device"], **opts)
        attrs = {
            "arm": a.arm,
            "generator": f"drr:{type(renderer).__name__}",
            "intensity": "log_attenuation",
            "proxy": False,
        }
        if a.arm == "synth3d":
            attrs["generator"] = f"synth3d latent diffusion CT + {attrs['generator']}"
            attrs["fold"] = _generated_fold(a)
            attrs["trained_on"] = "the fold's training CTs"
        elif a.arm == "drr_grid":
            from xrayfactory.controls import on_model_grid
            from xrayfactory.ctgrid import grid_spec

            spec = grid_spec(s["synth3d"])
            ct = on_model_grid(ct, spec)
            attrs["generator"] += (
                f" of the CT on the synth3d grid ({spec.spacing_mm:g} mm, HU window "
                f"{list(spec.hu_range)})"
            )
        elif a.arm == "drr_recon":
            from xrayfactory.controls import reconstructed
            from xrayfactory.synth3d import load_autoencoder

            attrs["fold"] = _generated_fold(a)
            ae, _, spec, _, meta = load_autoencoder(a.autoencoder)
            if meta.get("fold") != a.fold or a.subject not in meta.get("subjects", []):
                raise InputError(
                    a.autoencoder, f"trained on {meta}, not on subject {a.subject} of fold {a.fold}"
                )
            ct = reconstructed(ct, ae, spec, device=s["device"])
            attrs["generator"] += " of the fold's synth3d autoencoder reconstruction of the CT"
        form = lambda ps: renderer.render(ct, ps, carm.rows, carm.cols)  # noqa: E731
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
        raise InputError(
            "--arm",
            f"unknown arm {a.arm!r} for rendering (real, drr, synth3d, drr_grid, drr_recon)",
        )
    result = subject_imageset(a.subject, lm, carm, sampler, s["n_images"], rng, form, attrs)
    write_imageset(a.out, result)
    log.info(
        "%s/%s: %d images, %.0f%% of landmarks visible",
        a.arm,
        a.subject,
        len(result),
        100 * result.visible.mean(),
    )


def cmd_resize_imageset(a: argparse.Namespace) -> None:
    from dataclasses import replace

    from xrayfactory.controls import resized
    from xrayfactory.imageset import read_imageset, write_imageset

    s = read_imageset(a.shard)
    attrs = {
        **s.attrs,
        "arm": "real_resized",
        "generator": f"{s.attrs.get('generator')}, resized to {a.size} px and back",
    }
    write_imageset(a.out, replace(s, images=resized(s.images, a.size), attrs=attrs))
    log.info("%s: %d images through %d x %d px", a.shard, len(s), a.size, a.size)


def cmd_qc_imageset(a: argparse.Namespace) -> None:
    from xrayfactory.imageset import concatenate, read_imageset
    from xrayfactory.qc import imageset_grid

    s = concatenate([read_imageset(p) for p in a.shards], a.out)
    note = ""
    if s.attrs.get("proxy"):
        note = " (PROXY-real images from the acquisition model)"
    elif "trained_on" in s.attrs:
        shown = "conditioning" if s.attrs.get("arm") == "synth2d" else "carried 3D"
        note = f" (generated; {shown} landmarks shown; trained on {s.attrs['trained_on']})"
    imageset_grid(s, f"arm {s.attrs.get('arm')}: {len(s)} images{note}", a.out)


def _detector_settings(s: dict, seed: int):
    from xrayfactory.detector import DetectorSettings

    fields = {k: v for k, v in s.items() if k in DetectorSettings.__dataclass_fields__}
    fields["channels"] = tuple(fields.get("channels", DetectorSettings.channels))
    return DetectorSettings(**fields, seed=seed)


def cmd_train(a: argparse.Namespace) -> None:
    from xrayfactory.detector import preprocess, train
    from xrayfactory.splits import arm_training_set, load_arm

    s = a.settings
    settings = _detector_settings(s["detector"], a.seed)
    chosen, ids, train_subjects = arm_training_set(
        a.arm, a.fold, a.folds, load_arm(a.shards), s["detector"]["train_images"], a.seed
    )
    names = list(chosen.attrs["landmark_names"])
    data = preprocess(chosen.images, chosen.landmarks, chosen.visible, settings.image_size)
    meta = {"arm": a.arm, "fold": a.fold, "subjects": train_subjects, "image_ids": ids}
    log.info(
        "training the %s detector of fold %d (seed %d) on %d images",
        a.arm,
        a.fold,
        a.seed,
        len(chosen),
    )
    train(data, names, settings, Path(a.out), meta=meta, device=s["device"])


def _write_csv(df, path: str) -> None:
    from xrayfactory.atomic import atomic_path

    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def cmd_evaluate(a: argparse.Namespace) -> None:
    from xrayfactory.detector import Detector
    from xrayfactory.metrics import prediction_table
    from xrayfactory.splits import fold_subjects, held_out_set, load_arm

    _, test_subjects = fold_subjects(a.folds, a.fold)
    test, ids = held_out_set(load_arm(a.shards), test_subjects, f"fold {a.fold}")
    det = Detector(a.model)
    det.check_compatible(list(test.attrs["landmark_names"]), a.image_size)
    if det.meta.get("fold") != a.fold:
        raise InputError(
            a.model, f"trained for fold {det.meta.get('fold')}, evaluated on fold {a.fold}"
        )
    pts, scores, found = det.predict(test.images)
    _write_csv(prediction_table(a.arm, a.fold, a.seed, test, ids, pts, scores, found), a.out)


def cmd_baseline(a: argparse.Namespace) -> None:
    from xrayfactory.metrics import prediction_table
    from xrayfactory.splits import fold_subjects, held_out_set, load_arm, training_set

    train_subjects, test_subjects = fold_subjects(a.folds, a.fold)
    pool = load_arm(a.shards)
    chosen = training_set(
        pool,
        train_subjects,
        a.n_images,
        (a.seed, "select", "real", a.fold),
        f"baseline, fold {a.fold}",
    )
    test, ids = held_out_set(pool, test_subjects, f"fold {a.fold}")
    vis = chosen.visible[..., None]
    mean = (chosen.landmarks * vis).sum(0) / np.maximum(vis.sum(0), 1)
    pts = np.broadcast_to(mean, test.landmarks.shape)
    found = np.broadcast_to(chosen.visible.mean(0) > 0.5, test.visible.shape)
    _write_csv(
        prediction_table(a.arm, a.fold, a.seed, test, ids, pts, found.astype(float), found), a.out
    )


def cmd_report(a: argparse.Namespace) -> None:
    from xrayfactory.report import StatsSettings, write_report
    from xrayfactory.splits import load_arm

    e = a.settings["evaluation"]
    stats = StatsSettings(
        thresholds_mm=e["thresholds_mm"],
        n_boot=e["n_bootstrap"],
        min_subject_clusters=e["min_subject_clusters"],
    )
    table = write_report(
        a.predictions, load_arm(a.test_shards), a.out_dir, stats, a.settings["cohort_source"]
    )
    for r in table.itertuples():
        log.info(
            "%-9s mean %.2f mm (median %.2f), detection %.2f",
            r.arm,
            r.mean_mm,
            r.median_mm,
            r.detection_rate,
        )


def cmd_train_synth2d(a: argparse.Namespace) -> None:
    from xrayfactory.detector import preprocess
    from xrayfactory.splits import arm_training_set, load_arm
    from xrayfactory.synth2d import settings_from, train

    s = a.settings
    settings = settings_from(s["synth2d"], s["seed"])
    # exactly the images the `real` arm's detector (first seed) trains on in this fold: the
    # generator sees no more real data than the arm it is compared with
    sel = s["selection"]
    real, ids, subjects = arm_training_set(
        "real", a.fold, a.folds, load_arm(a.shards), sel["n_images"], sel["seed"]
    )
    data = preprocess(real.images, real.landmarks, real.visible, settings.image_size)
    trained_on = "proxy-real" if real.attrs.get("proxy") else "real"
    meta = {"fold": a.fold, "subjects": subjects, "image_ids": ids, "trained_on": trained_on}
    log.info("training the synth2d generator of fold %d on %d images", a.fold, len(real))
    train(
        data.images,
        data.landmarks,
        data.visible,
        list(real.attrs["landmark_names"]),
        settings,
        Path(a.out),
        meta=meta,
        device=s["device"],
    )


def _generator(a: argparse.Namespace):
    """The fold's generator, its shape model (training subjects' landmarks) and the C-arm."""
    from xrayfactory.geometry import CArm, ViewSampler
    from xrayfactory.shapes import shape_model_from_files
    from xrayfactory.synth2d import Synth2D

    s = a.settings
    gen = Synth2D(a.model, device=s["device"])
    if gen.meta.get("fold") != a.fold:
        raise InputError(a.model, f"trained for fold {gen.meta.get('fold')}, not fold {a.fold}")
    shapes = shape_model_from_files(a.landmarks, s["names"])
    views = ViewSampler(**{k: tuple(v) for k, v in s["views"].items()})
    return gen, shapes, CArm(**s["carm"]), views


def cmd_sample_synth2d(a: argparse.Namespace) -> None:
    from xrayfactory.imageset import write_imageset
    from xrayfactory.synth2d import generate

    s = a.settings
    gen, shapes, carm, views = _generator(a)
    first = a.shard * s["shard_size"]
    n = min(s["shard_size"], s["n_images"] - first)
    if n <= 0:
        raise InputError(a.out, f"shard {a.shard} is empty for synth2d.n_images = {s['n_images']}")
    out = generate(
        gen,
        shapes,
        carm,
        views,
        n,
        sampler=s["sampler"],
        rng_key=(s["seed"], "synth2d", a.fold, a.shard),
        shape_scale=s["shape_scale"],
        fold=a.fold,
        first_id=first,
    )
    write_imageset(a.out, out)
    log.info("synth2d fold %d shard %d: %d images", a.fold, a.shard, len(out))


def cmd_synth2d_fidelity(a: argparse.Namespace) -> None:
    from xrayfactory.detector import Detector
    from xrayfactory.fidelity import fidelity_rows, fidelity_table, sampler_row, timed
    from xrayfactory.splits import load_arm
    from xrayfactory.synth2d import generate

    s = a.settings
    det = Detector(a.detector, device=s["device"])
    generated = load_arm(a.shards)
    det.check_compatible(list(generated.attrs["landmark_names"]), det.settings.image_size)
    table = fidelity_table(fidelity_rows(det, generated, "synth2d", a.fold))
    table.insert(0, "fold", a.fold)
    _write_csv(table, a.out_fidelity)
    gen, shapes, carm, views = _generator(a)
    rows = []
    for sampler in s["fidelity"]["samplers"]:
        images, seconds = timed(
            generate,
            gen,
            shapes,
            carm,
            views,
            s["fidelity"]["n_images"],
            sampler=sampler,
            rng_key=(s["seed"], "synth2d-fidelity", a.fold),
            fold=a.fold,
        )
        rows.append(sampler_row(det, images, sampler, seconds, a.fold))
        log.info(
            "%s %d steps: %.2f px mean fidelity",
            sampler["kind"],
            sampler["steps"],
            rows[-1]["mean_px"],
        )
    import pandas as pd

    _write_csv(pd.DataFrame(rows), a.out_steps)


def cmd_realism(a: argparse.Namespace) -> None:
    import pandas as pd

    from xrayfactory.detector import Detector
    from xrayfactory.realism import encoder_features, frechet_distance, intensity_distance
    from xrayfactory.splits import fold_subjects, held_out_set, load_arm, realism_sample

    s = a.settings
    n, seed = s["n_images"], s["selection_seed"]
    _, test_subjects = fold_subjects(a.folds, a.fold)
    test, _ = held_out_set(load_arm(a.real), test_subjects, f"fold {a.fold}")
    det = Detector(a.detector, device=s["device"])
    pool = load_arm(a.shards)
    sample = realism_sample(a.arm, a.fold, a.folds, pool, n, s["train_images"], seed)
    row = {
        "arm": a.arm,
        "fold": a.fold,
        "n_images": n,
        "n_test_images": len(test),
        "frechet_distance": np.nan,
        "intensity_distance": np.nan,
        "test_data": "proxy-real" if test.attrs.get("proxy") else "real",
    }
    if sample is None:
        log.warning(
            "fold %d: fewer than %d real training-subject images that the feature network did "
            "not train on: `real` realism not measured",
            a.fold,
            n,
        )
    else:
        row["frechet_distance"] = frechet_distance(
            encoder_features(det, sample.images), encoder_features(det, test.images)
        )
        row["intensity_distance"] = intensity_distance(sample.images, test.images)
        log.info(
            "%s fold %d: FD %.3f, intensity EMD %.4f (N = %d)",
            a.arm,
            a.fold,
            row["frechet_distance"],
            row["intensity_distance"],
            n,
        )
    _write_csv(pd.DataFrame([row]), a.out)


def cmd_report_realism(a: argparse.Namespace) -> None:
    from xrayfactory.report import realism_table

    table = realism_table(a.tables)
    _write_csv(table, a.out)
    for r in table.itertuples():
        log.info(
            "%-8s FD %.3f, intensity EMD %.4f", r.arm, r.frechet_distance, r.intensity_distance
        )


def cmd_report_synth2d(a: argparse.Namespace) -> None:
    from xrayfactory.report import concat_tables

    _write_csv(concat_tables(a.fidelity, ["landmark"]), a.out_fidelity)
    _write_csv(concat_tables(a.steps, ["sampler", "steps", "guidance"]), a.out_steps)


def cmd_predict(a: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from xrayfactory.atomic import atomic_path
    from xrayfactory.detector import Detector
    from xrayfactory.radiographs import read_radiograph

    det = Detector(a.model)
    images = [(p, read_radiograph(p)) for p in a.images]  # read all first: fail before writing
    out = Path(a.out_dir)
    rows = []
    for path, img in images:
        pts, scores, found = det.predict(img[None])
        for name, (c, r), sc, f in zip(det.names, pts[0], scores[0], found[0], strict=True):
            rows.append(
                {"image": str(path), "landmark": name, "col": c, "row": r, "score": sc, "found": f}
            )
        fig, ax = plt.subplots(figsize=(5, 5 * img.shape[0] / img.shape[1]))
        ax.imshow(img, cmap="gray")
        ok = found[0]
        ax.scatter(pts[0, ok, 0], pts[0, ok, 1], c="red", s=14)
        for name, (c, r) in zip(np.array(det.names)[ok], pts[0, ok], strict=True):
            ax.annotate(
                name, (c, r), color="yellow", fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        ax.axis("off")
        with atomic_path(out / f"{Path(path).stem}_landmarks.png") as tmp:
            fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
    with atomic_path(out / "landmarks.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    log.info("%d image(s): landmarks in %s", len(images), out / "landmarks.csv")


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
        "fetch-archive",
        cmd_fetch_archive,
        "copy a zip from a mirror or download it, verify its checksum, extract one member",
        ("--archive", req),
        ("--sha256", {"default": None, "help": "pinned sha256 of the archive"}),
        ("--checksum-url", {"default": None, "help": "Dataverse file listing with its checksum"}),
        ("--member", req),
        ("--mirror", {"default": None}),
        ("--url", req),
        ("--out", req),
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
        "image set of one subject or generated volume (proxy-real, drr or synth3d)",
        ("--arm", req),
        ("--subject", req),
        ("--ct", req),
        ("--landmarks", req),
        ("--out", req),
        ("--fold", {"type": int, "default": None, "help": "a generated volume's fold"}),
        ("--autoencoder", {"default": None, "help": "the fold's synth3d autoencoder (drr_recon)"}),
        settings,
    )
    add(
        "resize-imageset",
        cmd_resize_imageset,
        "an image set taken down to the synth2d image size and back (control real_resized)",
        ("--size", {"type": int, "required": True}),
        ("--out", req),
        ("shard", {}),
    )
    add(
        "qc-imageset",
        cmd_qc_imageset,
        "QC grid of an image set",
        ("--out", req),
        ("shards", {"nargs": "+"}),
    )
    run = [
        ("--arm", req),
        ("--fold", {"type": int, "required": True}),
        ("--seed", {"type": int, "required": True}),
        ("--folds", req),
    ]
    shards = ("shards", {"nargs": "+"})
    add(
        "train",
        cmd_train,
        "train one detector (arm, fold, seed)",
        *run,
        ("--out", req),
        settings,
        shards,
    )
    add(
        "evaluate",
        cmd_evaluate,
        "predict a fold's test images with a trained detector",
        *run,
        ("--model", req),
        ("--image-size", {"type": int, "required": True}),
        ("--out", req),
        shards,
    )
    add(
        "baseline",
        cmd_baseline,
        "mean-position baseline of a fold",
        *run,
        ("--n-images", {"type": int, "required": True}),
        ("--out", req),
        shards,
    )
    fold = ("--fold", {"type": int, "required": True})
    add(
        "train-synth2d",
        cmd_train_synth2d,
        "train a fold's synth2d generator on its training subjects' real images",
        fold,
        ("--folds", req),
        ("--out", req),
        settings,
        shards,
    )
    generator = [fold, ("--model", req), ("--landmarks", many), settings]
    add(
        "sample-synth2d",
        cmd_sample_synth2d,
        "one shard of generated, labelled images",
        *generator,
        ("--shard", {"type": int, "required": True}),
        ("--out", req),
    )
    add(
        "synth2d-fidelity",
        cmd_synth2d_fidelity,
        "label fidelity of generated images and its relation to sampler steps",
        *generator,
        ("--detector", req),
        ("--out-fidelity", req),
        ("--out-steps", req),
        shards,
    )
    add(
        "realism",
        cmd_realism,
        "Fréchet and intensity distances of an arm's training images to real test images",
        ("--arm", req),
        fold,
        ("--folds", req),
        ("--detector", req),
        ("--real", many),
        ("--out", req),
        settings,
        shards,
    )
    add(
        "report",
        cmd_report,
        "tables and figures from prediction files",
        ("--out-dir", req),
        ("--test-shards", many),
        ("--predictions", many),
        settings,
    )
    add(
        "report-realism",
        cmd_report_realism,
        "realism table from per-(arm, fold) tables",
        ("--out", req),
        ("tables", {"nargs": "+"}),
    )
    add(
        "report-synth2d",
        cmd_report_synth2d,
        "label-fidelity and sampler-steps tables from per-fold tables",
        ("--fidelity", many),
        ("--steps", many),
        ("--out-fidelity", req),
        ("--out-steps", req),
    )
    add(
        "predict",
        cmd_predict,
        "detect landmarks on DICOM / PNG / JPEG / TIFF X-rays",
        ("--model", req),
        ("--out-dir", req),
        ("images", {"nargs": "+"}),
    )
    add_synth3d_commands(add, settings)
    add_deepfluoro_commands(add, settings)
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
