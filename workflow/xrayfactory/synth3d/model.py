"""The `synth3d` generator: a mask-conditioned 3D latent diffusion model (MONAI) that makes CTs.

Stage 1, a 3D AutoencoderKL, learns normalised HU on random patches of the fold's training CTs
(L1 + KL), so memory does not grow with the volume. With `spade_channels` > 0 it is MONAI's
SPADEAutoencoderKL instead (brainSPADE): its decoder also reads the mask condition at full
resolution, so the label maps place the anatomy and the latent is to carry the rest. It decodes
a sample of its posterior, or with `sample_posterior` off the posterior's mean: the noise of a
fresh encoder can drown its means, and a decoder that reads the masks then learns to ignore its
latent (synth3d.controls.latent_use measures it). With `mask_prior` it learns the residual over
the HU the masks alone predict (MaskPrior), so each tissue starts at its mean.
Stage 2, a 3D DiffusionModelUNet, learns the DDPM objective (epsilon, v or sample prediction) on
the frozen autoencoder's scaled latents with MONAI's DiffusionInferer, the mask condition
(ctgrid.condition, averaged to the latent grid) concatenated to the noisy latent. Sampling runs
MONAI's LatentDiffusionInferer with DDIM (or DDPM) and decodes to HU.
Both stages learn on a one-cycle learning-rate schedule, checkpoint every `checkpoint_every`
steps and on SIGTERM, and resume to the same weights as an uninterrupted run (batches, crops,
timesteps and noise are keyed by (seed, step)). On CUDA they use bfloat16 autocast, and the
plain autoencoder activation checkpointing (MONAI's SPADE autoencoder has none).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import DiffusionInferer, LatentDiffusionInferer
from monai.networks.nets import AutoencoderKL, DiffusionModelUNet, SPADEAutoencoderKL
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from xrayfactory.core.checkpoints import load_final, restore
from xrayfactory.core.device import pick_device
from xrayfactory.core.errors import InputError
from xrayfactory.core.progress import Progress
from xrayfactory.core.rng import rng_for
from xrayfactory.core.training import TrainingRun, optimiser_step
from xrayfactory.synth3d.ctgrid import GridSpec, latent_condition

log = logging.getLogger("xrayfactory")

SAMPLERS = ("ddpm", "ddim")


@dataclass(frozen=True, kw_only=True)
class AutoencoderSettings:
    channels: tuple[int, ...]
    latent_channels: int = 4
    patch: tuple[int, int, int]
    steps: int
    batch_size: int = 2
    learning_rate: float
    kl_weight: float = 1e-6
    spade_channels: int = 0
    sample_posterior: bool = True
    mask_prior: bool = False


@dataclass(frozen=True, kw_only=True)
class DiffusionSettings:
    channels: tuple[int, ...]
    timesteps: int = 1000
    prediction: str = "epsilon"
    steps: int
    batch_size: int = 2
    learning_rate: float


@dataclass(frozen=True, kw_only=True)
class Runtime:
    """Settings that change how, not what, a stage computes (besides the seed)."""

    checkpoint_every: int = 100
    mixed_precision: bool = True
    activation_checkpointing: bool = True
    seed: int = 0


def _digest(*parts: object) -> str:
    text = json.dumps([asdict(p) for p in parts], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _fields(cls, section: dict):
    out = {k: v for k, v in section.items() if k in cls.__dataclass_fields__}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in out.items()})


def autoencoder_settings(section: dict) -> AutoencoderSettings:
    return _fields(AutoencoderSettings, section["autoencoder"])


def diffusion_settings(section: dict) -> DiffusionSettings:
    return _fields(DiffusionSettings, section["diffusion"])


def runtime(section: dict, seed: int) -> Runtime:
    return _fields(Runtime, {**section, "seed": seed})


def downsampling(a: AutoencoderSettings) -> int:
    return 2 ** (len(a.channels) - 1)


def _divisible(where: str, sizes, channels: tuple[int, ...]) -> None:
    """A network with len(channels) levels halves its input len(channels) - 1 times."""
    f = 2 ** (len(channels) - 1)
    if any(int(n) % f for n in sizes):
        raise InputError(where, f"sizes {list(sizes)} must be divisible by {f}")


def _groups(channels: tuple[int, ...]) -> int:
    return int(np.gcd.reduce(channels)) if min(channels) < 32 else 32


def fit_mask_prior(volumes: np.ndarray, conditions: np.ndarray) -> np.ndarray:
    """Least-squares weights (1 + C,) of (N, 1, *shape) normalised CTs on a constant and their
    (N, C, *shape) condition channels (normal equations, one volume at a time; an empty channel
    gets weight 0): each tissue's mean as the masks alone predict it."""
    gram, rhs = 0.0, 0.0
    for x, c in zip(volumes, conditions, strict=True):
        d = np.concatenate([np.ones_like(c[:1]), c]).reshape(len(c) + 1, -1).astype(np.float64)
        gram, rhs = gram + d @ d.T, rhs + d @ x.reshape(-1).astype(np.float64)
    return np.linalg.lstsq(gram, rhs, rcond=None)[0]


