"""Detector training cost per step on the CPU: input size, and augmentation per step against
per block of steps (detection.detector.AUGMENT_BLOCK images per call).

    python benchmarks/detector_step.py [--epochs 20] [--threads 1] [--sizes 48 64]

Trains the demo's detector (config/config.yaml) on random images for a few epochs with each
setting and prints ms per step and the ratio to the first row. One thread, as the demo's
training jobs run; the absolute times vary between hosts, the ratios much less.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from xrayfactory.core.config import validate_config  # noqa: E402
from xrayfactory.core.images import Batch  # noqa: E402
from xrayfactory.detection.detector import AUGMENT_BLOCK, DetectorSettings, train  # noqa: E402


def ms_per_step(settings: DetectorSettings, n_images: int, block: int, out: Path) -> float:
    """Wall time of `train` per step with `block` images augmented per call."""
    g = torch.Generator().manual_seed(0)
    size = settings.image_size
    data = Batch(
        torch.rand(n_images, 1, size, size, generator=g),
        torch.rand(n_images, 9, 2, generator=g) * size,
        torch.ones(n_images, 9, dtype=torch.bool),
        1.0,
    )
    start = time.perf_counter()
    train(data, [f"L{k}" for k in range(9)], settings, out, meta={}, augment_block=block)
    steps = settings.epochs * (n_images // settings.batch_size)
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sizes", type=int, nargs="+", default=[48, 64])
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    logging.getLogger("xrayfactory").setLevel(logging.WARNING)  # no progress lines
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    demo = validate_config(config, REPO / "workflow" / "schemas" / "config.schema.yaml")["detector"]
    n = demo["train_images"]
    blocks = (("per step", demo["batch_size"]), ("per block", AUGMENT_BLOCK))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        warm = DetectorSettings.from_config({**demo, "epochs": 2}, 0)
        ms_per_step(warm, n, demo["batch_size"], Path(tmp) / "m.pt")  # first-call costs
        for size in a.sizes:
            s = DetectorSettings.from_config({**demo, "image_size": size, "epochs": a.epochs}, 0)
            for name, block in blocks:
                rows.append((size, name, ms_per_step(s, n, block, Path(tmp) / "m.pt")))
    print(f"| image size | augmentation | ms/step | ratio |  ({a.threads} thread(s), {n} images)")
    print("| --- | --- | --- | --- |")
    for size, name, ms in rows:
        print(f"| {size} | {name} | {ms:.1f} | {ms / rows[0][2]:.2f} |")


if __name__ == "__main__":
    main()
