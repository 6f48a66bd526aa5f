"""Realism of an image set against real test images, without downloaded feature networks.

* Fréchet distance (as FID) between Gaussian fits of features from the `real`-arm detector's
  encoder: the U-Net's bottom layer, averaged over space.
* Intensity distance: the earth mover's distance between the pooled histograms of the images
  as the detector sees them (normalised to [0, 1]).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.networks.layers import SkipConnection
from scipy import linalg

from xrayfactory.core.images import preprocess
from xrayfactory.detection.detector import Detector


def _bottom(net: torch.nn.Module) -> torch.nn.Module:
    """The innermost block of a MONAI U-Net (below every skip connection)."""
    block = net.model
    while True:
        skip = next((m for m in block.children() if isinstance(m, SkipConnection)), None)
        if skip is None:
            return block
        block = skip.submodule


def as_seen(images: np.ndarray, size: int) -> torch.Tensor:
    """(N, H, W) images as the detector sees them: (N, 1, size, size), normalised, in [0, 1]."""
    n = len(images)
    return preprocess(images, np.zeros((n, 0, 2)), np.zeros((n, 0), bool), size).images


@torch.no_grad()
def encoder_features(det: Detector, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """(N, H, W) images -> (N, C) spatially averaged bottom-layer features of the detector."""
    grabbed: list[torch.Tensor] = []
    hook = _bottom(det.net).register_forward_hook(
        lambda _m, _i, out: grabbed.append(out.mean(dim=(2, 3)).cpu())
    )
    try:
        seen = as_seen(images, det.settings.image_size)
        for start in range(0, len(images), batch_size):
            det.net(seen[start : start + batch_size].to(det.device))
    finally:
        hook.remove()
    return torch.cat(grabbed).double().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to feature sets (N, C) and (M, C)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():
        offset = eps * np.eye(len(cov_a))
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    root = np.real(root)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def intensity_distance(a: np.ndarray, b: np.ndarray, size: int, bins: int = 64) -> float:
    """Earth mover's distance between the intensity histograms of two image sets (N, H, W)
    as the detector sees them (normalised per image, resized to `size`: sets of different
    resolutions compare like for like), in units of the [0, 1] range."""
    edges = np.linspace(0, 1, bins + 1)
    ha = np.histogram(as_seen(a, size).numpy(), edges)[0].astype(float)
    hb = np.histogram(as_seen(b, size).numpy(), edges)[0].astype(float)
    cdf = np.cumsum(ha / ha.sum() - hb / hb.sum())
    return float(np.abs(cdf).sum() / bins)