class MaskPrior(torch.nn.Module):
    """The normalised HU a mask condition alone predicts, w0 + sum_c w_c condition_c; zero
    weights (no prior) unless `autoencoder.mask_prior` fitted them. The autoencoder encodes and
    decodes the residual over it. Not in the network's state dict: checkpoints keep the weights
    beside it, so those written before the prior existed still load."""

    def __init__(self, n_condition: int):
        super().__init__()
        self.register_buffer("weights", torch.zeros(1 + n_condition), persistent=False)

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        """(B, C, *shape) condition -> (B, 1, *shape) normalised HU."""
        w = self.weights.to(condition.device, condition.dtype)
        return (w[0] + torch.einsum("c,bc...->b...", w[1:], condition))[:, None]


def build_autoencoder(
    a: AutoencoderSettings, n_condition: int, *, checkpointing: bool = False
) -> AutoencoderKL | SPADEAutoencoderKL:
    """The autoencoder (SPADE decoder reading `n_condition` mask channels when
    a.spade_channels > 0), with its `mask_prior` (zero until fitted), its weights channels-last
    (oneDNN's 3D convolutions on a CPU: about 1.5x faster training steps at the demo's size)."""
    common = {
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 1,
        "channels": a.channels,
        "latent_channels": a.latent_channels,
        "num_res_blocks": 1,
        "attention_levels": (False,) * len(a.channels),
        "norm_num_groups": _groups(a.channels),
        "with_encoder_nonlocal_attn": False,
        "with_decoder_nonlocal_attn": False,
    }
    if a.spade_channels:
        net = SPADEAutoencoderKL(
            label_nc=n_condition, spade_intermediate_channels=a.spade_channels, **common
        )
    else:
        net = AutoencoderKL(use_checkpoint=checkpointing, **common)
    net.mask_prior = MaskPrior(n_condition)
    return net.to(memory_format=torch.channels_last_3d)


def mask_args(net: torch.nn.Module, condition: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The extra decoder argument of a SPADE autoencoder: the (B, C, *shape) condition."""
    return (condition,) if isinstance(net, SPADEAutoencoderKL) else ()


def build_unet(
    a: AutoencoderSettings, d: DiffusionSettings, n_condition: int
) -> DiffusionModelUNet:
    return DiffusionModelUNet(
        spatial_dims=3,
        in_channels=a.latent_channels + n_condition,
        out_channels=a.latent_channels,
        channels=d.channels,
        num_res_blocks=1,
        attention_levels=(False,) * len(d.channels),
        norm_num_groups=_groups(d.channels),
    )


def _schedule(d: DiffusionSettings) -> dict:
    """The latent-diffusion schedule of MONAI's tutorials (scaled linear betas)."""
    return {
        "num_train_timesteps": d.timesteps,
        "schedule": "scaled_linear_beta",
        "beta_start": 0.0015,
        "beta_end": 0.0195,
        "prediction_type": d.prediction,
    }


def noise_schedule(d: DiffusionSettings) -> DDPMScheduler:
    """The DDPM schedule; no clipping of predicted samples (MONAI clips to [-1, 1] by default,
    but the latents are scaled to unit variance, so a third of them would be cut)."""
    return DDPMScheduler(**_schedule(d), clip_sample=False)


def make_sampler(kind: str, steps: int, d: DiffusionSettings):
    """A MONAI scheduler with the training betas, set to `steps` steps (DDPM: all timesteps)."""
    if kind == "ddpm":
        sched = noise_schedule(d)
        sched.set_timesteps(d.timesteps)
        return sched
    if kind != "ddim":
        raise InputError("sampler", f"unknown sampler {kind!r} (one of {', '.join(SAMPLERS)})")
    sched = DDIMScheduler(**_schedule(d), clip_sample=False)
    sched.set_timesteps(steps)
    return sched


def _autocast(dev: torch.device, enabled: bool):
    if enabled and dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _generator(rng: np.random.Generator) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.integers(2**62)))


