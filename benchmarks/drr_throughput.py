"""DRR throughput: xrayfactory's torch renderer vs DiffDRR on the same CT, detector and views.

    python benchmarks/drr_throughput.py [--ct CT] [--rows 128 256] [--views 32] [--device cpu]

DiffDRR runs in its own environment (it pulls torchvision); create it with
    python3 -m venv .venv-diffdrr && .venv-diffdrr/bin/pip install torch==2.13.0 diffdrr==0.6.1
or pass --diffdrr-python. Without it, its column is skipped with a message.
Prints a table: renderer, detector size, images/s and the ratio ours / DiffDRR.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from xrayfactory.cohort.volumes import load_ct  # noqa: E402
from xrayfactory.imaging.drr import TorchRenderer  # noqa: E402
from xrayfactory.imaging.geometry import CArm, ViewSampler, projection_matrix  # noqa: E402


def ours(ct_path: str, carm: CArm, views: np.ndarray, device: str) -> float:
    ct = load_ct(ct_path)
    centre = ct.voxel_to_world((np.asarray(ct.shape)[None] - 1) / 2)[0]
    ps = np.stack([projection_matrix(carm, v, centre) for v in views])
    renderer = TorchRenderer(device=device)
    renderer.render(ct, ps[:1], carm.rows, carm.cols)  # warm-up (spectrum tables, allocations)
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    renderer.render(ct, ps, carm.rows, carm.cols)
    if device == "cuda":
        torch.cuda.synchronize()
    return len(views) / (time.perf_counter() - t)


def diffdrr(
    python: Path, ct_path: str, carm: CArm, views: np.ndarray, device: str, threads: int
) -> float | None:
    if not python.exists():
        print(f"DiffDRR skipped: no environment at {python} (see this script's docstring)")
        return None
    cmd = [
        str(python),
        str(Path(__file__).with_name("diffdrr_worker.py")),
        "--ct",
        ct_path,
        "--rows",
        str(carm.rows),
        "--spacing",
        str(carm.spacing),
        "--sdd",
        str(carm.sdd),
        "--sid",
        str(carm.sid),
        "--angles",
        json.dumps(views[:, :3].tolist()),
        "--threads",
        str(threads),
        "--device",
        device,
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"DiffDRR failed: {r.stderr.strip().splitlines()[-1] if r.stderr else r.returncode}")
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])["images_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ct", default=str(REPO.parent / "shared/data/pelvis-ct/example_ct.nii.gz"))
    p.add_argument("--rows", type=int, nargs="+", default=[128, 256])
    p.add_argument("--views", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--diffdrr-python", type=Path, default=REPO / ".venv-diffdrr" / "bin" / "python")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    views = ViewSampler().sample(a.views, np.random.default_rng(0))
    print(f"CT {a.ct}, {a.views} views, device {a.device}, {a.threads} CPU threads")
    print(f"{'detector':>10} {'ours img/s':>12} {'DiffDRR img/s':>14} {'ratio':>7}")
    for rows in a.rows:
        # a 43 cm panel read out at `rows` pixels, Cios distances
        carm = CArm(
            detector_rows=rows, detector_cols=rows, pixel_spacing=430.0 / rows, downsample=1
        )
        mine = ours(a.ct, carm, views, a.device)
        theirs = diffdrr(a.diffdrr_python, a.ct, carm, views, a.device, a.threads)
        ratio = f"{mine / theirs:7.1f}" if theirs else "    n/a"
        theirs_s = f"{theirs:14.2f}" if theirs else f"{'skipped':>14}"
        print(f"{rows:>4}x{rows:<5} {mine:12.2f} {theirs_s} {ratio}")


if __name__ == "__main__":
    main()
