"""What the detectors train on: each arm's images as the detector sees them, beside one draw of
the domain randomisation that is the same for every arm."""

from __future__ import annotations

import os
import textwrap

import numpy as np
import torch

from xrayfactory.core.images import Batch, preprocess
from xrayfactory.detection.augment import DomainRandomisation
from xrayfactory.imaging.imageset import ImageSet
from xrayfactory.imaging.qc import plt, save_figure

PANELS = 4  # images per arm in the figure


def augmented_views(
    s: ImageSet, image_size: int, seed: int, n: int = PANELS
) -> tuple[Batch, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """`n` images spread over `s`, preprocessed as for training, and their augmentation with
    torch seeded by `seed` (so every arm's k-th image gets the same random transform)."""
    idx = np.linspace(0, len(s) - 1, min(n, len(s))).astype(int)
    seen = preprocess(s.images[idx], s.landmarks[idx], s.visible[idx], image_size)
    torch.manual_seed(seed)
    return seen, DomainRandomisation()(seen.images, seen.landmarks, seen.visible)


def augmentation_figure(
    sets: dict[str, ImageSet], image_size: int, seed: int, title: str, path: str | os.PathLike
) -> None:
    """One row per arm: its images as the detector sees them (left) and augmented (right),
    each with the landmarks its training targets are made from."""
    n = PANELS
    fig, axes = plt.subplots(len(sets), 2 * n, figsize=(2 * 2 * n, 2.2 * len(sets)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for row, (arm, s) in zip(axes, sets.items(), strict=True):
        seen, (images, landmarks, visible) = augmented_views(s, image_size, seed, n)
        panels = [(seen.images, seen.landmarks, seen.visible), (images, landmarks, visible)]
        for half, (x, lm, vis) in enumerate(panels):
            for k in range(len(x)):
                ax = row[half * n + k]
                ax.imshow(x[k, 0].numpy(), cmap="gray", vmin=0, vmax=1)
                ax.scatter(lm[k, vis[k], 0], lm[k, vis[k], 1], s=6, c="tab:red")
                ax.set(xlim=(-0.5, image_size - 0.5), ylim=(image_size - 0.5, -0.5))
        row[0].set_title(f"{arm}: as seen", fontsize=8, loc="left")
        row[n].set_title(f"{arm}: augmented", fontsize=8, loc="left")
    fig.suptitle(textwrap.fill(title, 120), fontsize=9)
    save_figure(fig, path)