def one_cycle(
    opt: torch.optim.Optimizer, learning_rate: float, n_steps: int
) -> torch.optim.lr_scheduler.OneCycleLR:
    """The one-cycle schedule of `n_steps`: 10% warm-up to `learning_rate`, cosine decay.
    torch's OneCycleLR divides by zero where 10% of the steps is exactly one (10 steps, found
    by the GPU check): there it warms up over 20%."""
    warm_up = 0.2 if n_steps == 10 else 0.1
    return torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=learning_rate, total_steps=n_steps, pct_start=warm_up
    )


def _fit(
    net: torch.nn.Module,
    n_steps: int,
    learning_rate: float,
    loss_at: Callable[[int], torch.Tensor],
    out: Path,
    key: dict,
    r: Runtime,
    what: str,
) -> TrainingRun:
    """Adam on `loss_at(step)` for `n_steps`, the learning rate on a one-cycle schedule (10%
    warm-up to `learning_rate`, cosine decay), so the last weights are not a high-rate draw
    (core.training: resumable when `key` matches); the run, for its final checkpoint."""
    opt = torch.optim.Adam(net.parameters(), lr=learning_rate, fused=True)
    sched = one_cycle(opt, learning_rate, n_steps)
    states = {"model": net, "optimizer": opt, "schedule": sched}
    run = TrainingRun(out, key, what, n_steps, r.checkpoint_every, states)
    run.fit(net, lambda step: optimiser_step(opt, loss_at(step), sched))
    return run


def _crops(
    volumes: torch.Tensor, patch: tuple[int, int, int], batch: int, rng: np.random.Generator
) -> torch.Tensor:
    """`batch` random patches (B, C, *patch) from (N, C, *shape) volumes."""
    shape = volumes.shape[2:]
    out = []
    for _ in range(batch):
        i = int(rng.integers(len(volumes)))
        start = [int(rng.integers(s - p + 1)) for s, p in zip(shape, patch, strict=True)]
        sl = tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True))
        out.append(volumes[i][(slice(None), *sl)])
    return torch.stack(out)


