"""The landmark detector: a MONAI U-Net that predicts, per landmark, a probability map over a
canvas larger than the image (spatial softmax, cross-entropy against a normalised Gaussian at the
landmark). The map's peak is the landmark; the probability it puts on the image is its score.

Identical for every arm: architecture, optimiser, schedule, augmentation and number of training
images come from the config. Training is deterministic for a seed, checkpoints every
`checkpoint_every` steps, saves and exits non-zero on SIGTERM, and resumes from its last
checkpoint to the same result as an uninterrupted run (batch order is keyed by (seed, epoch),
augmentation by (seed, epoch, block of steps)).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import UNet

from xrayfactory.core.checkpoints import load_final, restore
from xrayfactory.core.device import pick_device
from xrayfactory.core.errors import InputError
from xrayfactory.core.images import Batch, preprocess
from xrayfactory.core.rng import rng_for
from xrayfactory.core.training import TrainingRun, optimiser_step
from xrayfactory.detection.augment import DomainRandomisation
from xrayfactory.detection.heatmaps import gaussian_heatmaps, peaks
from xrayfactory.imaging.geometry import in_image, located

log = logging.getLogger("xrayfactory")

# The image sits in the middle of a larger canvas filled with this value (outside the [0, 1]
# of images): the network locates landmarks just outside the image on the canvas's rim.
CANVAS_FILL = -1.0

# Images augmented per call in training: one call per block of steps (the demo: per epoch)
# costs a fraction of one call per step, whose time is mostly per-call overhead on a CPU.
AUGMENT_BLOCK = 128


def on_canvas(images: torch.Tensor, margin: int) -> torch.Tensor:
    """(B, 1, S, S) images -> (B, 1, S + 2 margin, S + 2 margin) with the image in the middle."""
    return F.pad(images, (margin,) * 4, value=CANVAS_FILL)


def canvas_targets(
    landmarks: torch.Tensor, known: torch.Tensor, size: int, margin: int, sigma: float
) -> torch.Tensor:
    """(B, L, 2) image pixels of landmarks with a `known` position -> (B, L, C, C) target
    distributions on the canvas (C = size + 2 margin): a Gaussian at the landmark, one just
    outside the image on the rim, one beyond the canvas at its nearest canvas pixel; an empty
    channel where the position is not known."""
    canvas = size + 2 * margin
    lm = (torch.nan_to_num(landmarks) + margin).clamp(0, canvas - 1)
    maps = gaussian_heatmaps(lm, known, canvas, canvas, sigma)
    return maps / maps.sum((-1, -2), keepdim=True).clamp(min=1e-12)


def heatmap_loss(logits: torch.Tensor, targets: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between each channel's spatial softmax and its target distribution,
    averaged over the landmarks with a known position."""
    logp = F.log_softmax(logits.flatten(-2), -1)
    ce = -(targets.flatten(-2) * logp).sum(-1)
    return (ce * known).sum() / known.sum().clamp(min=1)


@dataclass(frozen=True, kw_only=True)
class DetectorSettings:
    image_size: int = 128
    sigma_px: float = 3.0
    channels: tuple[int, ...] = (16, 32, 64, 128)
    res_units: int = 1
    learning_rate: float = 2e-3
    batch_size: int = 8
    epochs: int = 60
    found_threshold: float = 0.5
    margin: float = 0.125
    augment: bool = True
    checkpoint_every: int = 500
    seed: int = 0

    @classmethod
    def from_config(cls, section: dict, seed: int) -> DetectorSettings:
        """The settings of the config's `detector` section (keys the network does not use, such
        as arms and seeds, are ignored) for one seed."""
        fields = {k: v for k, v in section.items() if k in cls.__dataclass_fields__}
        if "channels" in fields:
            fields["channels"] = tuple(fields["channels"])
        return cls(**fields, seed=seed)

    @property
    def margin_px(self) -> int:
        """Canvas rim in model pixels: `margin` of the image size, rounded up to a multiple of
        half the U-Net's total stride so that the canvas divides like the image does."""
        half = max(1, 2 ** (len(self.channels) - 1) // 2)
        return half * math.ceil(self.image_size * self.margin / half)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def build_network(n_landmarks: int, s: DetectorSettings) -> torch.nn.Module:
    """The U-Net, its weights channels-last (oneDNN's faster convolutions on a CPU)."""
    net = UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=n_landmarks,
        channels=s.channels,
        strides=(2,) * (len(s.channels) - 1),
        num_res_units=s.res_units,
    )
    return net.to(memory_format=torch.channels_last)


