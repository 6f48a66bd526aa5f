"""SyntheX-style strong domain randomisation, batched and seeded.

Spatial transforms (small affine, elastic) warp the image and move the landmark *coordinates*
exactly; the heatmap targets and visibility are made afterwards from the moved coordinates, so a
landmark that the transform brings into view is taught as present and one it pushes out as
absent. Intensity transforms touch the image only: collimator shutters (the field outside a
random rectangle or ellipse, soft-edged, mostly as bright as lead makes it, the exposed field
windowed to the full grey range; landmarks under it stay visible as on a collimated X-ray),
then kornia's inversion, contrast curves, multiply, blur, sharpen, dropout, impulse and
Gaussian noise, then unsharp masking (the edge enhancement of fluoroscopy processing). Random
parameters come from torch's global generator: seed it (torch.manual_seed) before each call for
reproducible batches.
"""

from __future__ import annotations

import math

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from torch import nn

from xrayfactory.imaging.geometry import in_image, located

ELASTIC_ITERATIONS = 8  # fixed-point steps that invert the (small, smooth) elastic field


def _normalised(points: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Pixel (col, row) -> grid_sample coordinates (align_corners=False)."""
    scale = points.new_tensor([2.0 / cols, 2.0 / rows])
    return (points + 0.5) * scale - 1.0


def warp(
    images: torch.Tensor,
    landmarks: torch.Tensor,
    visible: torch.Tensor,
    affine: torch.Tensor,
    displacement: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Warp (B, C, H, W) images and move (B, L, 2) landmarks with it.

    `affine` (B, 3, 3) maps input pixels to output pixels; `displacement` (B, 2, H, W) is an
    elastic field in output pixels: output pixel q shows input point affine^-1 (q + d(q)).
    Returns the images, the moved landmarks and their visibility: on the image afterwards, and
    either visible before or invisible only because it lay outside the image."""
    b, _, h, w = images.shape
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=images.dtype, device=images.device),
        torch.arange(w, dtype=images.dtype, device=images.device),
        indexing="ij",
    )
    q = torch.stack([cols, rows], -1).expand(b, h, w, 2) + displacement.permute(0, 2, 3, 1)
    inv = torch.linalg.inv(affine)
    source = q @ inv[:, None, :2, :2].transpose(-1, -2) + inv[:, None, None, :2, 2]
    grid = _normalised(source.reshape(b, h * w, 2), h, w).view(b, h, w, 2)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # landmarks: solve q + d(q) = affine x for q by fixed-point iteration
    target = landmarks @ affine[:, :2, :2].transpose(-1, -2) + affine[:, None, :2, 2]
    moved = target
    for _ in range(ELASTIC_ITERATIONS):
        at = _normalised(moved, h, w)[:, :, None]
        d = F.grid_sample(displacement, at, padding_mode="zeros", align_corners=False)
        moved = target - d[..., 0].transpose(1, 2)
    return out, moved, located(landmarks, visible, h, w) & in_image(moved, h, w)


