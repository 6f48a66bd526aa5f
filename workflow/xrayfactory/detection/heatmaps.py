"""Landmark heatmaps: Gaussian targets, and sub-pixel peaks with a found / not-found decision.

One channel per landmark; a landmark without a known position has an empty channel. The
detector decides found / not found from the peak value and position (detection.detector).
"""

from __future__ import annotations

import torch


def gaussian_heatmaps(
    landmarks: torch.Tensor, visible: torch.Tensor, rows: int, cols: int, sigma: float
) -> torch.Tensor:
    """(B, L, 2) pixel (col, row) + (B, L) visibility -> (B, L, rows, cols) targets in [0, 1]:
    the outer product of a row and a column Gaussian (rows + cols exponentials per map)."""
    r = torch.arange(rows, dtype=landmarks.dtype, device=landmarks.device)
    c = torch.arange(cols, dtype=landmarks.dtype, device=landmarks.device)
    gc = torch.exp(-((c - landmarks[..., 0, None]) ** 2) / (2 * sigma**2))
    gr = torch.exp(-((r - landmarks[..., 1, None]) ** 2) / (2 * sigma**2))
    gr = gr * visible[..., None].to(gr.dtype)
    return gr[..., :, None] * gc[..., None, :]


def peaks(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L, H, W) -> sub-pixel (col, row) peaks (B, L, 2) and peak values (B, L).

    The integer argmax is refined per axis by a parabola through the log of the peak and its
    two neighbours (exact for a Gaussian peak), limited to half a pixel."""
    b, n, h, w = heatmaps.shape
    flat = heatmaps.reshape(b * n, h * w)
    value, idx = flat.max(dim=1)
    row, col = idx // w, idx % w
    logs = torch.log(heatmaps.reshape(b * n, h, w).clamp(min=1e-6))
    k = torch.arange(b * n, device=heatmaps.device)

    def offset(prev: torch.Tensor, mid: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        curv = prev - 2 * mid + nxt
        off = torch.where(curv < -1e-9, 0.5 * (prev - nxt) / curv, torch.zeros_like(mid))
        return off.clamp(-0.5, 0.5)

    mid = logs[k, row, col]
    dc = offset(logs[k, row, (col - 1).clamp(min=0)], mid, logs[k, row, (col + 1).clamp(max=w - 1)])
    dr = offset(logs[k, (row - 1).clamp(min=0), col], mid, logs[k, (row + 1).clamp(max=h - 1), col])
    dc = torch.where((col > 0) & (col < w - 1), dc, torch.zeros_like(dc))
    dr = torch.where((row > 0) & (row < h - 1), dr, torch.zeros_like(dr))
    xy = torch.stack([col.to(heatmaps.dtype) + dc, row.to(heatmaps.dtype) + dr], dim=-1)
    return xy.reshape(b, n, 2), value.reshape(b, n)
