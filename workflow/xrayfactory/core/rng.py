"""Per-job random streams: one independent, reproducible generator per (seed, stage, key...)."""

from __future__ import annotations

import zlib

import numpy as np


def rng_for(seed: int, *keys: str | int) -> np.random.Generator:
    """An independent, reproducible random stream for (seed, stage, subject, ...)."""
    words = [int(seed)] + [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))
