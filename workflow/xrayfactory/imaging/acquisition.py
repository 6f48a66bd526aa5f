"""Proxy-real X-ray acquisition: the demo's stand-in for real intra-operative radiographs.

PROXY: the demo has no real X-rays of its CT cohort, so its "real" images come from this
model. It shares only the ray geometry with the training DRR renderer (`drr`) and adds what that
renderer lacks: a different tube spectrum (kVp and copper filtration), partial-volume bone and a
metal class, scatter, anode heel effect, detector blur and glare, collimation, quantum and
electronic noise, occasional K-wires, and clinical post-processing (unsharp masking and a
contrast curve). Output: a processed log image in [0, 1], bone bright. Every image set and
table built on these images is labelled as proxy-real.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from xrayfactory.cohort.volumes import Volume
from xrayfactory.core.device import pick_device
from xrayfactory.core.progress import Progress
from xrayfactory.imaging.physics import DENSITY, mass_attenuation, tube_spectrum
from xrayfactory.imaging.raycast import RayVolume, pixel_rays

MATERIALS = ("air", "soft_tissue", "bone", "titanium", "steel")
BONE_RAMP_HU = (100.0, 600.0)  # bone fraction rises linearly across this HU range
METAL_MIN_HU = 2500.0


@dataclass(frozen=True, kw_only=True)
class AcquisitionParams:
    kvp: float = 110.0
    al_mm: float = 3.0
    cu_mm: float = 0.1
    photons_per_mm2: float = 3000.0
    electronic_noise: float = 2e-4
    scatter_fraction: float = 0.3
    scatter_sigma_mm: float = 40.0
    blur_sigma_mm: float = 0.6
    glare_fraction: float = 0.05
    glare_sigma_mm: float = 8.0
    heel_effect: float = 0.1
    collimation_probability: float = 0.7
    kwire_probability: float = 0.4
    kwire_radius_mm: float = 0.8
    unsharp_amount: float = 0.7
    unsharp_sigma_mm: float = 6.0
    gamma_range: tuple[float, float] = (0.8, 1.25)
    oversample: int = 2
    device: str = "auto"

    @classmethod
    def from_config(cls, section: dict, device: str) -> AcquisitionParams:
        """From the config's `real.acquisition` section (YAML lists become tuples)."""
        return cls(
            device=device, **{k: tuple(v) if isinstance(v, list) else v for k, v in section.items()}
        )


def water_equivalent_density(hu: torch.Tensor) -> torch.Tensor:
    """Mass density (g/cm^3) from HU, water-equivalent linear map 1 + HU/1000, clipped at 0.
    The proxy-real model keeps its own map (not the DRRs' DeepDRR fit, `drr.hu_to_density`):
    it is a separate image-formation model whose parameters were set with this map."""
    return (1.0 + hu / 1000.0).clamp(min=0.0)


def material_channels(hu: torch.Tensor) -> torch.Tensor:
    """(5, I, J, K) densities: air, soft tissue and bone with a partial-volume ramp, metal
    (titanium) above METAL_MIN_HU; the steel channel is filled by K-wires, not the CT."""
    rho = water_equivalent_density(hu)
    metal = hu >= METAL_MIN_HU
    air = hu < -800.0
    frac = ((hu - BONE_RAMP_HU[0]) / (BONE_RAMP_HU[1] - BONE_RAMP_HU[0])).clamp(0.0, 1.0)
    tissue = ~air & ~metal
    zero = torch.zeros_like(rho)
    return torch.stack(
        [
            rho * air,
            rho * (1 - frac) * tissue,
            rho * frac * tissue,
            torch.where(metal, torch.full_like(rho, DENSITY["titanium"]), zero),
            zero,
        ]
    )


