"""Rendering an arm's image set of one subject (or generated CT): which image-formation model,
which view stream and which provenance each arm gets. `real` is the proxy-real acquisition
model; `drr` and everything rendered like it (synth3d and the controls) use the DRR renderer
with the `drr` arm's views of the subject."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from xrayfactory.cohort.volumes import Volume
from xrayfactory.core.rng import rng_for
from xrayfactory.imaging.acquisition import AcquisitionParams, ProxyRealAcquisition
from xrayfactory.imaging.drr import make_renderer
from xrayfactory.imaging.geometry import CArm, ViewSampler
from xrayfactory.imaging.imageset import ImageSet
from xrayfactory.imaging.views import subject_imageset

log = logging.getLogger("xrayfactory")


@dataclass(frozen=True)
class ViewPlan:
    """The C-arm, view ranges, landmark names, image count and seed of an arm's renders."""

    carm: CArm
    views: ViewSampler
    names: list[str]
    n_images: int
    seed: int

    @classmethod
    def from_settings(cls, s: dict) -> ViewPlan:
        """From a render job's settings (config sections carm, views, landmarks.names)."""
        return cls(
            carm=CArm(**s["carm"]),
            views=ViewSampler.from_config(s["views"]),
            names=list(s["names"]),
            n_images=int(s["n_images"]),
            seed=int(s["seed"]),
        )


def drr_imageset(
    arm: str,
    subject: str,
    ct: Volume,
    landmarks: dict[str, np.ndarray],
    plan: ViewPlan,
    drr: dict,
    device: str,
    attrs: dict | None = None,
    view_stream: str = "drr",
) -> ImageSet:
    """DRRs of `ct` with the views of random stream `view_stream` of `subject` (the controls
    keep the `drr` stream, so they get the subject's `drr` views and only the CT differs);
    `attrs` add to the provenance, a "generator" there wraps the renderer's name ("{drr}")."""
    opts = dict(drr)
    backend = opts.pop("backend")
    renderer = make_renderer(backend, device=device, **opts)
    generator = f"drr:{type(renderer).__name__}"
    extra = dict(attrs or {})
    if "generator" in extra:
        generator = extra.pop("generator").format(drr=generator)
    provenance = {
        "arm": arm,
        "generator": generator,
        "intensity": "log_attenuation",
        "proxy": False,
        **extra,
    }
    c = plan.carm
    rng = rng_for(plan.seed, view_stream, subject)
    result = subject_imageset(
        subject,
        landmarks,
        c,
        plan.views,
        plan.n_images,
        rng,
        lambda ps: renderer.render(ct, ps, c.rows, c.cols),
        provenance,
    )
    _log(result)
    return result


def real_imageset(
    subject: str,
    ct: Volume,
    landmarks: dict[str, np.ndarray],
    plan: ViewPlan,
    acquisition: AcquisitionParams,
) -> ImageSet:
    """Proxy-real X-rays of `subject` from the acquisition model (a PROXY for real X-rays)."""
    model = ProxyRealAcquisition(acquisition)
    anchors = np.stack(list(landmarks.values()))
    rng = rng_for(plan.seed, "real", subject)
    c = plan.carm
    form: Callable[[np.ndarray], np.ndarray] = lambda ps: model.acquire(  # noqa: E731
        ct, ps, c.rows, c.cols, c.spacing, anchors, rng
    )
    attrs = {
        "arm": "real",
        "generator": "proxy-real acquisition model (PROXY for real X-rays)",
        "intensity": "processed",
        "proxy": True,
    }
    result = subject_imageset(subject, landmarks, c, plan.views, plan.n_images, rng, form, attrs)
    _log(result)
    return result


def _log(s: ImageSet) -> None:
    log.info(
        "%s/%s: %d images, %.0f%% of landmarks visible",
        s.attrs["arm"],
        s.subject[0] if len(s) else "-",
        len(s),
        100 * s.visible.mean(),
    )
