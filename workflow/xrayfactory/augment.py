"""SyntheX-style strong domain randomisation with kornia, batched and seeded.

Spatial transforms (small affine, elastic) move image and heatmaps together, so the landmarks
move along; intensity transforms (inversion, contrast curves, multiply, blur, sharpen, dropout,
impulse and Gaussian noise) touch the image only. Random parameters come from torch's global
generator: seed it (torch.manual_seed) before each call for reproducible batches.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn


class DomainRandomisation(nn.Module):
    """(B, 1, H, W) images in [0, 1] and (B, L, H, W) heatmaps -> augmented pair."""

    def __init__(self) -> None:
        super().__init__()
        self.spatial = nn.Sequential(
            K.RandomAffine(degrees=10.0, translate=(0.06, 0.06), scale=(0.9, 1.1), p=0.8),
            K.RandomElasticTransform(
                kernel_size=(31, 31), sigma=(6.0, 6.0), alpha=(0.5, 0.5), p=0.3
            ),
        )
        self.intensity = nn.Sequential(
            K.RandomInvert(p=0.3),
            K.RandomGamma(gamma=(0.6, 1.6), p=0.5),  # contrast curve
            K.RandomContrast(contrast=(0.7, 1.3), p=0.3),  # multiply
            K.RandomGaussianBlur(kernel_size=(5, 5), sigma=(0.3, 1.2), p=0.3),
            K.RandomSharpness(sharpness=0.5, p=0.2),
            K.RandomErasing(scale=(0.01, 0.05), ratio=(0.5, 2.0), value=0.0, p=0.3),  # dropout
            K.RandomSaltAndPepperNoise(amount=(0.005, 0.03), salt_vs_pepper=(0.5, 0.5), p=0.2),
            K.RandomGaussianNoise(std=0.03, p=0.3),
        )

    @torch.no_grad()
    def forward(
        self, images: torch.Tensor, heatmaps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        both = self.spatial(torch.cat([images, heatmaps], dim=1))
        return self.intensity(both[:, :1]).clamp(0, 1), both[:, 1:]
