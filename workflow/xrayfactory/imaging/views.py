"""Image sets of one subject: sample views, project landmarks, form images (DRR or proxy-real)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from xrayfactory.core.errors import InputError
from xrayfactory.imaging.geometry import CArm, ViewSampler, project, projection_matrix, visible
from xrayfactory.imaging.imageset import ImageSet


def label_views(
    carm: CArm, views: np.ndarray, anchor: np.ndarray, landmarks: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Projection matrices (N, 3, 4), 2D landmarks (N, L, 2) and visibility (N, L)."""
    pts = np.stack(list(landmarks.values()))
    ps = np.stack([projection_matrix(carm, v, anchor) for v in views])
    uv, vis = [], []
    for p in ps:
        u, depth = project(p, pts)
        uv.append(u)
        vis.append(visible(carm, u, depth))
    return ps, np.stack(uv), np.stack(vis)


def subject_imageset(
    subject: str,
    landmarks: dict[str, np.ndarray],
    carm: CArm,
    sampler: ViewSampler,
    n: int,
    rng: np.random.Generator,
    form_images: Callable[[np.ndarray], np.ndarray],
    attrs: dict,
) -> ImageSet:
    """`n` views of one subject centred on its landmarks' centroid; `form_images(P)` makes the
    (N, rows, cols) images for projection matrices P."""
    anchor = np.stack(list(landmarks.values())).mean(axis=0)
    views = sampler.sample(n, rng)
    ps, uv, vis = label_views(carm, views, anchor, landmarks)
    images = form_images(ps)
    return ImageSet(
        images=images,
        landmarks=uv,
        visible=vis,
        projection=ps,
        subject=np.array([subject] * n),
        view=views,
        attrs={
            **attrs,
            "landmark_names": list(landmarks),
            "pixel_spacing_mm": carm.spacing,
            "magnification": carm.magnification,
        },
    )


def pixel_rescale(scale: float) -> np.ndarray:
    """3x3 map from detector pixels to a grid `scale` times coarser, pixel centres kept
    (the detector's and generator's resize: new = (old + 0.5) / scale - 0.5)."""
    off = 0.5 / scale - 0.5
    return np.array([[1 / scale, 0.0, off], [0.0, 1 / scale, off], [0.0, 0.0, 1.0]])


def shape_views(
    shapes: np.ndarray,
    names: list[str],
    carm: CArm,
    sampler: ViewSampler,
    rng: np.random.Generator,
    size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One view per centred 3D landmark shape (N, L, 3), each centred on its shape, labelled on
    a size x size image of the whole detector: views (N, 6), P (N, 3, 4), 2D landmarks (N, L, 2)
    and visibility (N, L)."""
    if carm.rows != carm.cols:
        raise InputError(
            "config keys carm.detector_rows and carm.detector_cols",
            f"synth2d generates square images; the detector is {carm.rows} x {carm.cols} px",
        )
    views = sampler.sample(len(shapes), rng)
    scale = pixel_rescale(carm.cols / size)
    ps, uv, vis = [], [], []
    for view, shape in zip(views, shapes, strict=True):
        p, u, v = label_views(carm, view[None], np.zeros(3), dict(zip(names, shape, strict=True)))
        ps.append(scale @ p[0])
        uv.append(u[0] @ scale[:2, :2].T + scale[:2, 2])
        vis.append(v[0])
    return views, np.stack(ps), np.stack(uv), np.stack(vis)
