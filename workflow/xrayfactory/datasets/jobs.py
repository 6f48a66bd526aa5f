"""DeepFluoro's jobs, one per rule of workflow/rules/datasets.smk: the archive, checked, and
one specimen imported into the cohort's files (CT, label map, 3D landmarks) and the `real`
image set."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from xrayfactory.cohort.landmarks import save_landmarks
from xrayfactory.cohort.volumes import save_nifti
from xrayfactory.core.atomic import PathLike, atomic_path
from xrayfactory.core.errors import InputError
from xrayfactory.core.fetch import Checksum, fetch_archive, published_checksum
from xrayfactory.datasets.deepfluoro import Preprocessing, Reader, read_preprocessed
from xrayfactory.imaging.geometry import CArm, in_image, project, view_from_projection
from xrayfactory.imaging.imageset import ImageSet, write_imageset

log = logging.getLogger("xrayfactory")


def download_deepfluoro(
    archive: str,
    member: str,
    out: PathLike,
    *,
    url: str,
    mirror: str | None,
    sha256: str | None,
    checksum_url: str | None,
) -> None:
    """The archive from a mirror or the web, checked against the pinned sha256 or the checksum
    its repository publishes, and one member extracted to `out`."""
    if sha256:
        expected = Checksum("sha256", sha256, "the pinned sha256 (deepfluoro.sha256)")
    elif checksum_url:
        try:
            expected = published_checksum(checksum_url, url=url, filename=archive)
        except InputError as e:
            raise InputError(e.where, f"{e.problem}; pin the sha256 (deepfluoro.sha256)") from e
        log.info(
            "%s: %s %s published by %s", archive, expected.algorithm, expected.value, checksum_url
        )
    else:
        raise InputError(
            "config keys deepfluoro.sha256 and deepfluoro.checksum_url",
            "both unset: the archive is only used after its checksum is verified",
        )
    fetch_archive(archive, expected, member, out, mirror=mirror, url=url)


@dataclass(frozen=True)
class ImportOutputs:
    """Where a specimen goes: the cohort's files and the `real` image set."""

    ct: PathLike
    seg: PathLike
    landmarks: PathLike
    labels: PathLike
    images: PathLike


def _check_reprojection(file: PathLike, specimen: str, error: np.ndarray, max_px: float) -> None:
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
            file,
            f"specimen {specimen}: the 3D landmarks projected with the imported matrices land "
            f"{mean:.1f} px (mean; max {worst:.1f} px) from the stored 2D landmarks, more than "
            f"deepfluoro.max_reprojection_px = {max_px}: the file's pose convention is not the "
            "documented one (README, 'Reproduce the paper', step 2)",
        )


def _real_imageset(
    file: PathLike,
    specimen: str,
    subject: str,
    spec,
    projs,
    params,
    prep,
    sid: float,
    max_px: float,
):
    """The specimen's projections as the `real` image set, after the reprojection check. The
    labels and their visibility are the stored 2D landmarks (in the image or not); a landmark
    the file lacks is invisible, labelled where P projects it."""
    names = list(spec.landmarks)
    n, rows, cols = projs.images.shape
    spacing = params.spacing * prep.downsample
    carm = CArm(
        sdd=abs(params.intrinsic[0, 0]) * params.spacing,
        sid=sid,
        detector_rows=rows,
        detector_cols=cols,
        pixel_spacing=spacing,
        downsample=1,  # the images are already downsampled: `spacing` is theirs
    )
    points = np.stack(list(spec.landmarks.values()))
    projected = np.stack([project(p, points)[0] for p in projs.projection])
    vis = in_image(projs.landmarks, rows, cols)
    error = np.linalg.norm(projected - projs.landmarks, axis=-1)
    _check_reprojection(file, specimen, error[vis], max_px)
    labels = np.where(np.isfinite(projs.landmarks), projs.landmarks, projected)
    anchor = points.mean(axis=0)
    return ImageSet(
        images=projs.images,
        landmarks=labels.astype(np.float32),
        visible=vis,
        projection=projs.projection,
        subject=np.array([subject] * n),
        view=np.stack([view_from_projection(p, carm.sid, anchor) for p in projs.projection]),
        attrs={
            "arm": "real",
            "generator": f"DeepFluoro {specimen} (projections {','.join(projs.ids)})",
            "intensity": "log_attenuation",
            "proxy": False,
            "landmark_names": names,
            "pixel_spacing_mm": spacing,
            "magnification": carm.magnification,
        },
    )


def import_deepfluoro(
    file: PathLike,
    specimen: str,
    subject: str,
    names: list[str],
    prep: Preprocessing,
    sid: float,
    max_reprojection_px: float,
    out: ImportOutputs,
    preprocessed: PathLike | None = None,
) -> None:
    """One specimen into the cohort's files and its `real` image set (`preprocessed`: the
    dataset's own preprocessed images and labels instead of ours, with our geometry)."""
    with Reader(file) as r:  # everything is read (and checked) before anything is written
        params = r.proj_params()
        spec = r.specimen(specimen, names)
        projs = r.projections(specimen, names, prep, params, spec.landmarks)
    if preprocessed:  # the dataset's own preprocessed images and labels, our geometry
        images, landmarks = read_preprocessed(preprocessed, specimen, names)
        if images.shape != projs.images.shape:
            raise InputError(
                preprocessed,
                f"specimen {specimen}: images {images.shape}, but the full-resolution file "
                f"preprocessed with {prep} gives {projs.images.shape}: set "
                "deepfluoro.preprocessing.downsample to the file's factor",
            )
        projs.images, projs.landmarks = images, landmarks
    result = _real_imageset(
        file, specimen, subject, spec, projs, params, prep, sid, max_reprojection_px
    )
    save_nifti(out.ct, spec.ct, spec.affine)
    save_nifti(out.seg, spec.seg, spec.affine)
    save_landmarks(out.landmarks, spec.landmarks)
    with atomic_path(out.labels) as tmp:
        tmp.write_text("".join(f"{k}\t{v}\n" for k, v in sorted(spec.labels.items())))
    write_imageset(out.images, result)
    lao, cran = result.view[:, 0], result.view[:, 1]
    log.info(
        "DeepFluoro %s -> %s: CT %s, %d projections (%d x %d px), %.0f%% of landmarks visible; "
        "views LAO %.0f to %.0f, CRAN %.0f to %.0f degrees (the rendered arms draw views.*)",
        specimen,
        subject,
        spec.ct.shape,
        *result.images.shape,
        100 * result.visible.mean(),
        lao.min(),
        lao.max(),
        cran.min(),
        cran.max(),
    )
