"""`python -m xrayfactory import-deepfluoro`: one DeepFluoro specimen into the cohort files
(CT, label map, 3D landmarks) and the `real` image set."""

from __future__ import annotations

import argparse
import logging

import numpy as np

from xrayfactory.errors import InputError

log = logging.getLogger("xrayfactory")

MAX_REPROJECTION_PX = 1.0  # deepfluoro.max_reprojection_px's default (config schema)


def _check_reprojection(a: argparse.Namespace, error: np.ndarray, max_px: float) -> None:
    """Log how far the 3D landmarks, projected with the imported matrices, land from the
    stored 2D landmarks (visible ones); stop when the mean is over `max_px`: the geometry would
    be wrong for every DRR and view of the study."""
    mean, worst = (error.mean(), error.max()) if error.size else (np.nan, np.nan)
    log.info(
        "reprojection of the 3D landmarks vs the stored 2D landmarks (visible): mean %.2f px, "
        "max %.2f px (expect < 0.5 px; README, 'Reproduce the paper')",
        mean,
        worst,
    )
    if mean > max_px:
        raise InputError(
            a.file,
            f"specimen {a.specimen}: the 3D landmarks projected with the imported matrices land "
            f"{mean:.1f} px (mean; max {worst:.1f} px) from the stored 2D landmarks, more than "
            f"deepfluoro.max_reprojection_px = {max_px}: the file's pose convention is not the "
            "documented one (README, 'Reproduce the paper', step 2)",
        )


def _real_imageset(a: argparse.Namespace, spec, projs, params, prep, s: dict):
    """The specimen's projections as the `real` image set, after the reprojection check. The
    labels and their visibility are the stored 2D landmarks (in the image or not); a landmark
    the file lacks is invisible, labelled where P projects it."""
    from xrayfactory.geometry import CArm, in_image, project, view_from_projection
    from xrayfactory.imageset import ImageSet

    names = list(spec.landmarks)
    n, rows, cols = projs.images.shape
    spacing = params.spacing * prep.downsample
    carm = CArm(
        sdd=abs(params.intrinsic[0, 0]) * params.spacing,
        sid=s.get("sid", 530.0),
        detector_rows=rows,
        detector_cols=cols,
        pixel_spacing=spacing,
    )
    points = np.stack(list(spec.landmarks.values()))
    projected = np.stack([project(p, points)[0] for p in projs.projection])
    vis = in_image(projs.landmarks, rows, cols)
    error = np.linalg.norm(projected - projs.landmarks, axis=-1)
    _check_reprojection(a, error[vis], s.get("max_reprojection_px", MAX_REPROJECTION_PX))
    labels = np.where(np.isfinite(projs.landmarks), projs.landmarks, projected)
    anchor = points.mean(axis=0)
    return ImageSet(
        images=projs.images,
        landmarks=labels.astype(np.float32),
        visible=vis,
        projection=projs.projection,
        subject=np.array([a.subject] * n),
        view=np.stack([view_from_projection(p, carm.sid, anchor) for p in projs.projection]),
        attrs={
            "arm": "real",
            "generator": f"DeepFluoro {a.specimen} (projections {','.join(projs.ids)})",
            "intensity": "log_attenuation",
            "proxy": False,
            "landmark_names": names,
            "pixel_spacing_mm": spacing,
            "magnification": carm.magnification,
        },
    )


def cmd_import(a: argparse.Namespace) -> None:
    from xrayfactory.atomic import atomic_path
    from xrayfactory.deepfluoro import Preprocessing, Reader, read_preprocessed
    from xrayfactory.imageset import write_imageset
    from xrayfactory.landmarks import save_landmarks
    from xrayfactory.volumes import save_nifti

    s = a.settings
    names = list(s["names"])
    prep = Preprocessing(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in s.get("preprocessing", {}).items()}
    )
    with Reader(a.file) as r:  # everything is read (and checked) before anything is written
        params = r.proj_params()
        spec = r.specimen(a.specimen, names)
        projs = r.projections(a.specimen, names, prep, params, spec.landmarks)
    if a.preprocessed:  # the dataset's own preprocessed images and labels, our geometry
        images, landmarks = read_preprocessed(a.preprocessed, a.specimen, names)
        if images.shape != projs.images.shape:
            raise InputError(
                a.preprocessed,
                f"specimen {a.specimen}: images {images.shape}, but the full-resolution file "
                f"preprocessed with {prep} gives {projs.images.shape}: set "
                "deepfluoro.preprocessing.downsample to the file's factor",
            )
        projs.images, projs.landmarks = images, landmarks
    result = _real_imageset(a, spec, projs, params, prep, s)
    save_nifti(a.out_ct, spec.ct, spec.affine)
    save_nifti(a.out_seg, spec.seg, spec.affine)
    save_landmarks(a.out_landmarks, spec.landmarks)
    with atomic_path(a.out_labels) as tmp:
        tmp.write_text("".join(f"{k}\t{v}\n" for k, v in sorted(spec.labels.items())))
    write_imageset(a.out_images, result)
    log.info(
        "DeepFluoro %s -> %s: CT %s, %d projections (%d x %d px), %.0f%% of landmarks visible",
        a.specimen, a.subject, spec.ct.shape, *result.images.shape, 100 * result.visible.mean(),
    )  # fmt: skip


def add_commands(add, settings: tuple) -> None:
    """Register the DeepFluoro subcommand with the CLI's `add(name, fn, help, *args)`."""
    req = {"required": True}
    add(
        "import-deepfluoro",
        cmd_import,
        "one DeepFluoro specimen: CT, label map, 3D landmarks and its real image set",
        ("--file", req),
        ("--specimen", req),
        ("--subject", req),
        ("--out-ct", req),
        ("--out-seg", req),
        ("--out-landmarks", req),
        ("--out-labels", {"required": True, "help": "label id <TAB> name (vol-seg/labels-def)"}),
        ("--out-images", req),
        (
            "--preprocessed",
            {"default": None, "help": "ipcai_2020_ds_<d>x.h5: its images and labels"},
        ),
        settings,
    )
