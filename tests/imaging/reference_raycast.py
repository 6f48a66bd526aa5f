"""The ray caster as it was before volumes were prepared (xrayfactory 7c1ad2d, verbatim but for
this docstring): the reference the prepared `RayVolume` must reproduce. Each call re-strides
the whole volume and masks slices behind the source per ray."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from xrayfactory.imaging.raycast import pixel_rays


def _slices(
    channels: torch.Tensor, axis: int, oversample: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Volume as a stack of 2D slices along `axis` -> (S, C, A, B) and the slice positions."""
    other = [a for a in (0, 1, 2) if a != axis]
    stack = channels.permute(axis + 1, 0, other[0] + 1, other[1] + 1)
    n = stack.shape[0]
    pos = torch.arange(n, dtype=torch.float64, device=channels.device)
    if oversample > 1 and n > 1:
        frac = torch.arange(oversample, dtype=stack.dtype, device=stack.device) / oversample
        a, b = stack[:-1].unsqueeze(1), stack[1:].unsqueeze(1)
        shaped = frac.view(1, -1, 1, 1, 1)
        stack = torch.cat([((1 - shaped) * a + shaped * b).flatten(0, 1), stack[-1:]])
        pos = torch.cat([(pos[:-1, None] + frac.double()[None].to(pos.device)).flatten(), pos[-1:]])
    return stack.contiguous(), pos


def _voxel_rays(
    p: torch.Tensor, inv: torch.Tensor, rows: int, cols: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source (3,) and ray directions (rows*cols, 3) in voxel indices, and the world length
    (mm) of each direction vector (rows*cols,)."""
    source, dirs = pixel_rays(p, rows, cols)
    return inv[:3, :3] @ source + inv[:3, 3], dirs @ inv[:3, :3].T, dirs.norm(dim=-1)


def _integrate(
    stack: torch.Tensor,
    pos: torch.Tensor,
    axis: int,
    s_vox: torch.Tensor,
    d_vox: torch.Tensor,
    max_samples: int,
) -> torch.Tensor:
    """(C, N) sums over the slices of `stack` (along `axis`) of the bilinear samples on the rays
    `d_vox` (N, 3) from `s_vox`; times each ray's mm per slice, they are its line integrals."""
    shape = stack.shape[2:]
    other = [a for a in (0, 1, 2) if a != axis]
    da = d_vox[:, axis]
    # normalised (x, y) in each slice (x along other[1], y along other[0]) is affine in the
    # slice position: xy = base + (pos - s_a) * slope, per ray
    norm = torch.tensor(
        [2.0 / max(shape[1] - 1, 1), 2.0 / max(shape[0] - 1, 1)],
        dtype=torch.float64,
        device=stack.device,
    )
    base = (s_vox[[other[1], other[0]]] * norm - 1.0).to(stack.dtype)
    slope = (d_vox[:, [other[1], other[0]]] / da[:, None] * norm).to(stack.dtype)
    sign = torch.sign(da).to(stack.dtype)
    offsets = (pos - s_vox[axis]).to(stack.dtype)
    total = torch.zeros(stack.shape[1], len(d_vox), dtype=stack.dtype, device=stack.device)
    chunk = max(1, max_samples // len(d_vox))
    for start in range(0, len(pos), chunk):
        off = offsets[start : start + chunk]
        xy = base + off[:, None, None] * slope[None]
        behind = (off[:, None] * sign[None]) <= 0  # slice behind the source for this ray
        xy.masked_fill_(behind[..., None], 3.0)
        vals = F.grid_sample(
            stack[start : start + chunk],
            xy[:, None],
            mode="bilinear",
            padding_mode="zeros",
            align_corners=True,
        )
        total += vals.sum(0).flatten(1)
    return total


def line_integrals(
    channels: torch.Tensor,
    affine: np.ndarray,
    projections: np.ndarray,
    rows: int,
    cols: int,
    *,
    oversample: int = 1,
    max_samples: int = 1 << 22,
) -> torch.Tensor:
    """Integrate (C, I, J, K) `channels` (per mm) along every ray: returns (V, C, rows, cols),
    in channel units x mm. `affine` maps voxel indices to world mm; `projections` is (V, 3, 4)."""
    dev = channels.device
    inv = torch.as_tensor(np.linalg.inv(affine), dtype=torch.float64, device=dev)
    ps = torch.as_tensor(
        np.asarray(projections, float).reshape(-1, 3, 4), dtype=torch.float64, device=dev
    )
    out = torch.zeros(len(ps), channels.shape[0], rows * cols, dtype=channels.dtype, device=dev)
    # one re-strided copy of the volume at a time: each axis's stack serves all views
    axes = [_voxel_rays(p, inv, rows, cols)[1].abs().argmax(-1).to(torch.uint8) for p in ps]
    for axis in sorted({int(a) for per_view in axes for a in per_view.unique()}):
        stack, pos = _slices(channels, axis, oversample)
        for v, p in enumerate(ps):
            idx = (axes[v] == axis).nonzero().squeeze(1)
            if len(idx) == 0:
                continue
            s_vox, d_vox, length = _voxel_rays(p, inv, rows, cols)
            d_vox, length = d_vox[idx], length[idx]
            # mm of ray per unit step of the stepping axis, divided by the sub-slice density
            step_mm = length / d_vox[:, axis].abs() / oversample
            sums = _integrate(stack, pos, axis, s_vox, d_vox, max_samples)
            out[v][:, idx] = sums * step_mm.to(out.dtype)
    return out.view(len(ps), channels.shape[0], rows, cols)
