"""The synth2d control `real_resized`: the `real` arm's images taken down to the synth2d image
size and back up, so the gap between `real` and `synth2d` that the image size alone makes is
measured (issue 14)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


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