def train(
    data: Batch,
    names: list[str],
    settings: DetectorSettings,
    out: Path,
    *,
    meta: dict,
    device: str = "cpu",
    augment_block: int = AUGMENT_BLOCK,
) -> None:
    """Train and write the final checkpoint `out` (resumable, core.training). Each epoch draws
    its batch order from (seed, epoch); each block of its steps (`augment_block` images), its
    augmentation from (seed, epoch, the block's first step)."""
    torch.manual_seed(settings.seed)
    n = len(data.images)
    size, margin, sigma = settings.image_size, settings.margin_px, settings.sigma_px
    dev = pick_device(device, reproducible=True)
    net = build_network(len(names), settings).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=settings.learning_rate, fused=True)
    steps_per_epoch = max(1, n // settings.batch_size)
    total = settings.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=settings.learning_rate, total_steps=total
    )
    aug = DomainRandomisation() if settings.augment else None
    located_all = located(data.landmarks, data.visible, size, size)  # before any augmentation
    key = {"digest": settings.digest(), "meta": meta}
    states = {"model": net, "optimizer": opt, "scheduler": sched}
    run = TrainingRun(out, key, "detector training", total, settings.checkpoint_every, states)

    block_steps = max(1, augment_block // settings.batch_size)

    @functools.lru_cache(maxsize=1)  # the current block's tensors
    def block_of(epoch: int, first: int) -> tuple[torch.Tensor, ...]:
        """Steps first.. of the block (at most block_steps, within the epoch): their images,
        augmented in one call seeded by (seed, epoch, first step), and moved landmarks."""
        order = rng_for(settings.seed, "order", epoch).permutation(n)
        last = min(first + block_steps, steps_per_epoch)
        idx = order[first * settings.batch_size : last * settings.batch_size]
        x, lm, vis, known = (
            t[idx].to(dev) for t in (data.images, data.landmarks, data.visible, located_all)
        )
        if aug is not None:
            torch.manual_seed(int(rng_for(settings.seed, "aug", epoch, first).integers(2**62)))
            x, lm, _ = aug(x, lm, vis)
        return x, lm, known

    def step_fn(global_step: int) -> torch.Tensor:
        epoch, step = divmod(global_step, steps_per_epoch)
        first = step - step % block_steps
        rows = slice((step - first) * settings.batch_size, (step - first + 1) * settings.batch_size)
        x, lm, known = (t[rows] for t in block_of(epoch, first))
        # targets from the (moved) landmarks: what augmentation brings into view shows
        y = canvas_targets(lm, known, size, margin, sigma)
        loss = heatmap_loss(net(on_canvas(x, margin)), y, known)
        return optimiser_step(opt, loss, sched)

    run.fit(net, step_fn)
    run.finish(
        {"model": net.state_dict(), "names": names, "settings": asdict(settings), "meta": meta}
    )


class Detector:
    """A trained detector loaded from its checkpoint."""

    def __init__(self, path: str | os.PathLike, *, device: str = "auto"):
        ckpt = load_final(path, "detector", {"model", "names", "settings"})
        self.path = str(path)
        self.names: list[str] = list(ckpt["names"])
        s = dict(ckpt["settings"])
        s["channels"] = tuple(s["channels"])
        if "margin" not in s:
            raise InputError(
                path, "trained by an older detector (sigmoid maps, no canvas): retrain it"
            )
        self.settings = DetectorSettings(**s)
        self.meta = ckpt.get("meta", {})
        self.device = pick_device(device, reproducible=True)
        self.net = restore(build_network(len(self.names), self.settings), ckpt, self.device)

    def check_compatible(self, names: list[str], image_size: int) -> None:
        """Refuse a checkpoint trained for other landmarks or another input size."""
        if names != self.names:
            raise InputError(self.path, f"trained for landmarks {self.names}, not {names}")
        if image_size != self.settings.image_size:
            raise InputError(
                self.path, f"trained at image size {self.settings.image_size}, not {image_size}"
            )

    @torch.no_grad()
    def predict(
        self, images: np.ndarray, batch_size: int = 16
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, H, W) images -> landmarks (N, L, 2) in their pixels, scores (the probability
        on the image) and found (N, L): score above the threshold and the peak on the image."""
        n = len(images)
        dummy = np.zeros((n, len(self.names), 2))
        batch = preprocess(
            images, dummy, np.zeros((n, len(self.names)), bool), self.settings.image_size
        )
        size, margin = self.settings.image_size, self.settings.margin_px
        inner = slice(margin, margin + size)
        xy, score = [], []
        for start in range(0, n, batch_size):
            logits = self.net(
                on_canvas(batch.images[start : start + batch_size], margin).to(self.device)
            )
            p = F.softmax(logits.flatten(-2), -1).view_as(logits).cpu()
            peak, _ = peaks(p / p.amax((-1, -2), keepdim=True))
            xy.append(peak - margin)
            score.append(p[..., inner, inner].sum((-1, -2)))
        model_px = torch.cat(xy)
        scores = torch.cat(score).numpy()
        found = (scores > self.settings.found_threshold) & in_image(model_px, size, size).numpy()
        return (model_px.numpy() + 0.5) * batch.scale - 0.5, scores, found
