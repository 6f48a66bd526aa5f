"""Periodic progress lines with rate and ETA, readable in Snakemake log files."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("xrayfactory")


class Progress:
    """Log `done/total`, rate and ETA at most every `interval` seconds (and at the end)."""

    def __init__(self, total: int, what: str, *, unit: str = "items", interval: float = 10.0):
        self.total, self.what, self.unit, self.interval = total, what, unit, interval
        self.done = 0
        self.start = self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.interval or self.done >= self.total:
            self.last = now
            elapsed = max(now - self.start, 1e-9)
            rate = self.done / elapsed
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            log.info(
                "%s: %d/%d %s (%.2f %s/s, elapsed %.0f s, ETA %.0f s)",
                self.what,
                self.done,
                self.total,
                self.unit,
                rate,
                self.unit,
                elapsed,
                eta,
            )
