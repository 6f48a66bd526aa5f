"""The tiny study configuration and Snakemake runners shared by the workflow tests."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import yaml
from snakemake.utils import update_config

from tests.conftest import DEMO_DIR, REPO

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]

CONFIGS = Path(__file__).parent / "configs"


def load_config(name: str, over: dict | None = None) -> dict:
    """A test configuration: tests/configs/<name>.yaml merged over `over` (section by section,
    as Snakemake merges a --configfile), with the demo data mirror."""
    config = copy.deepcopy(over) if over else {"demo_data": {"mirror": str(DEMO_DIR)}}
    update_config(config, yaml.safe_load((CONFIGS / f"{name}.yaml").read_text()))
    return config


TINY = load_config("tiny")


def study_dir(tmp_path: Path, config: dict) -> Path:
    (tmp_path / "config").mkdir(parents=True, exist_ok=True)
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


# Snakemake runs in the tests take minutes; the limit only stops a hung run (host speed varies
# by 2x and more under load).
RUN_LIMIT_S = 3600


def run(workdir: Path, *args: str, timeout: float = RUN_LIMIT_S) -> subprocess.CompletedProcess:
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
