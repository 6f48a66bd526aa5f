"""Control arms: what each generator's surroundings alone do to the training data.

The gap between `drr` and `synth3d` mixes the generative model with the grid it works on, the
HU window it is trained in and its autoencoder's blur; the gap between `real` and `synth2d` mixes
it with the generator's image size. Each control keeps the real data and applies one of those:

* `drr_grid`: DRRs of the real training CTs resampled to the synth3d model grid and clipped to
  its HU window, with the `drr` arm's views;
* `drr_recon`: DRRs of the fold's autoencoder reconstructions of those CTs (grid, window and
  autoencoder), with the `drr` arm's views;
* `real_resized`: the `real` arm's images taken down to the synth2d image size and back up.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import AutoencoderKL

from xrayfactory.ctgrid import GridSpec, grid_hu, normalise_hu, to_hu
from xrayfactory.drr import pick_device
from xrayfactory.volumes import Volume


def on_model_grid(ct: Volume, spec: GridSpec) -> Volume:
    """The CT as the 3D generator learns it: on its model grid, HU clipped to its window."""
    hu = grid_hu(ct, spec)
    return Volume(to_hu(normalise_hu(hu.data, spec), spec), hu.affine)


@torch.no_grad()
def reconstructed(
    ct: Volume, autoencoder: AutoencoderKL, spec: GridSpec, *, device: str = "auto"
) -> Volume:
    """The CT on the model grid after a synth3d autoencoder (encode to the latent mean,
    decode): what the 3D generator could at best reproduce of it."""
    dev = pick_device(device)
    grid = on_model_grid(ct, spec)
    x = torch.as_tensor(normalise_hu(grid.data, spec))[None, None].to(dev)
    rec = autoencoder.to(dev).reconstruct(x)[0, 0].float().cpu().numpy()
    return Volume(to_hu(rec, spec), grid.affine)


def resized(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W) images down to size x size and back (antialiased bilinear, the resize the
    detector and the synth2d generator use): the detail a generator of that size cannot show."""
    x = torch.as_tensor(images, dtype=torch.float32)[:, None]
    h, w = images.shape[1:]
    small = F.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )
    back = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return back[:, 0].numpy().astype(images.dtype)
