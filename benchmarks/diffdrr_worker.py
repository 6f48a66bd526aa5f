"""Time DiffDRR on a CT (run inside DiffDRR's own environment by drr_throughput.py).

Prints one JSON line: {"images_per_s": ..., "seconds": ..., "n": ...}.
"""

import argparse
import json
import time

import torch
from diffdrr.data import read
from diffdrr.drr import DRR

p = argparse.ArgumentParser()
p.add_argument("--ct", required=True)
p.add_argument("--rows", type=int, required=True)
p.add_argument("--spacing", type=float, required=True)
p.add_argument("--sdd", type=float, required=True)
p.add_argument("--sid", type=float, required=True)
p.add_argument("--angles", required=True, help="JSON list of [lao, cran, roll] degrees")
p.add_argument("--renderer", default="siddon")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--device", default="cpu")
a = p.parse_args()

torch.set_num_threads(a.threads)
drr = DRR(read(a.ct), sdd=a.sdd, height=a.rows, delx=a.spacing, renderer=a.renderer).to(a.device)
angles = torch.tensor(json.loads(a.angles), dtype=torch.float32, device=a.device)
translations = torch.tensor([[0.0, a.sid, 0.0]], device=a.device).expand(len(angles), 3)
with torch.no_grad():
    drr(
        angles[:1],
        translations[:1],
        parameterization="euler_angles",
        convention="ZXY",
        degrees=True,
    )
    if a.device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(len(angles)):  # one view at a time, as our renderer's CPU path is timed too
        drr(
            angles[i : i + 1],
            translations[i : i + 1],
            parameterization="euler_angles",
            convention="ZXY",
            degrees=True,
        )
    if a.device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
print(json.dumps({"images_per_s": len(angles) / dt, "seconds": dt, "n": len(angles)}))
