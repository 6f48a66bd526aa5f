"""Control arms: what each generator's surroundings alone do to the training data.

The gap between `drr` and `synth3d` mixes the generative model with the grid it works on, the
HU window it is trained in and its autoencoder's blur. Each control keeps the real CTs and
applies one of those (synth2d's control is `synth2d.controls`):

* `drr_grid`: DRRs of the real training CTs resampled to the synth3d model grid and clipped to
  its HU window, with the `drr` arm's views;
* `drr_recon`: DRRs of the fold's autoencoder reconstructions of those CTs (grid, window and
  autoencoder), with the `drr` arm's views;

beside them `synth3d_nolatent` keeps synth3d's deformed masks and views and removes the latent
diffusion model: the decoder draws each CT from a zero latent (model.Synth3D without a
diffusion model). And `latent_use` says whether the autoencoder's decoder reads its latent at
all: if it does not, the latent diffusion model cannot change what the generator draws.
"""

from __future__ import annotations

import numpy as np
import torch

from xrayfactory.cohort.volumes import Volume
from xrayfactory.core.device import pick_device
from xrayfactory.synth3d.ctgrid import (
    GridSpec,
    grid_hu,
    model_affine,
    normalise_hu,
    to_hu,
    training_pair,
)
from xrayfactory.synth3d.model import mask_args, reconstruct


def on_model_grid(ct: Volume, spec: GridSpec) -> Volume:
    """The CT as the 3D generator learns it: on its model grid, HU clipped to its window."""
    hu = grid_hu(ct, spec)
    return Volume(to_hu(normalise_hu(hu.data, spec), spec), hu.affine)


@torch.no_grad()
def reconstructed(
    ct: Volume, seg: Volume, autoencoder: torch.nn.Module, spec: GridSpec, *, device: str = "auto"
) -> Volume:
    """The CT on the model grid after a synth3d autoencoder (encode to the latent mean, decode;
    a SPADE decoder reads the CT's own mask condition): what the 3D generator could at best
    reproduce of it."""
    dev = pick_device(device, reproducible=True)
    x, cond = (torch.as_tensor(v)[None].to(dev) for v in training_pair(ct, seg, spec))
    rec = reconstruct(autoencoder.to(dev), x, cond)[0, 0].float().cpu().numpy()
    return Volume(to_hu(rec, spec), model_affine(ct, spec))


@torch.no_grad()
def latent_use(
    hu: np.ndarray, cond: np.ndarray, autoencoder: torch.nn.Module, spec: GridSpec
) -> dict[str, float]:
    """How much a synth3d autoencoder's output depends on its latent, for a CT on the model grid
    (`hu`, and its (C, *shape) condition): the mean absolute HU error of its reconstruction
    (encoder's latent mean, decoded) and the mean absolute HU change of that reconstruction when
    the latent is set to zero, the prior's mean, both over the body (condition channel 0). A
    change near zero beside a large error means the decoder draws from the mask alone
    (posterior collapse), so the diffusion model's latents do not change the generated CTs.
    With a mask prior, also the error of the prior alone: what the network adds to it."""
    x = torch.as_tensor(normalise_hu(hu, spec))[None, None]
    c = torch.as_tensor(cond, dtype=torch.float32)[None]
    prior = autoencoder.mask_prior(c)
    mu = autoencoder.encode(x - prior)[0]
    rec, rec0 = (
        to_hu((autoencoder.decode(z, *mask_args(autoencoder, c)) + prior)[0, 0].numpy(), spec)
        for z in (mu, torch.zeros_like(mu))
    )
    body = cond[0] > 0.5
    truth = to_hu(x[0, 0].numpy(), spec)
    prior_err = np.abs(to_hu(prior[0, 0].numpy(), spec) - truth)[body].mean()
    return {
        "recon_mae_hu": float(np.abs(rec - truth)[body].mean()),
        "latent_effect_hu": float(np.abs(rec - rec0)[body].mean()),
        "mask_prior_mae_hu": float(prior_err if autoencoder.mask_prior.weights.any() else np.nan),
    }
