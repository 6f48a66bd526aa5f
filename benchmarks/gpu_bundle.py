"""Everything `gpu_check.sh --bundle DIR` needs on a GPU machine whose python3 already holds a
CUDA torch (with numpy, scipy, pandas, h5py, matplotlib, pytest and the Hugging Face hub
packages) but nothing of ours, and that has no network: this workplace's lent GPU machine
(Python 3.12, torch 2.11), where at most 64 MiB travel with a run.

- DIR/wheels: the packages below at this environment's versions, for the target Python, without
  their dependencies (the list holds the ones such a machine lacks; about 30 MB);
- DIR/cache/spectra: the X-ray spectra the checks use (the renderers' and the proxy-real model's
  defaults, and each configuration's tubes), so that SpekPy, a 164 MB wheel, need not travel.

Run where there is network, in the project's environment:
    python benchmarks/gpu_bundle.py DIR [--python 3.12]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from paper_cost import REPO, load

from xrayfactory.imaging.acquisition import AcquisitionParams
from xrayfactory.imaging.drr import TorchRenderer

# snakemake and its interfaces only for snakemake.utils (benchmarks/paper_cost.py)
PACKAGES = [
    "nibabel", "importlib-resources", "pydicom", "monai", "kornia", "kornia-rs", "diffusers",
    "importlib-metadata", "lazy-importer", "jsonschema", "jsonschema-specifications",
    "referencing", "rpds-py", "xraydb", "sqlalchemy", "greenlet", "platformdirs", "snakemake",
    "snakemake-interface-common", "snakemake-interface-logger-plugins",
    "snakemake-interface-storage-plugins",
]  # fmt: skip
PLATFORMS = ["manylinux_2_28", "manylinux_2_27", "manylinux_2_17", "manylinux2014", "manylinux1"]


def tubes() -> set[tuple[float, float, float]]:
    """(kVp, Al mm, Cu mm) of every tube the checks may use."""
    drr, acq = TorchRenderer(), AcquisitionParams()
    found = {(drr.kvp, drr.al_mm, 0.0), (acq.kvp, acq.al_mm, acq.cu_mm)}
    for path in sorted((REPO / "config").glob("*.yaml")):
        c = load(str(path))
        found.add((c["drr"]["kvp"], c["drr"]["al_mm"], 0.0))
        q = AcquisitionParams.from_config(c["real"]["acquisition"], "cpu")
        found.add((q.kvp, q.al_mm, q.cu_mm))
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir", type=Path)
    p.add_argument("--python", default="3.12", help="the GPU machine's Python version")
    a = p.parse_args()
    pins = [f"{name}=={version(name)}" for name in PACKAGES]
    platforms = [arg for tag in PLATFORMS for arg in ("--platform", f"{tag}_x86_64")]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", a.python, "--implementation", "cp", *platforms]
    subprocess.run([*cmd, "-d", str(a.dir / "wheels"), *pins], check=True)
    os.environ["XRAYFACTORY_CACHE"] = str(a.dir / "cache")
    from xrayfactory.imaging.physics import tube_spectrum

    for kvp, al_mm, cu_mm in sorted(tubes()):
        tube_spectrum(kvp, al_mm=al_mm, cu_mm=cu_mm)
        print(f"spectrum {kvp:g} kVp, {al_mm:g} mm Al, {cu_mm:g} mm Cu")
    size = sum(f.stat().st_size for f in a.dir.rglob("*") if f.is_file())
    print(f"{a.dir}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