class RandomShutter(nn.Module):
    """Collimator shutters on (B, 1, H, W) images in [0, 1], each sample with probability `p`:
    a rectangle (each edge in by up to `inset` of the size) or an ellipse (radii `radii` of
    the size), outside of which lies the shutter. The exposed field is windowed as an X-ray
    system windows it, leaving out the shutters: its 1st..99th percentile -> [0, 1]. Lead
    attenuates more than anything in the body, so with probability `p_lead` the shutter is
    white (bone bright), else one random grey; its edge is blurred by up to `edge_sigma` pixels
    (the focal spot's penumbra and the detector's blur)."""

    def __init__(
        self,
        p: float = 0.5,
        inset: float = 0.2,
        radii: tuple = (0.4, 0.65),
        p_lead: float = 0.7,
        edge_sigma: float = 2.0,
    ) -> None:
        super().__init__()
        self.p, self.inset, self.radii = p, inset, radii
        self.p_lead, self.edge_sigma = p_lead, edge_sigma

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]
        u = torch.rand(b, 11).to(images)
        shut = (torch.rand(b) < self.p).to(images.device)
        grey = torch.where(u[:, 10] < self.p_lead, 1.0, torch.rand(b).to(images))
        out = images.clone()
        if shut.any():  # the shutters are drawn for every sample, computed for those shut
            out[shut] = self._shutter(images[shut], u[shut], grey[shut])
        return out

    def _shutter(self, images: torch.Tensor, u: torch.Tensor, grey: torch.Tensor) -> torch.Tensor:
        """The collimated images, for each its 11 uniform draws `u` and shutter grey value."""
        _, _, h, w = images.shape
        rows = torch.linspace(0, 1, h).to(images)[None, :, None]
        cols = torch.linspace(0, 1, w).to(images)[None, None, :]
        lo, hi = (u[:, 0:2] * self.inset)[..., None, None], (1 - u[:, 2:4] * self.inset)
        hi = hi[..., None, None]
        rect = (cols >= lo[:, 0]) & (cols <= hi[:, 0]) & (rows >= lo[:, 1]) & (rows <= hi[:, 1])
        r0, r1 = self.radii
        radius = (r0 + (r1 - r0) * u[:, 4:6])[..., None, None]
        centre = (0.5 + 0.1 * (2 * u[:, 6:8] - 1))[..., None, None]
        ellipse = ((cols - centre[:, 0]) / radius[:, 0]) ** 2 + (
            (rows - centre[:, 1]) / radius[:, 1]
        ) ** 2 <= 1
        open_field = torch.where(u[:, 8, None, None] < 0.5, rect, ellipse)[:, None]
        k = 2 * math.ceil(2.5 * self.edge_sigma) + 1
        sigma = 0.05 + (self.edge_sigma - 0.05) * u[:, 9]
        opening = gaussian_blur2d(
            open_field.to(images), (k, k), torch.stack([sigma, sigma], -1), "replicate"
        )
        exposed = torch.where(open_field.flatten(1), images.flatten(1), torch.nan)
        lo, hi = torch.nanquantile(exposed, torch.tensor([0.01, 0.99]).to(images), dim=1)
        lo, hi = lo[:, None, None, None], hi[:, None, None, None]
        windowed = ((images - lo) / (hi - lo).clamp(min=1e-6)).clamp(0, 1)
        return opening * windowed + (1 - opening) * grey[:, None, None, None]


class RandomUnsharpMask(nn.Module):
    """x + a (x - blur(x, sigma)) with a in `amount` and sigma in `sigma` pixels, each
    sample with probability `p`."""

    def __init__(
        self, p: float = 0.3, amount: tuple = (0.5, 2.5), sigma: tuple = (1.0, 3.0)
    ) -> None:
        super().__init__()
        self.p, self.amount, self.sigma = p, amount, sigma

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]
        u = torch.rand(b, 3).to(images.device)
        sharpen = u[:, 2] < self.p
        out = images.clone()
        if sharpen.any():
            x, u = images[sharpen], u[sharpen].to(images)
            sigma = self.sigma[0] + (self.sigma[1] - self.sigma[0]) * u[:, 0]
            k = 2 * math.ceil(2.5 * self.sigma[1]) + 1
            blurred = gaussian_blur2d(x, (k, k), torch.stack([sigma, sigma], -1), "reflect")
            a = (self.amount[0] + (self.amount[1] - self.amount[0]) * u[:, 1])[:, None, None, None]
            out[sharpen] = x + a * (x - blurred)
        return out


