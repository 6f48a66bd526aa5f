"""Where tensors run: `auto` picks CUDA when present, so GPU paths are chosen at run time."""

from __future__ import annotations

import torch


def pick_device(name: str) -> torch.device:
    """'auto' selects CUDA when present."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
