"""Software environments: every rule names a conda env and a job image, each image is built from a
recipe in envs/, GPU-capable rules run in the CUDA (-devel, DeepDRR) image; the tiny study runs
inside the CPU image built from our recipe, through Snakemake's apptainer wiring."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from snakemake.api import SnakemakeApi
from snakemake.settings.types import OutputSettings, ResourceSettings

from tests.conftest import DEMO_DIR, REPO
from tests.workflow_runs import (
    RUN_LIMIT_S,
    SNAKEMAKE,
    TINY,
    planned_jobs,
    study_dir,
)

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGE = re.compile(r"xrayfactory-(?P<version>[\d.]+)-(?P<kind>cpu|cuda)\.sif$")


@pytest.fixture(scope="module")
def rules():
    """The workflow's rules that run a command, as Snakemake parses them."""
    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(),
            snakefile=REPO / "Snakefile",
            workdir=REPO,
        )
        return [rule for rule in workflow._workflow.rules if rule.shellcmd]


def test_every_rule_names_a_conda_env_and_an_image_with_a_recipe(rules):
    assert len(rules) >= 25
    kinds = {}
    for rule in rules:
        env = Path(rule.basedir) / rule.conda_env
        assert env.is_file(), (rule.name, env)
        m = IMAGE.search(rule.container_img or "")
        assert m, (rule.name, rule.container_img)
        assert m["version"] == VERSION, (rule.name, rule.container_img)
        kinds[rule.name] = m["kind"]
        assert (REPO / "envs" / f"{m['kind']}.Dockerfile").is_file()
    gpu = {rule.name for rule in rules if "gpu" in rule.resources}  # GPU-capable rules
    assert {"train_detector", "render_imageset", "sample_synth3d", "train_synth2d"} <= gpu
    assert {name for name, kind in kinds.items() if kind == "cuda"} == gpu


def test_recipes_pin_torch_and_the_cuda_image_is_devel_with_deepdrr():
    for kind in ("cpu", "cuda"):
        recipe = (REPO / "envs" / f"{kind}.Dockerfile").read_text()
        assert f'org.opencontainers.image.version="{VERSION}"' in recipe
        assert re.search(r"pip install .*torch==2\.13\.0", recipe), kind
    cuda = (REPO / "envs" / "cuda.Dockerfile").read_text()
    assert re.search(r"^ARG BASE=nvidia/cuda:\S+-devel-", cuda, re.M)  # the default base
    for kind in ("cpu", "cuda"):  # each recipe takes its base image as a build argument
        assert "\nFROM ${BASE}\n" in (REPO / "envs" / f"{kind}.Dockerfile").read_text()
    assert re.search(r'pip install "torch==[\d.]+" "\.\[gpu\]"', cuda)  # one resolve
    assert "libegl1" in cuda
    cpu = (REPO / "envs" / "cpu.Dockerfile").read_text()
    assert "download.pytorch.org/whl/cpu" in cpu and "[gpu]" not in cpu
    script = REPO / "envs" / "build-images.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "containers/xrayfactory-${version}-${kind}" in script.read_text()


CPU_IMAGE = f"localhost/xrayfactory:{VERSION}-cpu"
PODMAN = ["podman", "runc", "mmdebstrap", "uidmap", "fuse-overlayfs", "slirp4netns"]


@pytest.fixture(scope="module")
def cpu_image() -> str:
    """The CPU image, built from this tree's envs/cpu.Dockerfile on a Debian base by the
    documented command (as root: podman is installed first where missing; the base and
    unchanged layers are cached between runs)."""
    if os.geteuid() != 0:
        pytest.skip("building the CPU image here needs root (podman from apt-get)")
    if not shutil.which("podman"):
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PODMAN]):
            subprocess.run(cmd, check=True, capture_output=True)
    r = subprocess.run(
        ["bash", "envs/build-images.sh", "--debian-base", "cpu"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return CPU_IMAGE


@pytest.mark.slow
def test_tiny_study_runs_inside_the_cpu_image_through_snakemake(
    cpu_image, tiny_study, rules, tmp_path
):
    """`snakemake --sdm apptainer` on the tiny study, apptainer played by tests/apptainer_shim.py
    (podman, apptainer's default binds): every job runs in its rule's image (`containers.cuda`
    points at the CPU image here: no CUDA image is built on these machines), the demo data
    mirror outside the working directory is bound as a user would bind it, and the metrics
    equal those of the same study run without containers."""
    images = {"cpu": "images/cpu.sif", "cuda": "images/cuda.sif"}
    mirror = DEMO_DIR.resolve()
    config = {**TINY, "containers": images, "demo_data": {"mirror": str(mirror)}}
    workdir = study_dir(tmp_path / "study", config)
    (workdir / "images").mkdir()
    for path in images.values():
        (workdir / path).write_text(f"podman-image: {cpu_image}\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apptainer").symlink_to(REPO / "tests" / "apptainer_shim.py")
    log = tmp_path / "apptainer.jsonl"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "APPTAINER_SHIM_LOG": str(log)}
    r = subprocess.run(
        [*SNAKEMAKE, "-d", str(workdir), "--cores", "2", "--sdm", "apptainer",
         "--apptainer-args", f"--bind {mirror}"],
        env=env, capture_output=True, text=True, timeout=RUN_LIMIT_S,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    kinds = {rule.name: "cuda" if "gpu" in rule.resources else "cpu" for rule in rules}
    ran = Counter()
    for call in map(json.loads, log.read_text().splitlines()):
        m = re.search(r"python -m xrayfactory (?:--threads \d+ )?([a-z0-9-]+)", call["command"][-1])
        rule = m[1].replace("-", "_")
        assert call["image"] == images[kinds[rule]], (rule, call["image"])
        assert call["pwd"] == str(workdir) and call["podman_image"] == cpu_image
        ran[rule] += 1
    every_job = planned_jobs(workdir, "--forceall")
    assert ran == {rule: n for rule, n in every_job.items() if rule != "all"}
    metrics = pd.read_csv(workdir / "results" / "report" / "metrics.csv")
    assert metrics.equals(pd.read_csv(tiny_study / "reference_metrics.csv"))
