"""Software environments: every rule names a conda env and a job image, each image is built from a
recipe in envs/, GPU-capable rules run in the CUDA (-devel, DeepDRR) image."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from snakemake.api import SnakemakeApi
from snakemake.settings.types import OutputSettings, ResourceSettings

from tests.conftest import REPO

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
    assert re.search(r"^FROM nvidia/cuda:\S+-devel-", cuda, re.M)
    assert re.search(r'pip install "torch==[\d.]+" "\.\[gpu\]"', cuda)  # one resolve
    assert "libegl1" in cuda
    cpu = (REPO / "envs" / "cpu.Dockerfile").read_text()
    assert "download.pytorch.org/whl/cpu" in cpu and "[gpu]" not in cpu
    script = REPO / "envs" / "build-images.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "containers/xrayfactory-${version}-${kind}" in script.read_text()