def _kl(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    kl = 0.5 * (mu.pow(2) + sigma.pow(2) - torch.log(sigma.pow(2)) - 1)
    return kl.sum(dim=(1, 2, 3, 4)).mean()


def encode(
    ae: AutoencoderKL,
    volumes: torch.Tensor,
    conditions: torch.Tensor,
    scale: float,
    dev: torch.device,
) -> torch.Tensor:
    """Scaled latent means (N, latent_channels, ...) of (N, 1, *shape) volumes (the residuals
    over their (N, C, *shape) conditions' mask prior), on the CPU."""
    with torch.no_grad():
        res = volumes - ae.mask_prior(conditions)
        return torch.cat([ae.encode(v[None].to(dev))[0].float().cpu() for v in res]) * scale


def reconstruct(ae: AutoencoderKL, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
    """Encode (B, 1, *shape) normalised CTs to their latent means and decode (a SPADE decoder
    reads the (B, C, *shape) condition), over the mask prior."""
    prior = ae.mask_prior(condition)
    return ae.reconstruct(x - prior, *mask_args(ae, condition)) + prior


def train_autoencoder(
    volumes: np.ndarray,
    conditions: np.ndarray,
    spec: GridSpec,
    a: AutoencoderSettings,
    r: Runtime,
    out: Path,
    *,
    meta: dict,
    device: str = "cpu",
) -> None:
    """Train on (N, 1, *shape) normalised CTs (and their (N, C, *shape) mask conditions, which
    a SPADE decoder reads); write weights and the latent scale factor."""
    if tuple(volumes.shape[2:]) != spec.shape:
        raise InputError(out, f"volumes are {volumes.shape[2:]}, expected {spec.shape}")
    if any(p > s for p, s in zip(a.patch, spec.shape, strict=True)):
        raise InputError("config synth3d.autoencoder.patch", f"{a.patch} exceeds {spec.shape}")
    _divisible("config synth3d.shape and autoencoder.patch", [*spec.shape, *a.patch], a.channels)
    torch.manual_seed(r.seed)
    dev = pick_device(device, reproducible=True)
    use_ckpt = r.activation_checkpointing and dev.type == "cuda"
    net = build_autoencoder(a, conditions.shape[1], checkpointing=use_ckpt).to(dev)
    if a.mask_prior:
        w = fit_mask_prior(volumes, conditions)
        net.mask_prior.weights.copy_(torch.as_tensor(w))
        span = spec.hu_range[1] - spec.hu_range[0]
        terms = ", ".join(f"{n} {v * span:+.0f}" for n, v in zip(spec.channels, w[1:], strict=True))
        log.info("mask prior: %.0f HU, %s", spec.hu_range[0] + w[0] * span, terms)
    x_all, c_all = torch.as_tensor(volumes), torch.as_tensor(conditions)
    xc_all = torch.cat([x_all - net.mask_prior(c_all), c_all], dim=1)  # residuals

    def loss_at(step: int) -> torch.Tensor:
        rng = rng_for(r.seed, "synth3d-ae", step)
        xc = _crops(xc_all, a.patch, a.batch_size, rng).to(dev)
        x, c = xc[:, :1], xc[:, 1:]
        torch.manual_seed(int(rng.integers(2**62)))  # the latent sampling noise
        with _autocast(dev, r.mixed_precision):
            if a.sample_posterior:
                rec, mu, sigma = net(x, *mask_args(net, c))
            else:
                mu, sigma = net.encode(x)
                rec = net.decode(mu, *mask_args(net, c))
        return F.l1_loss(rec.float(), x) + a.kl_weight * _kl(mu.float(), sigma.float())

    key = {"digest": _digest(spec, a, r), "meta": meta}
    run = _fit(net, a.steps, a.learning_rate, loss_at, out, key, r, "synth3d autoencoder training")
    scale = float(1 / encode(net, x_all, c_all, 1.0, dev).std())
    final = {
        "model": net.state_dict(),
        "mask_prior": net.mask_prior.weights.tolist(),
        "scale_factor": scale,
        "grid": asdict(spec),
        "autoencoder": asdict(a),
        "meta": meta,
    }
    run.finish(final)
    log.info("latent scale factor %.3f (latent std %.3f)", scale, 1 / scale)


def _spec(d: dict) -> GridSpec:
    return GridSpec(
        shape=tuple(d["shape"]),
        spacing_mm=d["spacing_mm"],
        hu_range=tuple(d["hu_range"]),
        body_hu=d["body_hu"],
        groups=tuple((n, tuple(ids)) for n, ids in d["groups"]),
        bone=tuple(d["bone"]),
    )


def load_autoencoder(
    path: str | os.PathLike,
) -> tuple[AutoencoderKL | SPADEAutoencoderKL, float, GridSpec, AutoencoderSettings, dict]:
    """Weights (eval mode, CPU), latent scale factor, grid and settings of a trained autoencoder."""
    ckpt = load_final(path, "synth3d autoencoder", {"model", "scale_factor", "grid", "autoencoder"})
    a = _fields(AutoencoderSettings, ckpt["autoencoder"])
    spec = _spec(ckpt["grid"])
    net = restore(build_autoencoder(a, len(spec.channels)), ckpt, torch.device("cpu"))
    if "mask_prior" in ckpt:
        net.mask_prior.weights.copy_(torch.as_tensor(ckpt["mask_prior"]))
    return net, float(ckpt["scale_factor"]), spec, a, ckpt.get("meta", {})


def _target(sched: DDPMScheduler, z: torch.Tensor, noise: torch.Tensor, t: torch.Tensor):
    if sched.prediction_type == "sample":
        return z
    if sched.prediction_type == "v_prediction":
        return sched.get_velocity(z, noise, t)
    return noise


def train_diffusion(
    autoencoder: str | os.PathLike,
    volumes: np.ndarray,
    conditions: np.ndarray,
    d: DiffusionSettings,
    r: Runtime,
    out: Path,
    *,
    meta: dict,
    device: str = "cpu",
) -> None:
    """Train the latent UNet on (N, 1, *shape) CTs with their (N, C, *shape) mask conditions.
    The frozen autoencoder's scaled latent means are computed once (as MAISI does)."""
    ae, scale, spec, a, _ = load_autoencoder(autoencoder)
    torch.manual_seed(r.seed)
    dev = pick_device(device, reproducible=True)
    z_all = encode(ae.to(dev), torch.as_tensor(volumes), torch.as_tensor(conditions), scale, dev)
    c_all = latent_condition(torch.as_tensor(conditions), downsampling(a))
    _divisible("config synth3d.shape / the autoencoder's downsampling", z_all.shape[2:], d.channels)
    unet = build_unet(a, d, conditions.shape[1]).to(dev)
    sched = noise_schedule(d)
    inferer = DiffusionInferer(sched)
    n = len(z_all)

    def loss_at(step: int) -> torch.Tensor:
        rng = rng_for(r.seed, "synth3d-ldm", step)
        idx = np.sort(rng.choice(n, size=d.batch_size, replace=n < d.batch_size))
        gen = _generator(rng)
        z = z_all[idx]
        noise = torch.randn(z.shape, generator=gen)
        t = torch.randint(0, d.timesteps, (len(idx),), generator=gen)
        with _autocast(dev, r.mixed_precision):
            pred = inferer(
                inputs=z.to(dev),
                diffusion_model=unet,
                noise=noise.to(dev),
                timesteps=t.to(dev),
                condition=c_all[idx].to(dev),
                mode="concat",
            )
        return F.mse_loss(pred.float(), _target(sched, z, noise, t).to(dev))

    key = {"digest": _digest(spec, a, d, r), "meta": meta, "scale": scale}
    run = _fit(unet, d.steps, d.learning_rate, loss_at, out, key, r, "synth3d diffusion training")
    final = {"model": unet.state_dict(), "diffusion": asdict(d), "n_condition": conditions.shape[1]}
    run.finish({**final, "meta": meta})


class Synth3D:
    """A trained autoencoder + latent UNet pair that turns mask conditions into CTs; without a
    diffusion model, the decoder alone (every latent at zero, the prior's mean): the control
    `synth3d_nolatent`."""

    def __init__(
        self,
        autoencoder: str | os.PathLike,
        diffusion: str | os.PathLike | None,
        *,
        device: str = "auto",
    ):
        self.ae, self.scale, self.spec, self.a, self.meta = load_autoencoder(autoencoder)
        self.device = pick_device(device, reproducible=True)
        self.ae.to(self.device)
        self.unet = None
        if diffusion is None:
            return
        ckpt = load_final(diffusion, "synth3d diffusion", {"model", "diffusion", "n_condition"})
        if ckpt["n_condition"] != len(self.spec.channels):
            raise InputError(
                diffusion,
                f"{ckpt['n_condition']} condition channels, the autoencoder's grid "
                f"has {len(self.spec.channels)}",
            )
        self.d = _fields(DiffusionSettings, ckpt["diffusion"])
        self.unet = restore(build_unet(self.a, self.d, ckpt["n_condition"]), ckpt, self.device)

    @torch.no_grad()
    def generate(
        self,
        conditions: np.ndarray,
        *,
        sampler: str | None,
        steps: int | None,
        rng_key: tuple,
        batch_size: int = 2,
        mixed_precision: bool = True,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """(N, C, *shape) conditions -> (N, *shape) normalised CTs in [0, 1]; volume i's noise
        comes from `rng_key` + (i,): the same key, conditions and batch size give the same
        volumes. Without a diffusion model the decoder draws each from a zero latent."""
        f = downsampling(self.a)
        out = []
        for b, start in enumerate(range(0, len(conditions), batch_size)):
            cond = torch.as_tensor(conditions[start : start + batch_size], dtype=torch.float32)
            c = latent_condition(cond, f)
            if self.unet is None:  # the decoder alone, every latent at the prior's mean
                z = torch.zeros(len(c), self.a.latent_channels, *c.shape[2:], device=self.device)
                with _autocast(self.device, mixed_precision):
                    x = self.ae.decode(z, *mask_args(self.ae, cond.to(self.device)))
            else:
                torch.manual_seed(int(rng_for(*rng_key, "ddpm", b).integers(2**62)))  # DDPM's
                x = self._sample(
                    cond,
                    c,
                    sampler,
                    steps,
                    [rng_for(*rng_key, start + i) for i in range(len(c))],
                    mixed_precision,
                )
            x = x.float() + self.ae.mask_prior(cond.to(self.device))
            out.append(x.clamp(0, 1)[:, 0].cpu().numpy())
            if progress is not None:
                progress.update(len(c))
        return np.concatenate(out)

    def _sample(
        self,
        cond: torch.Tensor,
        c: torch.Tensor,
        sampler: str,
        steps: int,
        rngs: list[np.random.Generator],
        mixed_precision: bool,
    ) -> torch.Tensor:
        """One batch of the latent diffusion model's samples for full-resolution conditions
        `cond` (`c` on the latent grid), decoded; each volume's starting noise from its rng."""
        inferer = LatentDiffusionInferer(noise_schedule(self.d), scale_factor=self.scale)
        shape = (self.a.latent_channels, *c.shape[2:])
        noise = torch.stack([torch.randn(shape, generator=_generator(r)) for r in rngs])
        with _autocast(self.device, mixed_precision):
            return inferer.sample(
                input_noise=noise.to(self.device),
                autoencoder_model=self.ae,
                diffusion_model=self.unet,
                scheduler=make_sampler(sampler, steps, self.d),
                conditioning=c.to(self.device),
                mode="concat",
                verbose=False,
                seg=cond.to(self.device),  # read by a SPADE decoder only
            )
