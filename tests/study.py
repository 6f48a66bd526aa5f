"""The tiny study configuration and Snakemake runners shared by the workflow tests."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import DEMO_DIR, REPO

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]

TINY = {
    "demo_data": {"mirror": str(DEMO_DIR)},
    "cohort": {"n_subjects": 3},
    "split": {"scheme": "kfold", "n_folds": 3},
    "carm": {"pixel_spacing": 0.28, "downsample": 48},
    "drr": {"images_per_subject": 3},
    "real": {"images_per_subject": 3},
    "synth2d": {
        "image_size": 16,
        "channels": [8, 8],
        "attention": False,
        "train_steps": 4,
        "batch_size": 2,
        "n_images": 4,
        "shard_size": 2,
        "sampler": {"kind": "dpmsolver++", "steps": 2},
        "fidelity": {"n_images": 2, "samplers": [{"kind": "ddim", "steps": 2}]},
    },
    "synth3d": {
        "shape": [16, 16, 16],
        "spacing_mm": 24.0,
        "autoencoder": {"channels": [4, 8], "patch": [16, 16, 16], "steps": 2},
        "diffusion": {"channels": [8, 8], "steps": 2},
        "n_volumes": 2,
        "sampler": {"kind": "ddim", "steps": 2},
    },
    "detector": {
        "arms": ["real", "drr", "synth3d", "synth2d", "drr_grid", "drr_recon", "real_resized"],
        "train_images": 4,
        "image_size": 16,
        "sigma_px": 1.0,
        "channels": [4, 8],
        "res_units": 0,
        "batch_size": 2,
        "epochs": 2,
    },
    "evaluation": {"realism_images": 2},
    "device": "cpu",
}


def study_dir(tmp_path: Path, config: dict) -> Path:
    (tmp_path / "config").mkdir(parents=True, exist_ok=True)
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def run(workdir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Snakemake on `workdir` (its config/config.yaml), output captured."""
    return subprocess.run(
        [*SNAKEMAKE, "-d", str(workdir), *args], capture_output=True, text=True, timeout=timeout
    )


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """{rule: count} from a dry run's job table."""
    r = run(workdir, "-n", *args)
    assert r.returncode == 0, r.stderr + r.stdout
    out = r.stdout + r.stderr
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1].split("Reasons:")[0]
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"
    }


def planned_runs(workdir: Path, *args: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job a dry run plans."""
    r = run(workdir, "-n", *args)
    assert r.returncode == 0, r.stderr + r.stdout
    jobs = []
    for block in re.split(r"^(?:local)?rule ", r.stdout, flags=re.M)[1:]:
        m = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        wildcards = dict(kv.split("=", 1) for kv in m[1].split(", ")) if m else {}
        jobs.append((block.split(":", 1)[0], wildcards))
    return jobs
