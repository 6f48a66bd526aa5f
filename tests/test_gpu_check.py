"""benchmarks/gpu_check.sh, the project's GPU check, run end to end in its CPU mode (reduced
sizes), so that it is known to work before anyone spends GPU time on it."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_gpu_check_runs_every_check_in_cpu_mode_and_writes_one_table(tmp_path):
    script = str(REPO / "benchmarks" / "gpu_check.sh")
    r = subprocess.run(
        ["bash", script, "--device", "cpu", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    table = (tmp_path / "table.md").read_text()
    assert r.returncode == 0, table + r.stderr[-2000:]
    rows = [line.split("|")[1:3] for line in table.splitlines() if line.startswith("| ")][2:]
    assert [(name.strip(), status.strip()) for name, status in rows] == [
        (check, "passed")
        for check in ("gpu-tests", "drr-throughput", "paper-cost", "synth3d-generation")
    ]
    assert "no CUDA device, torch 2." in table and ", device cpu" in table
    assert "skipped" in table and "needs CUDA" in table  # the GPU tests, skipped here
    assert "32x32   ours" in table and "proxy-real" in table  # the DRR benchmark's tables
    assert "synth3d generate" in table and "total" in table  # paper_cost's table
    assert table.count("32x32x32") == 2  # the large grid, reduced: configured and paper networks


def test_gpu_check_refuses_an_unknown_option_missing_wheels_and_a_missing_demo_ct(tmp_path):
    script = str(REPO / "benchmarks" / "gpu_check.sh")

    def refusal(*args: str) -> str:
        r = subprocess.run(["bash", script, *args], capture_output=True, text=True)
        assert r.returncode == 2 and not (tmp_path / "out").exists()
        return r.stderr

    out = ["--out", str(tmp_path / "out")]
    assert "error: --gpu: unknown option" in refusal("--gpu", *out)
    missing = tmp_path / "wheels"
    assert f"error: {missing}: no such folder of wheels" in refusal("--wheels", str(missing), *out)
    bundle = tmp_path / "bundle"
    refused = refusal("--bundle", str(bundle), *out)
    assert f"error: {bundle}/wheels: no such folder of wheels" in refused
    assert f"error: {tmp_path}: no demo CT at {tmp_path}/data/pelvis-ct/example_ct.nii.gz" in (
        refusal("--shared", str(tmp_path), *out)
    )
