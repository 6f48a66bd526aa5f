"""Line integrals of multi-channel volumes along the rays of projection matrices (torch).

The geometric core both image-formation models use. Rays come from P alone (source = null
space of P; pixel (col, row) -> direction M^-1 [col, row, 1]). Integration is Joseph's method:
each ray steps through the volume slice by slice along the voxel axis on which its direction, in
voxel units, has the largest component (so consecutive samples are at most one voxel apart in
every axis) and interpolates bilinearly inside each slice. The pixels of a view are grouped by
stepping axis and each group is one batched 2D `grid_sample` over that axis's slice stack (far
faster than 3D trilinear sampling on CPU, and exact for the piecewise-linear volume along the
stepping axis). `oversample` inserts linearly interpolated sub-slices. Memory is bounded by
processing slices in chunks of at most `max_samples` samples.

`RayVolume` prepares a volume once and serves every later call: the material channels are
computed from the stored data (C order; integer HU as int16) slab by slab, channels without
material are dropped, a channel whose material fills a small box (metal) is cast over that box
alone, and the slice-major stacks are made on first use and kept within `cache_bytes`: the
stepping axis of most rays gets its sub-slices made in its stack, the other axes (the edge rays
of wide fans) interpolate sub-slices while sampling (half the memory). Rays that point away
from the slab of slices are not sampled, nor those that pass beside the slices of a chunk
(about a quarter of the samples when the detector covers the body).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

Materials = Callable[[torch.Tensor], torch.Tensor]
# a channel whose material box holds less than this fraction of the volume is cast on its own
SPARSE_FRACTION = 0.25
# slices per grid_sample call at most: the rays that pass beside them are left out per call
CHUNK_SLICES = 32


def pixel_rays(p: torch.Tensor, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source (3,) and per-pixel ray direction (rows*cols, 3), world frame, for one P."""
    minv = torch.linalg.inv(p[:, :3])
    source = -(minv @ p[:, 3])
    r, c = torch.meshgrid(
        torch.arange(rows, dtype=p.dtype, device=p.device),
        torch.arange(cols, dtype=p.dtype, device=p.device),
        indexing="ij",
    )
    pix = torch.stack(
        [c.reshape(-1), r.reshape(-1), torch.ones(rows * cols, dtype=p.dtype, device=p.device)], -1
    )
    return source, pix @ minv.T


@dataclass(frozen=True)
class _Group:
    """Channels cast together over one voxel box (start index and size per axis)."""

    channels: list[int]
    start: np.ndarray
    size: np.ndarray


