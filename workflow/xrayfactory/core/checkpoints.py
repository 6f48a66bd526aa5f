"""Checkpoints for long training jobs on clusters: atomic saves, safe loads, SIGTERM as a flag.

A job that receives SIGTERM (pre-emption, `scancel`, a time limit) finishes its current step,
saves its state and exits with PREEMPTED_EXIT; rerunning it resumes from that state.
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


def load_checkpoint(path: str | os.PathLike) -> dict:
    """torch.load with weights_only=True (no code is unpickled), on the CPU."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise InputError(path, f"not a readable detector checkpoint: {e}") from e
