"""DRR rendering for training images: HU -> materials -> polychromatic log-domain projections.

Two backends share one interface, `render(ct, projections, rows, cols) -> (V, rows, cols)`
float32 images of -ln(I / I0) (line integral of attenuation; bone is bright):

* `TorchRenderer` (default): CPU or GPU, batched over views, memory bounded by ray chunks;
  `prepare(ct)` once and pass the result to `render` to render a CT in many calls.
* `DeepDRRRenderer`: DeepDRR on an NVIDIA GPU; deepdrr is imported only when it is used.

Both use DeepDRR's HU -> density fit and HU thresholds (`hu_to_density`, `material_channels`).
The renderer is deliberately simple (three materials, no scatter, no noise): the proxy-real
images of the demo come from `acquisition`, a separate and richer model with its own density map.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from xrayfactory.cohort.volumes import Volume
from xrayfactory.core.device import pick_device
from xrayfactory.core.errors import InputError
from xrayfactory.core.progress import Progress
from xrayfactory.imaging.physics import mass_attenuation, tube_spectrum
from xrayfactory.imaging.raycast import RayVolume

log = logging.getLogger("xrayfactory")

# DeepDRR's default HU thresholds: air < -800 <= soft tissue < 350 <= bone.
MATERIALS = ("air", "soft_tissue", "bone")
AIR_MAX_HU, SOFT_MAX_HU = -800.0, 350.0


class Renderer(Protocol):
    def prepare(self, ct: Volume) -> Volume | RayVolume: ...

    def render(
        self, ct: Volume | RayVolume, projections: np.ndarray, rows: int, cols: int
    ) -> np.ndarray: ...


def hu_to_density(hu: torch.Tensor) -> torch.Tensor:
    """Mass density (g/cm^3) from HU by DeepDRR 1.2.2's two-segment linear fit
    (`Volume._convert_hounsfield_to_density`): 0.001029 HU + 1.030 below 0 HU, 0.0005886 HU + 1.03
    above, clipped at 0. Both DRR backends use it, so both see DeepDRR's own densities (a
    water-equivalent 1 + HU/1000 makes bone 9 to 32% denser at 350 to 1600 HU)."""
    return torch.minimum(0.001029 * hu + 1.030, 0.0005886 * hu + 1.03).clamp(min=0.0)


def material_channels(hu: torch.Tensor) -> torch.Tensor:
    """(3, I, J, K) density of air, soft tissue and bone (g/cm^3), by HU thresholds."""
    rho = hu_to_density(hu)
    air = hu < AIR_MAX_HU
    bone = hu >= SOFT_MAX_HU
    soft = ~air & ~bone
    return torch.stack([rho * air, rho * soft, rho * bone])


def polychromatic(integrals: torch.Tensor, mu: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(V, M, H, W) material line integrals (g/cm^2) -> (V, H, W) detected intensity I/I0."""
    att = torch.einsum("vmhw,me->vehw", integrals, mu)
    return torch.einsum("vehw,e->vhw", torch.exp(-att), weights)


@dataclass(kw_only=True)
class TorchRenderer:
    """Polychromatic three-material DRRs by slice-wise ray integration (Joseph) in torch."""

    kvp: float = 90.0
    al_mm: float = 2.5
    oversample: int = 1
    device: str = "auto"
    views_per_batch: int = 16
    max_samples: int = 1 << 22

    def prepare(self, ct: Volume) -> RayVolume:
        """`ct`'s material channels, ready for any number of `render` calls."""
        dev = pick_device(self.device)
        return RayVolume.from_hu(
            ct.data, ct.affine, material_channels, dev, oversample=self.oversample
        )

    def render(
        self, ct: Volume | RayVolume, projections: np.ndarray, rows: int, cols: int
    ) -> np.ndarray:
        vol = ct if isinstance(ct, RayVolume) else self.prepare(ct)
        dev = vol.device
        spec = tube_spectrum(self.kvp, al_mm=self.al_mm)
        mu = torch.as_tensor(mass_attenuation(MATERIALS, spec.energies_kev), dtype=torch.float32)
        w = torch.as_tensor(spec.weights, dtype=torch.float32)
        projections = np.asarray(projections).reshape(-1, 3, 4)
        out = np.empty((len(projections), rows, cols), np.float32)
        progress = Progress(len(projections), "DRR", unit="images")
        for start in range(0, len(projections), self.views_per_batch):
            sl = slice(start, start + self.views_per_batch)
            # channels are g/cm^3 and lengths mm: /10 gives g/cm^2.
            li = vol.integrals(projections[sl], rows, cols, max_samples=self.max_samples) / 10.0
            intensity = polychromatic(li, mu.to(dev), w.to(dev))
            out[sl] = (-torch.log(intensity.clamp(min=1e-12))).cpu().numpy()
            progress.update(len(out[sl]))
        return out


@dataclass(kw_only=True)
class DeepDRRRenderer:
    """DeepDRR (GPU only). Needs the `gpu` extra; imported lazily.

    `step_mm` is passed unchanged as DeepDRR's `step`. DeepDRR's docstring calls it voxels, but
    its 1.2.2 kernel advances a distance along the unit world-space ray by `step` and scales the
    area densities by it (project_kernel.cu: "step size (TODO: in world)", `alpha += step`,
    `area_density[m] *= step`), so it is world mm here. 0.5 mm samples the trilinear volume at
    least twice per voxel of CTs with >= 1 mm voxels; DeepDRR's default 0.1 costs 5x the samples.
    """

    kvp: float = 90.0
    step_mm: float = 0.5

    def prepare(self, ct: Volume) -> Volume:
        """`ct` itself: DeepDRR makes its own volume in each `render` call."""
        return ct

    def render(
        self, ct: Volume | RayVolume, projections: np.ndarray, rows: int, cols: int
    ) -> np.ndarray:
        from xrayfactory.imaging.deepdrr_backend import render_deepdrr

        if not isinstance(ct, Volume):
            raise TypeError("DeepDRRRenderer renders a Volume, not another renderer's RayVolume")

        return render_deepdrr(self, ct, projections, rows, cols)


def make_renderer(backend: str, **kwargs: object) -> Renderer:
    """'torch', 'deepdrr', or 'auto' (deepdrr when importable and a GPU is present)."""
    if backend == "auto":
        backend = "deepdrr" if torch.cuda.is_available() and deepdrr_available() else "torch"
        log.info("DRR backend: %s", backend)
    if backend == "deepdrr":
        if not torch.cuda.is_available():
            raise InputError(
                "config key drr.backend", "deepdrr needs an NVIDIA GPU; use backend 'torch'"
            )
        return DeepDRRRenderer(kvp=float(kwargs["kvp"]))  # type: ignore[arg-type]
    if backend == "torch":
        return TorchRenderer(**kwargs)  # type: ignore[arg-type]
    raise InputError(
        "config key drr.backend", f"unknown DRR backend {backend!r} (torch, deepdrr, auto)"
    )


def deepdrr_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("deepdrr") is not None
