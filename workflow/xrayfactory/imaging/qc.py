"""QC figures and their jobs: landmarks on two orthogonal projections per subject, and
image-set grids."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from xrayfactory.cohort.landmarks import load_landmarks
from xrayfactory.cohort.volumes import Volume, load_ct, load_segmentation
from xrayfactory.core.atomic import PathLike, atomic_path
from xrayfactory.imaging.geometry import CArm, project, projection_matrix
from xrayfactory.imaging.imageset import ImageSet, concatenate, read_imageset

# A wide virtual detector so that the whole pelvis shows in the QC projections.
_QC_CARM = CArm(
    sdd=2000.0, sid=1500.0, detector_rows=256, detector_cols=256, pixel_spacing=2.0, downsample=1
)


def save_figure(fig: plt.Figure, path: str | os.PathLike) -> None:
    """Write `fig` as a PNG, atomically, and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def subject_figure(
    ct: Volume, landmarks: dict[str, np.ndarray], title: str, path: str | os.PathLike
) -> None:
    """AP and lateral DRRs of the subject with its 3D landmarks projected."""
    # imported here, not at the top: the image-set grids need no torch, whose import costs
    # each job seconds
    from xrayfactory.imaging.drr import TorchRenderer

    names = list(landmarks)
    pts = np.stack([landmarks[n] for n in names])
    anchor = ct.voxel_to_world((np.asarray(ct.shape)[None] - 1) / 2)[0]
    views = {"AP": [0, 0, 0, 0, 0, 0], "lateral (LAO 90)": [90, 0, 0, 0, 0, 0]}
    ps = np.stack([projection_matrix(_QC_CARM, np.array(v, float), anchor) for v in views.values()])
    imgs = TorchRenderer(device="cpu").render(ct, ps, _QC_CARM.rows, _QC_CARM.cols)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
    for ax, img, p, label in zip(axes, imgs, ps, views, strict=True):
        uv, _ = project(p, pts)
        ax.imshow(img, cmap="gray")
        ax.scatter(uv[:, 0], uv[:, 1], s=14, c="tab:red")
        for n, (u, v) in zip(names, uv, strict=True):
            ax.annotate(
                n, (u, v), color="yellow", fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        ax.set_title(label)
        ax.axis("off")
    fig.suptitle(title)
    save_figure(fig, path)


def imageset_grid(s: ImageSet, title: str, path: str | os.PathLike, *, n: int = 12) -> None:
    """Up to `n` images of a set with visible landmarks (dots) and out-of-view ones omitted."""
    idx = np.linspace(0, len(s) - 1, min(n, len(s))).astype(int) if len(s) else []
    cols = 4
    rows = max(1, int(np.ceil(len(idx) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, idx, strict=False):
        ax.imshow(s.images[i], cmap="gray")
        vis = s.visible[i]
        ax.scatter(s.landmarks[i, vis, 0], s.landmarks[i, vis, 1], s=10, c="tab:red")
        ax.set_title(f"{s.subject[i]} #{i}", fontsize=8)
    fig.suptitle(title)
    save_figure(fig, path)


def imageset_qc(shards: list[str], out: PathLike) -> None:
    """A QC grid of an arm's image sets, saying what kind of images they are."""
    s = concatenate([read_imageset(p) for p in shards], out)
    note = ""
    if s.attrs.get("proxy"):
        note = " (PROXY-real images from the acquisition model)"
    elif "trained_on" in s.attrs:
        shown = "conditioning" if s.attrs.get("arm") == "synth2d" else "carried 3D"
        note = f" (generated; {shown} landmarks shown; trained on {s.attrs['trained_on']})"
    imageset_grid(s, f"arm {s.attrs.get('arm')}: {len(s)} images{note}", out)


def cohort_qc(
    subjects: list[str],
    cts: list[str],
    segs: list[str],
    landmarks: list[str],
    names: list[str],
    outs: list[str],
) -> None:
    """AP and lateral DRRs of every subject with its 3D landmarks, one figure per subject."""
    for subject, ct_path, seg_path, lm_path, out in zip(
        subjects, cts, segs, landmarks, outs, strict=True
    ):
        volume = load_ct(ct_path)
        load_segmentation(seg_path, volume, ct_path)
        title = f"{subject}: 3D landmarks"
        subject_figure(volume, load_landmarks(lm_path, names, volume), title, out)
