"""The `synth2d` generator: a view-conditioned 2D diffusion model (diffusers) that makes X-rays.

The condition of an image is its landmark heatmaps (one channel per landmark, empty when the
landmark is out of view) plus a "condition present" channel, concatenated to the noisy image.
Training drops the condition for a fraction of samples (classifier-free guidance), keeps EMA
weights, checkpoints every `checkpoint_every` steps and on SIGTERM, and resumes to the same
result as an uninterrupted run (batches, timesteps and noise are keyed by (seed, step)).
Sampling uses diffusers' schedulers: DDPM, DDIM or DPM-Solver++, with guidance.
Images are per-image normalised intensities in [0, 1] (the detector's `normalise`).
"""

from __future__ import annotations

import contextlib
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
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel

from xrayfactory.core.checkpoints import load_final, restore
from xrayfactory.core.device import pick_device
from xrayfactory.core.errors import InputError
from xrayfactory.core.progress import Progress
from xrayfactory.core.rng import rng_for
from xrayfactory.core.training import TrainingRun, optimiser_step
from xrayfactory.detection.heatmaps import gaussian_heatmaps
from xrayfactory.imaging.geometry import CArm, ViewSampler
from xrayfactory.imaging.imageset import ImageSet
from xrayfactory.imaging.views import shape_views
from xrayfactory.synth2d.shapes import ShapeModel

log = logging.getLogger("xrayfactory")

SAMPLERS = ("ddpm", "ddim", "dpmsolver++")


@dataclass(frozen=True, kw_only=True)
class Synth2DSettings:
    image_size: int = 64
    channels: tuple[int, ...] = (16, 32, 64, 64)
    layers_per_block: int = 1
    attention: bool = True
    sigma_px: float = 1.5
    timesteps: int = 1000
    prediction: str = "v_prediction"
    train_steps: int = 2000
    batch_size: int = 16
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    condition_dropout: float = 0.1
    ema_decay: float = 0.999
    checkpoint_every: int = 100
    mixed_precision: bool = True
    compile: bool = False
    seed: int = 0

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def settings_from(section: dict, seed: int) -> Synth2DSettings:
    """Synth2DSettings from a config section (other keys ignored)."""
    fields = {k: v for k, v in section.items() if k in Synth2DSettings.__dataclass_fields__}
    if "channels" in fields:
        fields["channels"] = tuple(fields["channels"])
    return Synth2DSettings(**fields, seed=seed)


def build_unet(n_landmarks: int, s: Synth2DSettings) -> UNet2DModel:
    """Image + L heatmaps + presence channel in, noise prediction out; attention at the bottom.
    Weights channels-last (oneDNN's faster convolutions on a CPU)."""
    k = len(s.channels)
    down = ["DownBlock2D"] * k
    up = ["UpBlock2D"] * k
    if s.attention:
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    net = UNet2DModel(
        sample_size=s.image_size,
        in_channels=1 + n_landmarks + 1,
        out_channels=1,
        block_out_channels=s.channels,
        layers_per_block=s.layers_per_block,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        norm_num_groups=min(32, math.gcd(*s.channels)),
    )
    return net.to(memory_format=torch.channels_last)


def noise_schedule(s: Synth2DSettings) -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=s.timesteps,
        beta_schedule="squaredcos_cap_v2",
        prediction_type=s.prediction,
    )


def make_sampler(kind: str, steps: int, train_schedule: DDPMScheduler):
    """A diffusers scheduler with the training betas, set to `steps` steps. Timesteps are
    "trailing": sampling starts at the last training timestep (pure noise, as the starting
    sample is), whatever the step count; diffusers' default "leading" starts near t = 900."""
    spacing = {"timestep_spacing": "trailing"}
    if kind == "ddpm":
        sched = DDPMScheduler.from_config(train_schedule.config, **spacing)
    elif kind == "ddim":
        sched = DDIMScheduler.from_config(train_schedule.config, set_alpha_to_one=False, **spacing)
    elif kind == "dpmsolver++":
        sched = DPMSolverMultistepScheduler.from_config(
            train_schedule.config,
            **spacing,
            algorithm_type="dpmsolver++",
            solver_order=2,
            lambda_min_clipped=-5.1,  # needed with the cosine schedule (alpha_bar -> 0)
        )
    else:
        raise InputError("sampler", f"unknown sampler {kind!r} (one of {', '.join(SAMPLERS)})")
    sched.set_timesteps(steps)
    return sched