class RayVolume:
    """Material channels of a volume, prepared once for any number of `integrals` calls.

    `data` is (D, I, J, K) (e.g. D = 1: Hounsfield units); `materials` maps (D, ...) to
    (C, ...) per voxel (elementwise); without it the data are the channels. The cached stacks
    stay within `cache_bytes` (one stack larger than that is still made, and dropped when the
    next is needed); 1.5 GiB holds, for a 512 x 512 x 133 chest CT, the proxy-real model's
    2x oversampled stack and the plain stack of a second axis."""

    def __init__(
        self,
        data: torch.Tensor,
        affine: np.ndarray,
        materials: Materials | None = None,
        *,
        oversample: int = 1,
        cache_bytes: int = 3 << 29,
        slab_voxels: int = 1 << 20,
    ):
        self.data = data.contiguous()
        self.materials = materials or (lambda x: x)
        self.oversample = oversample
        self.cache_bytes = cache_bytes
        self._slab = max(1, slab_voxels // max(1, self.data[0, 0].numel()))
        self._inv = torch.as_tensor(np.linalg.inv(np.asarray(affine, float)), dtype=torch.float64)
        self.n_channels, self.groups = self._group_channels()
        self._stacks: OrderedDict[tuple[int, int, int], torch.Tensor] = OrderedDict()

    @classmethod
    def from_hu(
        cls, hu: np.ndarray, affine: np.ndarray, materials: Materials, device: torch.device, **kw
    ) -> RayVolume:
        """A CT in HU (I, J, K) with `materials` of an (I, J, K) HU tensor; kept as int16 when
        that is exact (CTs store integer HU: half the memory of float32)."""
        data = torch.as_tensor(hu, device=device)
        small = data.to(torch.int16)
        if torch.equal(small.to(data.dtype), data):
            data = small
        return cls(data[None], affine, lambda x: materials(x[0].float()), **kw)

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def cached_bytes(self) -> int:
        """Bytes held by the cached slice stacks."""
        return sum(s.nbytes for s in self._stacks.values())

    def _group_channels(self) -> tuple[int, list[_Group]]:
        """Channel count and groups: channels holding no material are left out; dense ones are
        cast together over the union of their boxes, sparse ones each over its own box."""
        shape = np.array(self.data.shape[1:])
        lo = hi = None
        for s0 in range(0, shape[0], self._slab):
            ch = self.materials(self.data[:, s0 : s0 + self._slab]) != 0
            if lo is None:
                lo = np.full((len(ch), 3), np.iinfo(np.int64).max)
                hi = np.full((len(ch), 3), -1)
            for axis in range(3):
                dims = [d for d in (1, 2, 3) if d != axis + 1]
                hit = ch.any(dim=dims[1]).any(dim=dims[0]).cpu().numpy()  # (C, length)
                for c in np.flatnonzero(hit.any(1)):
                    idx = np.flatnonzero(hit[c]) + (s0 if axis == 0 else 0)
                    lo[c, axis] = min(lo[c, axis], idx[0])
                    hi[c, axis] = max(hi[c, axis], idx[-1])
        assert lo is not None and hi is not None
        held = [c for c in range(len(lo)) if hi[c, 0] >= 0]
        # one voxel of margin: the box's zero padding then equals the volume's own zeros
        lo, hi = np.maximum(lo - 1, 0), np.minimum(hi + 1, shape - 1)
        dense = [c for c in held if np.prod(hi[c] - lo[c] + 1) >= SPARSE_FRACTION * shape.prod()]
        groups = []
        if dense:
            start, stop = lo[dense].min(0), hi[dense].max(0) + 1
            groups.append(_Group(dense, start, stop - start))
        for c in held:
            if c not in dense:
                groups.append(_Group([c], lo[c], hi[c] - lo[c] + 1))
        return len(lo), groups

    def _stack(self, g: int, axis: int, o: int) -> torch.Tensor:
        """Group `g`'s slice-major (S, C, A, B) stack along `axis` with `o` - 1 interpolated
        sub-slices after every slice but the last; cached."""
        key = (g, axis, o)
        if key in self._stacks:
            self._stacks.move_to_end(key)
            return self._stacks[key]
        group = self.groups[g]
        box = self.data[
            :, *(slice(int(a), int(a + n)) for a, n in zip(group.start, group.size, strict=True))
        ]
        other = [a for a in (0, 1, 2) if a != axis]
        n = int(group.size[axis])
        need = ((n - 1) * o + 1) * len(group.channels) * int(np.prod(group.size[other])) * 4
        while self._stacks and self.cached_bytes + need > self.cache_bytes:
            self._stacks.popitem(last=False)
        stack = torch.empty(
            (n - 1) * o + 1,
            len(group.channels),
            *(int(group.size[a]) for a in other),
            dtype=torch.float32,
            device=self.device,
        )
        for s0 in range(0, n, self._slab):
            s1 = min(n, s0 + self._slab)
            # one slice beyond the slab for the sub-slices between it and the next
            slab = self.materials(box.narrow(axis + 1, s0, min(n, s1 + 1) - s0))[group.channels]
            slab = slab.permute(axis + 1, 0, other[0] + 1, other[1] + 1)
            stack[s0 * o : (s1 - 1) * o + 1 : o] = slab[: s1 - s0]
            inner = min(s1, n - 1) - s0  # slices of the slab followed by another slice
            for f in range(1, o):
                stack[s0 * o + f : (s0 + inner - 1) * o + f + 1 : o] = torch.lerp(
                    slab[:inner], slab[1 : inner + 1], f / o
                )
        self._stacks[key] = stack
        return stack

    def integrals(
        self, projections: np.ndarray, rows: int, cols: int, *, max_samples: int = 1 << 22
    ) -> torch.Tensor:
        """(V, C, rows, cols) integrals of every channel along the rays of (V, 3, 4)
        `projections`, in channel units x mm (zero for channels without material).

        The stepping axis of most rays casts from a stack with its sub-slices made (fastest);
        the few rays of the other axes (the edges of wide fans) from a stack without them,
        interpolating sub-slices as they sample (half the memory), unless it is cached."""
        dev = self.device
        inv = self._inv.to(dev)
        ps = torch.as_tensor(
            np.asarray(projections, float).reshape(-1, 3, 4), dtype=torch.float64, device=dev
        )
        out = torch.zeros(len(ps), self.n_channels, rows * cols, dtype=torch.float32, device=dev)
        rays = []
        for p in ps:
            source, dirs = pixel_rays(p, rows, cols)
            d_vox = dirs @ inv[:3, :3].T
            rays.append((inv[:3, :3] @ source + inv[:3, 3], d_vox, dirs.norm(dim=-1)))
        axes = [d_vox.abs().argmax(-1) for _, d_vox, _ in rays]
        counts = sum(torch.bincount(a, minlength=3).cpu() for a in axes)
        used = [int(a) for a in counts.argsort(descending=True) if counts[a] > 0]
        o = self.oversample
        for g, group in enumerate(self.groups):
            start = torch.as_tensor(group.start, dtype=torch.float64, device=dev)
            channels = torch.as_tensor(group.channels, device=dev)[:, None]
            for axis in used:
                made = o if axis == used[0] or (g, axis, o) in self._stacks else 1
                stack = self._stack(g, axis, made)
                for v, (s_vox, d_vox, length) in enumerate(rays):
                    idx = (axes[v] == axis).nonzero().squeeze(1)
                    if len(idx) == 0:
                        continue
                    d = d_vox[idx]
                    # mm of ray per unit step of the stepping axis, divided by the sub-slices
                    step_mm = length[idx] / d[:, axis].abs() / o
                    sums = _integrate(stack, made, o, axis, s_vox - start, d, max_samples)
                    out[v, channels, idx[None]] = sums * step_mm.float()
                del stack  # an evicted stack is freed before the next one is made
        return out.view(len(ps), self.n_channels, rows, cols)


def _passes(
    stack: torch.Tensor, made: int, o: int
) -> list[tuple[torch.Tensor, torch.Tensor, float | None]]:
    """The slice stacks a cast samples, each with its slices' positions (voxels along the
    axis) and, for sub-slices interpolated while sampling, the weight of the next slice: a
    stack whose `made` = `o` sub-slices are made is one pass; a plain one is one pass over its
    slices and one per sub-slice, over a view that pairs each slice's channels with the next
    slice's (no copy)."""
    dev = stack.device
    if made == o:
        return [(stack, torch.arange(len(stack), dtype=torch.float64, device=dev) / o, None)]
    n, c = stack.shape[:2]
    pairs = stack.as_strided((n - 1, 2 * c, *stack.shape[2:]), stack.stride())
    base = torch.arange(n, dtype=torch.float64, device=dev)
    return [(stack, base, None)] + [(pairs, base[:-1] + f / o, f / o) for f in range(1, o)]


def _integrate(
    stack: torch.Tensor,
    made: int,
    o: int,
    axis: int,
    s_vox: torch.Tensor,
    d_vox: torch.Tensor,
    max_samples: int,
) -> torch.Tensor:
    """(C, N) sums over the slices and `o` - 1 sub-slices per slice of `stack` (along `axis`,
    `made` of them made in the stack) of the bilinear samples on the rays `d_vox` (N, 3) from
    `s_vox`; times each ray's mm per sub-slice, they are its line integrals."""
    n_ch = stack.shape[1]
    total = torch.zeros(n_ch, len(d_vox), dtype=stack.dtype, device=stack.device)
    s_a = float(s_vox[axis])
    # a source outside the slab of slices (a C-arm's always is) has every slice in front of
    # the rays that point into the slab and behind those that point away: cast the former only
    outside = s_a < 0 or s_a > (len(stack) - 1) / made
    keep = torch.ones(len(d_vox), dtype=torch.bool, device=stack.device)
    if outside:
        keep = torch.sign(d_vox[:, axis]) == (1.0 if s_a < 0 else -1.0)
    shape = stack.shape[2:]
    other = [a for a in (0, 1, 2) if a != axis]
    # normalised (x, y) in each slice (x along other[1], y along other[0]) is affine in the
    # slice position: xy = base + (pos - s_a) * slope, per ray
    norm = torch.tensor(
        [2.0 / max(shape[1] - 1, 1), 2.0 / max(shape[0] - 1, 1)],
        dtype=torch.float64,
        device=stack.device,
    )
    base = s_vox[[other[1], other[0]]] * norm - 1.0
    slope = d_vox[:, [other[1], other[0]]] / d_vox[:, axis, None] * norm
    enter, leave = _within(base, slope, 1.0 + norm)
    keep &= (enter < (len(stack) - 1) / made - s_a) & (leave > -s_a)
    rays = keep.nonzero().squeeze(1)
    if len(rays) == 0:
        return total
    da = d_vox[rays, axis]
    base, slope = base.to(stack.dtype), slope[rays].to(stack.dtype)
    enter, leave = enter[rays].to(stack.dtype), leave[rays].to(stack.dtype)
    sign = torch.sign(da).to(stack.dtype)
    sums = torch.zeros(n_ch, len(rays), dtype=stack.dtype, device=stack.device)
    chunk = max(1, min(max_samples // len(rays), CHUNK_SLICES))
    # flat (x, y, x, y, ...) rows into one buffer: a fresh grid per chunk costs more in page
    # faults, and a broadcast over pairs more in strides, than the arithmetic
    buffer = torch.empty(
        min(chunk, len(stack)) * 2 * len(rays), dtype=stack.dtype, device=stack.device
    )
    row = base.repeat(len(rays))
    for slices, pos, weight in _passes(stack, made, o):
        offsets = (pos - s_a).to(stack.dtype)
        step = chunk if weight is None else max(1, chunk // 2)  # paired slices: 2x channels
        for start in range(0, len(pos), step):
            off = offsets[start : start + step]
            # the rays that come near these slices (a quarter of the samples are beside them)
            sel = ((enter < off[-1]) & (leave > off[0])).nonzero().squeeze(1)
            if len(sel) == 0:
                continue
            n = len(off)
            xy = torch.addcmul(
                row[: 2 * len(sel)],
                off[:, None],
                slope[sel].reshape(1, -1),
                out=buffer[: n * 2 * len(sel)].view(n, -1),
            ).view(n, -1, 2)
            if not outside:
                behind = (off[:, None] * sign[sel][None]) <= 0  # slice behind the source
                xy.masked_fill_(behind[..., None], 3.0)
            vals = (
                F.grid_sample(
                    slices[start : start + step],
                    xy[:, None],
                    mode="bilinear",
                    padding_mode="zeros",
                    align_corners=True,
                )
                .sum(0)
                .flatten(1)
            )
            if weight is not None:  # a sub-slice between each slice and the next
                vals = torch.lerp(vals[:n_ch], vals[n_ch:], weight)
            sums.index_add_(1, sel, vals)
    total[:, rays] = sums
    return total


def _within(
    base: torch.Tensor, slope: torch.Tensor, beyond: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per ray, the open range of slice offsets over which its normalised in-slice position
    base + offset * slope is less than a voxel beyond the slices' edges (|xy| < `beyond`):
    outside it, every sample reads zero padding."""
    lo, hi = (-beyond - base) / slope, (beyond - base) / slope  # +-inf where slope is 0
    return torch.minimum(lo, hi).amax(1), torch.maximum(lo, hi).amin(1)


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
    in channel units x mm. `affine` maps voxel indices to world mm; `projections` is (V, 3, 4).
    A one-off `RayVolume`: prepare one to render a volume more than once."""
    vol = RayVolume(channels, affine, oversample=oversample)
    return vol.integrals(projections, rows, cols, max_samples=max_samples)
