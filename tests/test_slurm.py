"""The SLURM profile on a real (one-node, localhost) SLURM cluster: a reduced study with every
kind of GPU-requesting rule completes, and each GPU rule's job asked SLURM for a GPU."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.conftest import REPO
from tests.slurm_cluster import jobs, local_cluster
from tests.workflow_runs import RUN_LIMIT_S, SNAKEMAKE, TINY, study_dir

# The tiny study with one synth2d shard per fold; `auto` device: GPU-capable rules request a
# GPU and run on the CPU where none is usable.
STUDY = {**TINY, "device": "auto", "synth2d": {**TINY["synth2d"], "shard_size": 4}}
# Fold 0 of it, every rule kind that asks for a GPU at least once: the arms whose jobs cover
# them (drr's and real_resized's rule kinds are among these), both generators with their QC
# and quality tables.
TARGETS = [
    *(
        f"results/predictions/{arm}/fold0_seed0.csv"
        for arm in ("real", "synth3d", "synth2d", "drr_grid", "drr_recon", "synth3d_nolatent")
    ),
    "results/synth2d/fold0/label_fidelity.csv",
    "results/synth3d/fold0/quality.csv",
    "results/synth3d/qc/fold0_vol0.png",
]
GPU_RULES = {
    "render_imageset",
    "render_synth3d",
    "render_drr_grid",
    "render_drr_recon",
    "train_detector",
    "train_synth2d",
    "sample_synth2d",
    "synth2d_fidelity",
    "train_synth3d_autoencoder",
    "train_synth3d_diffusion",
    "sample_synth3d",
    "sample_synth3d_nolatent",
}
# Site overrides for this cluster: no accounting database (squeue for status), no account,
# quick first status check.
LOCAL = [
    "--slurm-status-command",
    "squeue",
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks",
    "2",
]
TIMEOUT_S = RUN_LIMIT_S  # stops a hung run only: host speed varies


@pytest.mark.slow
def test_study_on_a_local_slurm_cluster(tmp_path):
    workdir = study_dir(tmp_path / "study", STUDY)
    with local_cluster(tmp_path / "slurm"):
        start = time.monotonic()
        cmd = [
            *SNAKEMAKE,
            "-d",
            str(workdir),
            "--workflow-profile",
            str(REPO / "workflow/profiles/slurm"),
        ]
        try:
            r = subprocess.run(
                [*cmd, *LOCAL, *TARGETS], capture_output=True, text=True, timeout=TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"the study did not finish on SLURM within {TIMEOUT_S} s")
        elapsed = time.monotonic() - start
        submitted = jobs()
    assert r.returncode == 0, (r.stderr + r.stdout)[-4000:]
    for target in TARGETS:
        assert (workdir / target).exists(), target
    print(f"study on SLURM: {elapsed:.0f} s, {len(submitted)} SLURM jobs")

    by_rule: dict[str, list[dict[str, str]]] = {}
    for job in submitted:
        assert job["JobState"] == "COMPLETED", job
        by_rule.setdefault(job["Comment"].removeprefix("rule_").split("_wildcards")[0], []).append(
            job
        )
    assert GPU_RULES <= set(by_rule), sorted(by_rule)
    assert not {"all", "fetch_demo_data", "report_realism"} & set(by_rule)  # local rules
    for rule, rule_jobs in by_rule.items():
        partition = "gpu" if rule in GPU_RULES else "cpu"
        for job in rule_jobs:
            assert job["Partition"] == partition, (rule, job["Partition"])
            assert (job.get("TresPerJob") == "gres:gpu:1") == (rule in GPU_RULES), (rule, job)
    train = by_rule["train_detector"][0]
    assert train["MinMemoryNode"] == "32000M" and train["TimeLimit"] == "06:00:00"
