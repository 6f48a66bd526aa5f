"""Checkpoints: atomic saves, safe loads, the one loader of trained models, SIGTERM as a flag.

A job that receives SIGTERM (pre-emption, `scancel`, a time limit) finishes its current step,
saves its state and exits with PREEMPTED_EXIT; rerunning it resumes from that state
(core.training).
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
from pathlib import Path

import torch

from xrayfactory.core.atomic import atomic_path
from xrayfactory.core.errors import InputError

log = logging.getLogger("xrayfactory")

PREEMPTED_EXIT = 143  # 128 + SIGTERM, as a shell reports a job killed by SIGTERM


class SigtermFlag:
    """Turns SIGTERM into a flag checked between steps; `restore()` reinstates the old handler."""

    def __init__(self) -> None:
        self.requested = False
        self._old = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        log.warning("SIGTERM received: saving a checkpoint and exiting")
        self.requested = True

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self._old)


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save, atomically (an interrupted save never leaves a truncated file)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike, kind: str) -> dict:
    """torch.load with weights_only=True (no code is unpickled), on the CPU."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise InputError(path, f"not a readable {kind} checkpoint: {e}") from e


def load_final(path: str | os.PathLike, kind: str, required: set[str]) -> dict:
    """A trained model's final checkpoint (`kind`: detector, synth2d generator, ...), with the
    keys its loader needs."""
    ckpt = load_checkpoint(path, kind)
    missing = sorted(required - set(ckpt))
    if missing:
        raise InputError(path, f"not a final {kind} checkpoint (missing {', '.join(missing)})")
    return ckpt


def restore(net: torch.nn.Module, ckpt: dict, device: torch.device) -> torch.nn.Module:
    """`net` with the checkpoint's weights, on `device`, in eval mode."""
    net.load_state_dict(ckpt["model"])
    return net.to(device).eval()
