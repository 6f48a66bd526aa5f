"""Control arms: what each generator's surroundings alone do to the training data.

The gap between `drr` and `synth3d` mixes the generative model with the grid it works on, the
HU window it is trained in and its autoencoder's blur. Each control keeps the real CTs and
applies one of those (synth2d's control is `synth2d.controls`):

* `drr_grid`: DRRs of the real training CTs resampled to the synth3d model grid and clipped to
  its HU window, with the `drr` arm's views;
* `drr_recon`: DRRs of the fold's autoencoder reconstructions of those CTs (grid, window and
  autoencoder), with the `drr` arm's views;
"""

from __future__ import annotations

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
from xrayfactory.synth3d.model import mask_args


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
    dev = pick_device(device)
    x, cond = (torch.as_tensor(v)[None].to(dev) for v in training_pair(ct, seg, spec))
    ae = autoencoder.to(dev)
    rec = ae.reconstruct(x, *mask_args(ae, cond))[0, 0].float().cpu().numpy()
    return Volume(to_hu(rec, spec), model_affine(ct, spec))
