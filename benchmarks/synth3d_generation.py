"""synth3d generation: seconds per volume and peak memory, at the configured grid and at
256 x 256 x 128, for the configured networks and for the schema's (paper-scale) defaults.

    python benchmarks/synth3d_generation.py [--config config/config.yaml] [--device cpu|cuda]
                                            [--large 256 256 128]

Each case runs in its own process (peak memory is per process: resident set on the CPU,
torch's peak allocation on a GPU) with freshly initialised networks of the given sizes: time
and memory do not depend on the weights. Generation = the configured sampler (DDIM steps) in
latent space + decoding, batch 1. Goal at paper scale: 256 x 256 x 128 within 24 GB of GPU memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from xrayfactory.core.checkpoints import save_checkpoint  # noqa: E402
from xrayfactory.core.config import validate_config  # noqa: E402
from xrayfactory.synth3d.ctgrid import GridSpec, grid_spec  # noqa: E402
from xrayfactory.synth3d.model import (  # noqa: E402
    Synth3D,
    autoencoder_settings,
    build_autoencoder,
    build_unet,
    diffusion_settings,
)

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
PAPER_SHAPE = [256, 256, 128]


def _condition(spec: GridSpec) -> np.ndarray:
    """A body ellipsoid and empty label groups: (1, C, *shape)."""
    axes = [np.linspace(-1, 1, n) for n in spec.shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    cond = np.zeros((1, len(spec.channels), *spec.shape), np.float32)
    cond[0, 0] = (x**2 + y**2 + z**2 <= 0.8).astype(np.float32)
    return cond


def run_case(case: dict) -> dict:
    """One generation in this process: seconds and peak memory."""
    section, device = case["section"], case["device"]
    spec = grid_spec(section)
    a, d = autoencoder_settings(section), diffusion_settings(section)
    with tempfile.TemporaryDirectory() as tmp:
        ae, ldm = Path(tmp) / "ae.pt", Path(tmp) / "ldm.pt"
        save_checkpoint(
            ae,
            {
                "model": build_autoencoder(a, len(spec.channels)).state_dict(),
                "scale_factor": 1.0,
                "grid": asdict(spec),
                "autoencoder": asdict(a),
            },
        )
        unet = build_unet(a, d, len(spec.channels))
        n = len(spec.channels)
        save_checkpoint(ldm, {"model": unet.state_dict(), "diffusion": asdict(d), "n_condition": n})
        model = Synth3D(ae, ldm, device=device)
    cond = _condition(spec)
    sampler = section["sampler"]
    if model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    model.generate(cond, sampler=sampler["kind"], steps=sampler["steps"], rng_key=(0,))
    if model.device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"seconds": time.perf_counter() - start, "peak_gib": peak, "device": model.device.type}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--large", type=int, nargs=3, default=PAPER_SHAPE, help="the large grid")
    p.add_argument("--case", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.case:
        print(json.dumps(run_case(json.loads(a.case))))
        return
    cfg = yaml.safe_load(Path(a.config).read_text())
    section = validate_config(cfg, SCHEMA, where=a.config)["synth3d"]
    paper = validate_config({}, SCHEMA)["synth3d"]
    paper["sampler"] = section["sampler"]
    cases = [
        ("configured", section, section["shape"]),
        ("configured", section, a.large),
        ("schema default", paper, a.large),
    ]
    print(f"sampler {section['sampler']['kind']}, {section['sampler']['steps']} steps, batch 1")
    print(
        f"{'networks':<16}{'grid':<16}{'latent':<14}{'device':<8}{'s/volume':>10}{'peak GiB':>10}"
    )
    failed = False
    for name, sec, shape in cases:
        sec = {**sec, "shape": shape}
        f = 2 ** (len(sec["autoencoder"]["channels"]) - 1)
        latent = "x".join(str(s // f) for s in shape)
        case = json.dumps({"section": sec, "device": a.device})
        r = subprocess.run(
            [sys.executable, __file__, "--case", case], capture_output=True, text=True
        )
        if r.returncode != 0:
            print(f"{name:<16}{'x'.join(map(str, shape)):<16}{latent:<14}failed: {r.stderr[-300:]}")
            failed = True
            continue
        out = json.loads(r.stdout.strip().splitlines()[-1])
        grid = "x".join(map(str, shape))
        print(
            f"{name:<16}{grid:<16}{latent:<14}{out['device']:<8}"
            f"{out['seconds']:>10.1f}{out['peak_gib']:>10.2f}"
        )
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
