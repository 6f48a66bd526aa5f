"""Imaging's render job (workflow/rules/imaging.smk). The QC figures' jobs, image-set grids and
the cohort's projections, are in imaging/qc.py: they import no MONAI, and torch only for the
projections."""

from __future__ import annotations

from xrayfactory.cohort.landmarks import load_landmarks
from xrayfactory.cohort.volumes import load_ct
from xrayfactory.core.atomic import PathLike
from xrayfactory.imaging.acquisition import AcquisitionParams
from xrayfactory.imaging.imageset import write_imageset
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