def conditioning(
    landmarks: torch.Tensor, visible: torch.Tensor, present: torch.Tensor, size: int, sigma: float
) -> torch.Tensor:
    """(B, L, 2) pixel landmarks, (B, L) visibility, (B,) condition present -> (B, L+1, S, S):
    the heatmaps and a presence channel, all zero where the condition is dropped."""
    maps = gaussian_heatmaps(landmarks.float(), visible, size, size, sigma)
    flag = torch.ones_like(maps[:, :1])
    cond = torch.cat([maps, flag], dim=1)
    return cond * present.to(cond.dtype)[:, None, None, None]


def _target(
    schedule: DDPMScheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    if schedule.config.prediction_type == "v_prediction":
        return schedule.get_velocity(x0, noise, t)
    return noise


def _autocast(dev: torch.device, enabled: bool):
    if dev.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train(
    images: torch.Tensor,
    landmarks: torch.Tensor,
    visible: torch.Tensor,
    names: list[str],
    settings: Synth2DSettings,
    out: Path,
    *,
    meta: dict,
    device: str = "cpu",
) -> None:
    """Train on (N, 1, S, S) images in [0, 1] with their landmarks (model pixels) and write the
    EMA weights to `out`; `out`.last.pt holds the resumable state."""
    s = settings
    if images.shape[-1] != s.image_size or images.shape[-2] != s.image_size:
        raise InputError(out, f"images are {tuple(images.shape[-2:])}, expected {s.image_size}")
    torch.manual_seed(s.seed)
    dev = pick_device(device, reproducible=True)
    net = build_unet(len(names), s).to(dev)
    forward = torch.compile(net) if s.compile and dev.type == "cuda" else net
    opt = torch.optim.AdamW(net.parameters(), lr=s.learning_rate, weight_decay=0.0, fused=True)
    lr = get_cosine_schedule_with_warmup(opt, s.warmup_steps, s.train_steps)
    ema = EMAModel(net.parameters(), decay=s.ema_decay, use_ema_warmup=True, power=2 / 3)
    schedule = noise_schedule(s)
    key = {"digest": s.digest(), "meta": meta}
    states = {"model": net, "optimizer": opt, "lr": lr, "ema": ema}
    run = TrainingRun(out, key, "synth2d training", s.train_steps, s.checkpoint_every, states)
    ema.to(dev)
    x_all = images * 2 - 1
    n = len(x_all)
    batch = min(s.batch_size, n)

    def step_fn(step: int) -> torch.Tensor:
        r = rng_for(s.seed, "synth2d", step)
        idx = np.sort(r.choice(n, size=batch, replace=False))
        t = torch.as_tensor(r.integers(0, s.timesteps, batch))
        noise = torch.randn(
            (batch, 1, s.image_size, s.image_size),
            generator=torch.Generator().manual_seed(int(r.integers(2**62))),
        )
        present = torch.as_tensor(r.random(batch) >= s.condition_dropout)
        cond = conditioning(landmarks[idx], visible[idx], present, s.image_size, s.sigma_px)
        noisy = schedule.add_noise(x_all[idx], noise, t)
        with _autocast(dev, s.mixed_precision):
            pred = forward(torch.cat([noisy, cond], dim=1).to(dev), t.to(dev)).sample
        loss = F.mse_loss(pred.float(), _target(schedule, x_all[idx], noise, t).to(dev))
        loss = optimiser_step(opt, loss, lr)
        ema.step(net.parameters())
        return loss

    run.fit(net, step_fn)
    ema.copy_to(net.parameters())
    run.finish({"model": net.state_dict(), "names": names, "settings": asdict(s), "meta": meta})


class Synth2D:
    """A trained generator loaded from its final checkpoint."""

    def __init__(self, path: str | os.PathLike, *, device: str = "auto"):
        ckpt = load_final(path, "synth2d generator", {"model", "names", "settings"})
        self.path = str(path)
        self.names: list[str] = list(ckpt["names"])
        fields = dict(ckpt["settings"])
        fields["channels"] = tuple(fields["channels"])
        self.settings = Synth2DSettings(**fields)
        self.meta = ckpt.get("meta", {})
        self.device = pick_device(device, reproducible=True)
        self.net = restore(build_unet(len(self.names), self.settings), ckpt, self.device)

    @torch.no_grad()
    def sample(
        self,
        landmarks: np.ndarray,
        visible: np.ndarray,
        *,
        sampler: str,
        steps: int,
        guidance: float,
        rng_key: tuple,
        batch_size: int = 16,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """(N, S, S) images in [0, 1] showing landmarks (N, L, 2) (model pixels, visible (N, L)).

        Batch b's starting noise comes from `rng_key` + (b,): the same key, views and sampler
        give the same images."""
        s = self.settings
        size = s.image_size
        schedule = noise_schedule(s)
        out = []
        for b, start in enumerate(range(0, len(landmarks), batch_size)):
            lm = torch.as_tensor(landmarks[start : start + batch_size], dtype=torch.float32)
            vis = torch.as_tensor(visible[start : start + batch_size], dtype=torch.bool)
            m = len(lm)
            gen = torch.Generator().manual_seed(int(rng_for(*rng_key, b).integers(2**62)))
            x = torch.randn((m, 1, size, size), generator=gen)
            cond = conditioning(lm, vis, torch.ones(m, dtype=torch.bool), size, s.sigma_px)
            if guidance != 1.0:
                cond = torch.cat([cond, torch.zeros_like(cond)])
            cond = cond.to(self.device)
            sched = make_sampler(sampler, steps, schedule)
            for t in sched.timesteps:
                xin = torch.cat([x, x]) if guidance != 1.0 else x
                with _autocast(self.device, s.mixed_precision):
                    pred = self.net(torch.cat([xin.to(self.device), cond], dim=1), t).sample
                pred = pred.float().cpu()
                if guidance != 1.0:
                    pred_c, pred_u = pred.chunk(2)
                    pred = pred_u + guidance * (pred_c - pred_u)
                x = sched.step(pred, t, x, generator=gen).prev_sample
            out.append(((x.clamp(-1, 1) + 1) / 2)[:, 0].numpy())
            if progress is not None:
                progress.update(m)
        return np.concatenate(out) if out else np.zeros((0, size, size), np.float32)


def network_evaluations(steps: int, guidance: float) -> int:
    """Network evaluations per image: guidance adds an unconditional one per step."""
    return steps * (2 if guidance != 1.0 else 1)


def generate(
    gen: Synth2D,
    shapes: ShapeModel,
    carm: CArm,
    views: ViewSampler,
    n: int,
    *,
    sampler: dict,
    rng_key: tuple,
    shape_scale: float = 1.0,
    fold: int,
    first_id: int = 0,
) -> ImageSet:
    """`n` new labelled images: shapes from the shape model, poses from the view sampler,
    landmarks projected with the C-arm and drawn by the generator."""
    if gen.names != shapes.names:
        raise InputError(gen.path, f"trained for landmarks {gen.names}, not {shapes.names}")
    rng = rng_for(*rng_key, "views")
    pts3d = shapes.sample(n, rng, scale=shape_scale)
    size = gen.settings.image_size
    view, ps, uv, vis = shape_views(pts3d, shapes.names, carm, views, rng, size)
    progress = Progress(n, "synth2d sampling", unit="images")
    images = gen.sample(
        uv,
        vis,
        sampler=sampler["kind"],
        steps=sampler["steps"],
        guidance=sampler["guidance"],
        rng_key=(*rng_key, "noise"),
        batch_size=sampler["batch_size"],
        progress=progress,
    )
    return ImageSet(
        images=images,
        landmarks=uv,
        visible=vis,
        projection=ps,
        subject=np.array([f"fold{fold}-shape{first_id + i:06d}" for i in range(n)]),
        view=view,
        attrs={
            "arm": "synth2d",
            "generator": (
                f"synth2d: diffusers UNet2DModel, {sampler['kind']} {sampler['steps']} steps, "
                f"guidance {sampler['guidance']}"
            ),
            "trained_on": gen.meta.get("trained_on", "real"),
            "intensity": "normalised",
            "proxy": False,
            "fold": fold,
            "landmark_names": shapes.names,
            "pixel_spacing_mm": carm.spacing * carm.cols / size,
            "magnification": carm.magnification,
        },
    )