def kwire_path(
    p: np.ndarray,
    rows: int,
    cols: int,
    start: np.ndarray,
    end: np.ndarray,
    radius: float,
    *,
    supersample: int = 4,
    block: int = 32,
) -> torch.Tensor:
    """(rows, cols) chord length (mm) through a cylindrical wire, averaged over each pixel's
    area (`supersample`^2 rays per pixel: thin wires do not alias away). Only the pixels of the
    wire's projected bounding box are cast, `block` rows at a time (bounded memory)."""
    k = supersample
    sub = np.array([[k, 0, (k - 1) / 2], [0, k, (k - 1) / 2], [0, 0, 1.0]])
    a = torch.as_tensor(start, dtype=torch.float64)
    axis = torch.as_tensor(end, dtype=torch.float64) - a
    length = axis.norm()
    e = axis / length
    out = torch.zeros(rows, cols)
    (r0, r1), (c0, c1) = _footprint(p, rows, cols, start, end, radius)
    for top in range(r0, r1, block):
        n = min(block, r1 - top)
        # sub-pixel (c0 k, top k) becomes (0, 0)
        shift = np.array([[1.0, 0, -c0 * k], [0, 1, -top * k], [0, 0, 1]])
        source, dirs = pixel_rays(torch.as_tensor(shift @ sub @ p), n * k, (c1 - c0) * k)
        d = dirs / dirs.norm(dim=-1, keepdim=True)
        w0 = source - a
        b = d @ e
        denom = (1 - b**2).clamp(min=1e-12)  # sin^2 of the ray-wire angle
        dd, de = d @ w0, w0 @ e
        s = (b * de - dd) / denom  # along the ray
        t = (de - b * dd) / denom  # along the wire axis
        gap = (w0 + s[:, None] * d - t[:, None] * e).norm(dim=-1)
        chord = 2 * torch.sqrt((radius**2 - gap**2).clamp(min=0.0)) / denom.sqrt()
        chord = torch.where((t >= 0) & (t <= length), chord, torch.zeros_like(chord))
        out[top : top + n, c0:c1] = chord.view(n, k, c1 - c0, k).mean(dim=(1, 3))
    return out