class DomainRandomisation(nn.Module):
    """(B, 1, H, W) images in [0, 1], (B, L, 2) landmarks and (B, L) visibility -> the
    augmented images, moved landmarks and their visibility."""

    def __init__(
        self,
        *,
        degrees: float = 10.0,
        translate: float = 0.1,
        scale: tuple[float, float] = (0.9, 1.25),
        p_affine: float = 0.8,
        elastic_sigma: float = 6.0,
        elastic_alpha: float = 0.5,
        p_elastic: float = 0.3,
    ) -> None:
        super().__init__()
        self.degrees, self.translate, self.scale, self.p_affine = (
            degrees,
            translate,
            scale,
            p_affine,
        )
        self.elastic_sigma, self.elastic_alpha = elastic_sigma, elastic_alpha
        self.p_elastic = p_elastic
        self.intensity = nn.Sequential(
            RandomShutter(),
            K.RandomInvert(p=0.3),
            K.RandomGamma(gamma=(0.6, 1.6), p=0.5),  # contrast curve
            K.RandomContrast(contrast=(0.7, 1.3), p=0.3),  # multiply
            K.RandomGaussianBlur(kernel_size=(5, 5), sigma=(0.3, 1.2), p=0.3),
            K.RandomSharpness(sharpness=0.5, p=0.2),
            K.RandomErasing(scale=(0.01, 0.05), ratio=(0.5, 2.0), value=0.0, p=0.3),  # dropout
            K.RandomSaltAndPepperNoise(amount=(0.005, 0.03), salt_vs_pepper=(0.5, 0.5), p=0.2),
            K.RandomGaussianNoise(std=0.03, p=0.3),
            RandomUnsharpMask(),
        )

    def random_affine(self, b: int, h: int, w: int) -> torch.Tensor:
        """(B, 3, 3) input-to-output pixel maps: rotation and scale about the image centre and
        a translation, each sample with probability `p_affine` (else the identity)."""
        u = torch.rand(b, 5)
        apply = u[:, 4] < self.p_affine
        angle = torch.deg2rad((2 * u[:, 0] - 1) * self.degrees) * apply
        s = torch.where(apply, self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, 1], 1.0)
        shift = (2 * u[:, 2:4] - 1) * self.translate * torch.tensor([w, h]) * apply[:, None]
        centre = torch.tensor([(w - 1) / 2, (h - 1) / 2])
        m = torch.zeros(b, 3, 3)
        m[:, 0, 0], m[:, 0, 1] = s * torch.cos(angle), -s * torch.sin(angle)
        m[:, 1, 0], m[:, 1, 1] = s * torch.sin(angle), s * torch.cos(angle)
        m[:, :2, 2] = centre - (m[:, :2, :2] @ centre[:, None])[..., 0] + shift
        m[:, 2, 2] = 1.0
        return m

    def random_displacement(self, b: int, h: int, w: int) -> torch.Tensor:
        """(B, 2, H, W) elastic fields in pixels: smoothed uniform noise (kornia's elastic
        recipe: sigma in pixels, alpha in units of half the image), each with `p_elastic`."""
        noise = torch.rand(b, 2, h, w) * 2 - 1
        apply = torch.rand(b) < self.p_elastic
        field = torch.zeros(b, 2, h, w)
        if apply.any():  # drawn for every sample, smoothed for those it applies to
            k = 2 * math.ceil(2.5 * self.elastic_sigma) + 1
            sigma = torch.full((int(apply.sum()), 2), self.elastic_sigma)
            smooth = gaussian_blur2d(noise[apply], (k, k), sigma, border_type="constant")
            half = torch.tensor([w / 2, h / 2])[None, :, None, None]
            field[apply] = smooth * self.elastic_alpha * half
        return field

    @torch.no_grad()
    def forward(
        self, images: torch.Tensor, landmarks: torch.Tensor, visible: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, _, h, w = images.shape
        affine = self.random_affine(b, h, w).to(images)
        displacement = self.random_displacement(b, h, w).to(images)
        out, moved, vis = warp(images, landmarks, visible, affine, displacement)
        return self.intensity(out).clamp(0, 1), moved, vis
