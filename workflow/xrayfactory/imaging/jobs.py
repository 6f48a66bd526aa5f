"""Imaging's jobs, one per rule of workflow/rules/imaging.smk, and the cohort's QC figures
(they render DRRs)."""

from __future__ import annotations

from xrayfactory.cohort.landmarks import load_landmarks
from xrayfactory.cohort.volumes import load_ct, load_segmentation
from xrayfactory.core.atomic import PathLike
from xrayfactory.imaging.acquisition import AcquisitionParams
from xrayfactory.imaging.imageset import concatenate, read_imageset, write_imageset
from xrayfactory.imaging.qc import imageset_grid, subject_figure
from xrayfactory.imaging.render import ViewPlan, drr_imageset, real_imageset


def render_imageset(
    subject: str,
    ct: PathLike,
    landmarks: PathLike,
    out: PathLike,
    plan: ViewPlan,
    form: AcquisitionParams | dict,
    device: str,
) -> None:
    """A subject's `real` image set (`form`: the proxy-real acquisition model's parameters) or
    its `drr` image set (`form`: the DRR settings)."""
    volume = load_ct(ct)
    lm = load_landmarks(landmarks, plan.names, volume)
    if isinstance(form, AcquisitionParams):
        result = real_imageset(subject, volume, lm, plan, form)
    else:
        result = drr_imageset("drr", subject, volume, lm, plan, form, device)
    write_imageset(out, result)


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