def _footprint(
    p: np.ndarray, rows: int, cols: int, start: np.ndarray, end: np.ndarray, radius: float
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Row and column ranges of the pixels that can see a wire: the projection of the corners
    of its bounding box, a pixel wider (the whole image if a corner is behind the source)."""
    lo, hi = np.minimum(start, end) - radius, np.maximum(start, end) + radius
    corners = np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )
    h = np.c_[corners, np.ones(8)] @ p.T
    if np.any(h[:, 2] <= 0):
        return (0, rows), (0, cols)
    uv = h[:, :2] / h[:, 2:]
    c0, r0 = np.clip(np.floor(uv.min(0)).astype(int) - 1, 0, [cols, rows])
    c1, r1 = np.clip(np.ceil(uv.max(0)).astype(int) + 2, 0, [cols, rows])
    return (int(r0), int(max(r0, r1))), (int(c0), int(max(c0, c1)))


def _blur(img: torch.Tensor, sigma_px: float) -> torch.Tensor:
    # imported here: DRR jobs import this module, and MONAI's import costs every job seconds
    from monai.networks.layers import GaussianFilter

    return GaussianFilter(2, sigma=sigma_px).to(img.device)(img[:, None])[:, 0]


def _collimator(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Transmission map of random lead shutters (or an iris), soft-edged."""
    r, c = np.mgrid[0:rows, 0:cols].astype(float)
    if rng.random() < 0.3:
        radius = rng.uniform(0.45, 0.6) * min(rows, cols)
        inside = np.hypot(r - rows / 2, c - cols / 2) - radius
    else:
        m = rng.uniform(0.0, 0.15, 4) * np.array([rows, rows, cols, cols])
        inside = np.max([m[0] - r, r - (rows - 1 - m[1]), m[2] - c, c - (cols - 1 - m[3])], axis=0)
    return 0.01 + 0.99 / (1 + np.exp(np.clip(inside / 1.0, -50, 50)))


class ProxyRealAcquisition:
    """Renders proxy-real radiographs; see module docstring."""

    def __init__(self, params: AcquisitionParams):
        self.params = params

    def prepare(self, ct: Volume) -> RayVolume:
        """`ct`'s material channels, ready for any number of `acquire` calls."""
        dev = pick_device(self.params.device)
        return RayVolume.from_hu(
            ct.data, ct.affine, material_channels, dev, oversample=self.params.oversample
        )

    def acquire(
        self,
        ct: Volume | RayVolume,
        projections: np.ndarray,
        rows: int,
        cols: int,
        spacing_mm: float,
        anchors: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """(V, rows, cols) processed images; `anchors` (A, 3) are world points near which
        K-wires may be placed (e.g. the subject's landmarks)."""
        q = self.params
        vol = ct if isinstance(ct, RayVolume) else self.prepare(ct)
        dev = vol.device
        spec = tube_spectrum(q.kvp, al_mm=q.al_mm, cu_mm=q.cu_mm)
        mu = torch.as_tensor(
            mass_attenuation(MATERIALS, spec.energies_kev), dtype=torch.float32, device=dev
        )
        w = torch.as_tensor(spec.weights, dtype=torch.float32, device=dev)
        projections = np.asarray(projections).reshape(-1, 3, 4)
        out = np.empty((len(projections), rows, cols), np.float32)
        progress = Progress(len(projections), "proxy-real acquisition", unit="images")
        for i, p in enumerate(projections):
            li = vol.integrals(p[None], rows, cols)[0] / 10.0
            if rng.random() < q.kwire_probability:
                for _ in range(rng.integers(1, 3)):
                    centre = anchors[rng.integers(len(anchors))] + rng.normal(0, 20, 3)
                    direction = rng.normal(size=3)
                    half = rng.uniform(30, 75) * direction / np.linalg.norm(direction)
                    chord = kwire_path(
                        p, rows, cols, centre - half, centre + half, q.kwire_radius_mm
                    )
                    li[4] += chord.to(dev) * DENSITY["steel"] / 10.0
            out[i] = self._detect(li, mu, w, rows, cols, spacing_mm, rng)
            progress.update()
        return out

    def _detect(
        self,
        li: torch.Tensor,
        mu: torch.Tensor,
        w: torch.Tensor,
        rows: int,
        cols: int,
        spacing_mm: float,
        rng: np.random.Generator,
    ) -> np.ndarray:
        q = self.params
        att = torch.einsum("mhw,me->ehw", li, mu)
        primary = torch.einsum("ehw,e->hw", torch.exp(-att), w)[None]
        # scatter: kernel superposition of primary x path (more tissue, more scatter)
        thick = primary * (-torch.log(primary.clamp(min=1e-6)))
        scatter = _blur(thick, q.scatter_sigma_mm / spacing_mm)
        body = primary < 0.5  # scatter-to-primary ratio is set behind the patient, not in air
        if body.any():
            spr = q.scatter_fraction / (1 - q.scatter_fraction)
            scatter = scatter * spr * primary[body].mean() / scatter[body].mean().clamp(min=1e-9)
        ramp = torch.linspace(-1, 1, cols, device=primary.device)
        heel = 1 + q.heel_effect * ramp[None, None, :] * (1 if rng.random() < 0.5 else -1)
        fluence = (primary + scatter) * heel
        field = torch.ones_like(fluence, dtype=torch.bool)
        if rng.random() < q.collimation_probability:
            shutter = torch.as_tensor(
                _collimator(rows, cols, rng), dtype=fluence.dtype, device=fluence.device
            )
            fluence = fluence * shutter
            field = shutter[None] > 0.5
        sharp = _blur(fluence, q.blur_sigma_mm / spacing_mm)
        fluence = (1 - q.glare_fraction) * sharp + q.glare_fraction * _blur(
            fluence, q.glare_sigma_mm / spacing_mm
        )
        n0 = q.photons_per_mm2 * spacing_mm**2
        gen = torch.Generator(device="cpu").manual_seed(int(rng.integers(2**63 - 1)))
        counts = torch.poisson((fluence * n0).cpu(), generator=gen) / n0
        counts = counts + q.electronic_noise * torch.randn(counts.shape, generator=gen)
        log_img = -torch.log(counts.clamp(min=0.5 / n0))
        # clinical processing: unsharp masking, then a windowed contrast curve
        log_img = log_img + q.unsharp_amount * (
            log_img - _blur(log_img, q.unsharp_sigma_mm / spacing_mm)
        )
        exposed = log_img[field.cpu()]
        lo, hi = torch.quantile(exposed, torch.tensor([0.01, 0.99], dtype=log_img.dtype))
        norm = ((log_img - lo) / (hi - lo).clamp(min=1e-6)).clamp(0, 1)
        return (norm ** rng.uniform(*q.gamma_range))[0].numpy().astype(np.float32)
