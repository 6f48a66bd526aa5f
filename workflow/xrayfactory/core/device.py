"""Where tensors run: `auto` picks CUDA when present, so GPU paths are chosen at run time."""

from __future__ import annotations

import os

import torch


def pick_device(name: str, *, reproducible: bool = False) -> torch.device:
    """'auto' selects CUDA when present. `reproducible` (trainers and generators): on CUDA,
    deterministic kernels, so that one seed gives the same numbers on one GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if reproducible and dev.type == "cuda":
        deterministic_kernels()
    return dev


def deterministic_kernels() -> None:
    """Deterministic kernels where torch has them (cuDNN attention's backward among them) and
    no cuDNN autotuning; an op without one warns. cuBLAS reads its workspace setting when the
    process first calls it, so this runs before any CUDA work. The CPU kernels that our
    training loops use are deterministic already."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
