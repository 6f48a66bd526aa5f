"""The study-wide image normalisation: every arm's images, the generators' training images and
the images `predict` reads go through the same percentile normalisation and resize."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Batch:
    """Preprocessed images (N, 1, S, S) in [0, 1] with landmarks in the same pixel frame."""

    images: torch.Tensor
    landmarks: torch.Tensor
    visible: torch.Tensor
    scale: np.ndarray = field(default_factory=lambda: np.ones(1))  # original px per model px


def normalise(images: np.ndarray) -> np.ndarray:
    """Per image: 1st..99th percentile -> [0, 1] (the same for every arm and for predict)."""
    lo = np.percentile(images, 1, axis=(1, 2), keepdims=True)
    hi = np.percentile(images, 99, axis=(1, 2), keepdims=True)
    return np.clip((images - lo) / np.maximum(hi - lo, 1e-6), 0, 1).astype(np.float32)


def preprocess(images: np.ndarray, landmarks: np.ndarray, visible: np.ndarray, size: int) -> Batch:
    """Normalise and resize (N, H, W) images to size x size; landmarks follow."""
    _, h, w = images.shape
    x = torch.as_tensor(normalise(images))[:, None]
    if (h, w) != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    scale = np.array([w / size, h / size])
    # pixel centres: model px = (orig px + 0.5) / scale - 0.5
    lm = (torch.as_tensor(landmarks, dtype=torch.float32) + 0.5) / torch.as_tensor(
        scale, dtype=torch.float32
    ) - 0.5
    return Batch(x, lm, torch.as_tensor(visible, dtype=torch.bool), scale)
