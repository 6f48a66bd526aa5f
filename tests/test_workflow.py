"""The Snakemake workflow: DAG structure, config errors before any job, a tiny end-to-end run
(rerun one arm, report from cache, resume after a kill), and a user cohort sheet plugging in
without code."""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import REPO
from tests.workflow_runs import (
    RUN_LIMIT_S,
    SNAKEMAKE,
    TINY,
    planned_jobs,
    planned_runs,
    run,
    study_dir,
)
from xrayfactory.cohort.sheet import folds
from xrayfactory.detection.predictions import with_errors


def test_dag_of_the_default_configuration(tmp_path):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["split"] = {"scheme": "loso"}
    local = REPO / "workflow" / "profiles" / "default"  # the README's first command
    jobs = planned_jobs(study_dir(tmp_path, config), "--workflow-profile", str(local))
    n = config["cohort"]["n_subjects"]
    arms = config["detector"]["arms"]
    assert "synth2d" in arms and "synth3d" in arms
    runs = len(arms) * n * len(config["detector"]["seeds"])
    volumes = n * config["synth3d"]["n_volumes"]
    assert jobs == {
        "all": 1,
        "fetch_demo_data": 1,
        "demo_landmarks": 1,
        "demo_subject": n,
        "cohort_sheet": 1,
        "check_cohort": 1,
        "cohort_qc": 1,
        "folds": 1,
        "render_imageset": 2 * n,
        "imageset_qc": 4,
        "augmentation_qc": 1,
        "train_synth3d_autoencoder": n,
        "train_synth3d_diffusion": n,
        "sample_synth3d": n,
        "render_synth3d": volumes,
        "synth3d_quality": n,
        "report_synth3d": 1,
        "train_synth2d": n,
        "sample_synth2d": n,
        "synth2d_fidelity": n,
        "report_synth2d": 1,
        "train_detector": runs,
        "evaluate_detector": runs,
        "baseline_predictions": n,
        "realism": n,
        "report_realism": 1,
        "report": 1,
    }


def test_jobs_that_make_training_images_run_before_ready_detectors(tmp_path):
    """The demo's dry run: rendering, the generators and their samples have a priority above
    every other job, so that the generator chains overlap the `real` and `drr` detectors."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    r = run(study_dir(tmp_path, config), "-n")
    assert r.returncode == 0, r.stderr
    priority = {}
    for block in re.split(r"^(?:local)?rule ", r.stdout, flags=re.M)[1:]:
        m = re.search(r"^\s+priority: (\d+)$", block, re.M)
        priority.setdefault(block.split(":")[0], set()).add(int(m[1]) if m else 0)
    first = {rule for rule, p in priority.items() if p == {10}}
    assert first == {
        "render_imageset", "train_synth3d_autoencoder", "train_synth3d_diffusion",
        "sample_synth3d", "render_synth3d", "train_synth2d", "sample_synth2d",
    }  # fmt: skip
    assert all(p == {0} for rule, p in priority.items() if rule not in first), priority


def test_laptop_configuration_is_the_demo_with_generators_trained_longer(tmp_path):
    """config/laptop.yaml plans the demo's jobs; only the generators' training changes."""
    laptop = REPO / "config" / "laptop.yaml"
    assert set(yaml.safe_load(laptop.read_text())) == {"synth2d", "synth3d"}
    workdir = study_dir(tmp_path, yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    assert planned_jobs(workdir, "--configfile", str(laptop)) == planned_jobs(workdir)
    args = ("-n", "-p", "--cores", "2", "--configfile", str(laptop))
    r = run(workdir, "results/synth2d/fold0/model.pt", *args)
    assert r.returncode == 0, r.stderr
    assert '"train_steps": 12000' in r.stdout and '"channels": [16, 32, 64, 64]' in r.stdout
    assert "--threads 2 train-synth2d" in r.stdout


def test_generators_never_see_test_subjects(tmp_path):
    workdir = study_dir(tmp_path, TINY)
    targets = ["results/synth2d/fold1/model.pt", "results/synth3d/fold1/quality.csv"]
    r = run(workdir, "-n", "-p", "--forceall", *targets)
    assert r.returncode == 0, r.stderr
    test = folds(["demo00", "demo01", "demo02"], "kfold", 3).query("fold == 1 and role == 'test'")
    assert test.subject.tolist() == ["demo01"]
    cmd = next(line for line in r.stdout.splitlines() if "train-synth2d" in line)
    assert "real/demo00.h5" in cmd and "real/demo02.h5" in cmd
    assert "real/demo01.h5" not in cmd and "--train-subjects demo00 demo02 " in cmd
    synth3d = [line for line in r.stdout.splitlines() if "synth3d" in line and " --fold 1 " in line]
    assert len(synth3d) == 4  # autoencoder, diffusion, sampling, quality
    for cmd in synth3d:
        assert "cohort/demo00/ct.nii.gz" in cmd and "cohort/demo02/ct.nii.gz" in cmd
        assert "demo01" not in cmd


def test_jobs_read_only_their_folds_subjects(tmp_path):
    """Fold membership is resolved when the workflow plans: a fold's training jobs read only
    its training subjects' image sets, its evaluations only its test subjects' (and no job
    reads results/cohort/folds.csv)."""
    targets = [f"results/predictions/{arm}/fold1_seed0.csv" for arm in ("real", "drr")]
    targets += ["results/predictions/baseline/fold1_seed0.csv", "results/realism/fold1.csv"]
    r = run(study_dir(tmp_path, TINY), "-n", "-p", "--forceall", *targets)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    commands = [line for line in lines if "python -m xrayfactory" in line]
    assert not [c for c in commands if "folds.csv" in c and " folds " not in c]
    training = [c for c in commands if "train-detector" in c and "--fold 1 " in c]
    assert len(training) == 2  # real (also the realism feature network) and drr
    for cmd in training:
        assert "demo01.h5" not in cmd and "demo00.h5" in cmd and "demo02.h5" in cmd
    for cmd in (c for c in commands if "evaluate-detector" in c and "--fold 1 " in c):
        assert cmd.count(".h5") == 1 and "real/demo01.h5" in cmd
    baseline = next(c for c in commands if "baseline-predictions" in c)
    assert "--test results/imagesets/real/demo01.h5 --out" in baseline
    realism = next(c for c in commands if "python -m xrayfactory" in c and " realism " in c)
    assert "--test results/imagesets/real/demo01.h5 --out" in realism
    shards = realism.split("--settings")[1]  # every arm's training sets of fold 1
    assert "real/demo00.h5" in shards and "drr/demo02.h5" in shards and "demo01" not in shards


def test_generated_arms_make_what_their_largest_set_needs_and_sets_read_only_that(tmp_path):
    """A sweep beyond a generated arm's own training set makes more synth2d shards and synth3d
    parts (never refused); each training job reads only the units holding its images."""
    sizes = {"synth2d": [6], "synth3d": [8]}  # shards of 2; parts of 2 volumes x 3 DRRs
    workdir = study_dir(tmp_path, {**TINY, "detector": {**TINY["detector"], "sizes": sizes}})
    r = run(workdir, "-n", "-p", "--forceall")
    assert r.returncode == 0, r.stderr
    commands = [line for line in r.stdout.splitlines() if "python -m xrayfactory" in line]
    sampled = sorted(c.split("--shard ")[1].split()[0] for c in commands if "sample-synth2d" in c)
    assert sampled == ["0", "0", "1", "1", "2", "2"]  # 2 folds x 3 shards of 2 images
    rendered = [c for c in commands if "render-synth3d" in c]
    parts = sorted(c.split("--part ")[1].split()[0] for c in rendered if "--arm synth3d " in c)
    assert parts == ["0"] * 4 + ["1"] * 4  # 2 folds x 2 volumes x 2 parts
    control = [c.split("--part ")[1].split()[0] for c in rendered if "synth3d_nolatent" in c]
    assert control == ["0"] * 4  # its own training set's (synth3d_nolatent has no sweep)

    def training(arm):
        return next(c for c in commands if f"--arm {arm} --fold 1 " in c and "train-det" in c)

    assert training("synth2d@6").count("synth2d/fold1/shard") == 3
    assert training("synth2d").count("synth2d/fold1/shard") == 2  # its own 4 images
    assert "shard2" not in training("synth2d") and "fold0" not in training("synth2d")
    assert training("synth3d@8").count("_part1.h5") == 2
    assert "_part1.h5" not in training("synth3d")


def test_invalid_config_stops_before_any_job(tmp_path):
    workdir = study_dir(tmp_path, {**TINY, "drr": {"kvp": "high"}})
    r = run(workdir, "--cores", "1")
    assert r.returncode != 0
    assert "key drr.kvp: 'high' is not of type 'number'" in r.stderr
    assert not (workdir / "results").exists() and not (workdir / "resources" / "pelvis-ct").exists()
    # a scaling sweep asking for more images than a fold's training subjects have
    study_dir(tmp_path, {**TINY, "detector": {**TINY["detector"], "sizes": [2, 7]}})
    r = run(workdir, "--cores", "1")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert (
        "error: config: key detector.sizes: asks arm real for 7 training images, fold 0 has 6"
        in r.stderr
    )
    assert not (workdir / "results").exists()


@pytest.mark.slow
def test_tiny_study_end_to_end_then_user_sheet(tiny_study, tmp_path):
    workdir = tiny_study
    res = workdir / "results"
    sheet = pd.read_csv(res / "cohort" / "subjects.tsv", sep="\t")
    assert sheet.subject.tolist() == ["demo00", "demo01", "demo02"]
    folds = pd.read_csv(res / "cohort" / "folds.csv")
    assert sorted(folds.loc[folds.role == "test", "subject"]) == ["demo00", "demo01"]
    for arm, n in (("real", 3), ("drr", 3)):
        with h5py.File(res / "imagesets" / arm / "demo01.h5") as f:
            assert f["images"].shape == (n, 32, 32)
            assert f["landmarks"].shape == (n, 9, 2) and f["visible"].shape == (n, 9)
            assert f.attrs["arm"] == arm and bool(f.attrs["proxy"]) == (arm == "real")
        assert (res / "qc" / f"imageset_{arm}.png").stat().st_size > 1000
    assert (res / "cohort" / "qc" / "demo02.png").exists()
    with h5py.File(res / "imagesets" / "synth2d" / "fold1" / "shard1.h5") as f:
        assert f["images"].shape == (2, 16, 16) and f.attrs["fold"] == 1
        assert f.attrs["arm"] == "synth2d" and f.attrs["trained_on"] == "proxy-real"
    ct = nib.load(res / "synth3d" / "fold1" / "vol0" / "ct.nii.gz")
    assert ct.shape == (16, 16, 16) and ct.get_data_dtype() == np.int16
    np.testing.assert_allclose(np.linalg.norm(ct.affine[:3, :3], axis=0), 24.0)
    with h5py.File(res / "imagesets" / "synth3d" / "fold1" / "vol0_part0.h5") as f:
        assert f["images"].shape == (3, 32, 32) and f.attrs["fold"] == 1  # as many as drr
        assert f.attrs["arm"] == "synth3d" and "drr:" in f.attrs["generator"]
    # the controls: drr_grid renders drr's views of the CT on the synth3d grid, drr_recon of the
    # fold's autoencoder reconstruction; real_resized goes through the synth2d image size
    with h5py.File(res / "imagesets" / "drr" / "demo01.h5") as drr:
        for control in ("drr_grid/demo01.h5", "drr_recon/fold0/demo01.h5"):
            with h5py.File(res / "imagesets" / control) as f:
                assert f["images"].shape == (3, 32, 32)
                np.testing.assert_array_equal(f["projection"][:], drr["projection"][:])
                assert not np.allclose(f["images"][:], drr["images"][:], atol=1e-3)
                assert f.attrs["arm"] == control.split("/")[0]
    with h5py.File(res / "imagesets" / "real_resized" / "demo01.h5") as f:
        assert f["images"].shape == (3, 32, 32) and f.attrs["arm"] == "real_resized"
    # synth3d_nolatent: synth3d's masks and views, its CTs decoded without the diffusion model
    for name in ("seg.nii.gz", "landmarks.csv"):
        pair = [
            (res / arm / "fold1" / "vol0" / name).read_bytes()
            for arm in ("synth3d", "synth3d_nolatent")
        ]
        assert pair[0] == pair[1]
    with h5py.File(res / "imagesets" / "synth3d" / "fold1" / "vol0_part0.h5") as synth3d:
        with h5py.File(res / "imagesets" / "synth3d_nolatent" / "fold1" / "vol0_part0.h5") as f:
            np.testing.assert_array_equal(f["projection"][:], synth3d["projection"][:])
            assert not np.allclose(f["images"][:], synth3d["images"][:], atol=1e-3)
            assert f.attrs["arm"] == "synth3d_nolatent" and "no diffusion" in f.attrs["generator"]

    # each control trains on its parent arm's images (3 of each of 2 subjects, 4 drawn)
    def trained_ids(arm: str, fold: int) -> list[str]:
        model = res / "detector" / arm / f"fold{fold}" / "seed0" / "model.pt"
        return torch.load(model, weights_only=False)["meta"]["image_ids"]

    for parent, controls in (
        ("drr", ("drr_grid", "drr_recon")),
        ("real", ("real_resized",)),
        ("synth3d", ("synth3d_nolatent",)),
    ):
        for fold in (0, 1):
            ids = trained_ids(parent, fold)
            assert len(ids) == 4 and all(trained_ids(c, fold) == ids for c in controls)
    quality = pd.read_csv(res / "report" / "synth3d_quality.csv")
    assert quality.fold.tolist() == ["0"] * 4 + ["1"] * 4 + ["mean"] * 2
    assert quality.kind.tolist() == ["real", "real", "generated", "generated"] * 2 + [
        "real",
        "generated",
    ]
    assert quality.bone_dice.between(0, 1).all() and "landmark_offset_mm" in quality
    assert (quality.recon_mae_hu > 0).all() and (quality.latent_effect_hu >= 0).all()
    assert (quality.mask_prior_mae_hu > 0).all()  # tiny.yaml's autoencoder learns over the prior
    metrics = pd.read_csv(res / "report" / "metrics.csv")
    controls = ["drr_grid", "drr_recon", "synth3d_nolatent", "synth3d", "real_resized", "synth2d"]
    assert metrics.arm.tolist() == ["baseline", "real", "drr", *controls]
    realism = pd.read_csv(res / "report" / "realism.csv")
    assert realism.arm.tolist() == ["real", "drr", *controls]
    assert (realism.n_folds == 2).all() and (realism.n_images == 2).all()
    assert (realism.frechet_distance >= 0).all() and realism.intensity_distance.notna().all()
    fidelity = pd.read_csv(res / "report" / "label_fidelity.csv")
    assert set(fidelity.fold) == {"0", "1", "mean"} and "all" in set(fidelity.landmark)
    steps = pd.read_csv(res / "report" / "sampler_steps.csv")
    assert steps.loc[steps.fold == "mean", "evaluations_per_image"].tolist() == [4]
    assert (metrics.n_images == 6).all() and set(metrics.test_data) == {
        "proxy-real (demo acquisition model); subjects are deformations of one CT, "
        "not independent patients"
    }
    steps = pd.read_csv(res / "report" / "control_steps.csv")
    assert list(zip(steps["from"], steps.to, strict=True)) == [
        ("drr", "drr_grid"),
        ("drr_grid", "drr_recon"),
        ("drr_recon", "synth3d_nolatent"),
        ("synth3d_nolatent", "synth3d"),
        ("real", "real_resized"),
        ("real_resized", "synth2d"),
    ]
    assert steps.diff_mean_mm.notna().all() and (steps.paired_n > 0).all()
    per_fold = pd.read_csv(res / "report" / "per_fold.csv")
    assert per_fold.fold.tolist() == [0, 1] * len(metrics) and (per_fold.n_images == 3).all()
    for name in (
        "metrics.md",
        "metrics.tex",
        "per_landmark.csv",
        "cumulative_error.png",
        "per_landmark.png",
        "examples.png",
        "scaling.png",
    ):
        assert (res / "report" / name).stat().st_size > 100, name
    table = (res / "report" / "metrics.md").read_text()
    assert "proxy-real" in table and "deformations of one CT" in table
    assert "bootstrap (2000 resamples) of whole test images (6 clusters;" in table
    assert planned_jobs(workdir) == {}  # up to date
    bench = pd.read_csv(
        res / "benchmarks" / "train_detector" / "real" / "fold0_seed0.tsv", sep="\t"
    )
    assert len(bench) == 1 and bench.s.iloc[0] > 0 and bench.max_rss.iloc[0] > 0
    times = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "rule_times.py"), str(res / "benchmarks")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    jobs = {row.split("|")[1].strip(): float(row.split("|")[2]) for row in times.splitlines()[2:]}
    assert jobs["train_detector"] == 8 * 2  # tests/configs/tiny.yaml: 8 arms, 2 folds, 1 seed
    assert jobs["total"] == sum(v for k, v in jobs.items() if k != "total")

    # the transfer diagnostic: its "as is" images are the study's own test images (same views,
    # same random stream), so the `real` detector's error there is the study's
    ablation = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "proxy_ablation.py"), "--workdir",
         str(workdir), "--arms", "real", "--variants", "as is", "no collimation",
         "held-out DRRs"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert ablation.returncode == 0, ablation.stderr[-3000:]
    rows = {r.split("|")[1].strip(): r.split("|")[2:5] for r in ablation.stdout.splitlines()[3:]}
    assert list(rows) == ["as is", "no collimation", "held-out DRRs"]
    own = with_errors(pd.read_csv(res / "predictions" / "real" / "fold0_seed0.csv"))
    assert float(rows["as is"][0]) == pytest.approx(own.err_mm.mean(), abs=0.006)

    # a test subject's image set changes (demo01: fold 1's test subject): fold 1 is evaluated
    # again, but no detector or generator of fold 1 is retrained (its inputs do not hold it)
    shard = res / "imagesets" / "real" / "demo01.h5"
    shutil.copy2(shard, tmp_path / "demo01.h5")
    try:
        with h5py.File(shard, "a") as f:  # new content (a newer mtime alone does not count)
            f.attrs["edited"] = "by the test"
        jobs = planned_runs(workdir)
    finally:
        shutil.copy2(tmp_path / "demo01.h5", shard)
    trained = {(rule, w["fold"]) for rule, w in jobs if rule.startswith("train_")}
    assert ("train_detector", "0") in trained and ("train_synth2d", "0") in trained
    assert not [job for job in trained if job[1] == "1"], trained
    assert ("evaluate_detector", "1") in {(rule, w.get("fold")) for rule, w in jobs}
    assert planned_jobs(workdir) == {}

    # regenerate from cache: without the report, only the report is planned
    shutil.rmtree(res / "report")
    reports = {"report": 1, "report_realism": 1, "report_synth2d": 1, "report_synth3d": 1}
    assert planned_jobs(workdir) == {**reports, "all": 1}
    r = run(workdir, "--cores", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert pd.read_csv(res / "report" / "metrics.csv").equals(metrics)
    r = run(workdir, "--report", str(workdir / "report.html"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert (workdir / "report.html").stat().st_size > 10_000

    # config changes, planned on a copy of the study (the study itself stays as it is)
    scope = tmp_path / "scope"
    shutil.copytree(workdir, scope, symlinks=True)
    # a sampler change resamples synth2d and reruns what depends on it, nothing else
    changed = {**TINY, "synth2d": {**TINY["synth2d"], "sampler": {"kind": "ddim", "steps": 3}}}
    arm_jobs = {
        "sample_synth2d": 4,
        "synth2d_fidelity": 2,
        "imageset_qc": 1,
        "train_detector": 2,
        "evaluate_detector": 2,
        "report_synth2d": 1,
    }
    study_dir(scope, changed)
    # (and the figure of what the detectors train on, and realism: every arm's, per fold)
    study_jobs = {"augmentation_qc": 1, "realism": 2, "report": 1, "report_realism": 1, "all": 1}
    assert planned_jobs(scope) == {**arm_jobs, **study_jobs}
    assert planned_jobs(scope, "synth2d") == {**arm_jobs, "synth2d": 1}  # the arm's target
    # a drr renderer change re-renders the DRR arms (drr; synth3d shares its renderer by
    # design) and reruns what depends on them: no real or synth2d job, no synth3d generator job
    changed = {**TINY, "drr": {**TINY["drr"], "kvp": 100.0}}
    # (and the DRR controls, which render like drr)
    arm_jobs = {"render_imageset": 3, "imageset_qc": 1, "train_detector": 2}
    arm_jobs |= {"evaluate_detector": 2}
    study_dir(scope, changed)
    assert planned_jobs(scope, "drr") == {**arm_jobs, "drr": 1}
    assert planned_jobs(scope) == {
        "render_imageset": 3,
        "render_synth3d": 8,  # synth3d's and synth3d_nolatent's
        "render_drr_grid": 3,
        "render_drr_recon": 4,
        **{rule: 5 * arm_jobs[rule] for rule in ("imageset_qc", "train_detector")},
        "evaluate_detector": 5 * arm_jobs["evaluate_detector"],
        **study_jobs,
    }
    # a synth3d sampler change regenerates its CTs and what depends on them, nothing else
    changed = {**TINY, "synth3d": {**TINY["synth3d"], "sampler": {"kind": "ddpm"}}}
    assert planned_jobs(study_dir(scope, changed)) == {
        "sample_synth3d": 2,
        "render_synth3d": 4,
        "synth3d_quality": 2,
        "report_synth3d": 1,
        "imageset_qc": 1,
        "train_detector": 2,
        "evaluate_detector": 2,
        **study_jobs,
    }

    # a scaling sweep: each size plans only its detectors, their evaluations and the report;
    # the sizes' training images are nested (2 of the 4 of `real` itself, of the 6 of a fold)
    sizes = []
    for size in (2, 6):
        sizes.append(size)
        sweep = {**TINY, "detector": {**TINY["detector"], "sizes": {"real": sizes}}}
        point = {"train_detector": 2, "evaluate_detector": 2, "report": 1, "all": 1}
        assert planned_jobs(study_dir(scope, sweep)) == point
        r = run(scope, "--cores", "2")
        assert r.returncode == 0, r.stderr[-3000:]
    trained = {
        arm: torch.load(scope / f"results/detector/{arm}/fold1/seed0/model.pt", weights_only=False)
        for arm in ("real@2", "real", "real@6")
    }
    ids = [set(trained[arm]["meta"]["image_ids"]) for arm in ("real@2", "real", "real@6")]
    assert [len(i) for i in ids] == [2, 4, 6] and ids[0] < ids[1] < ids[2]
    assert not {i.split("/")[0] for i in ids[2]} & {"demo01"}  # fold 1's test subject
    # a recipe mixes sources: each source's first images, as that source's own sweep point
    recipe = {"real": 2, "drr": 3}
    sweep["detector"]["recipes"] = {"real+drr": recipe}
    assert planned_jobs(study_dir(scope, sweep)) == point
    r = run(scope, "--cores", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    mixed = torch.load(scope / "results/detector/real+drr/fold1/seed0/model.pt", weights_only=False)
    assert mixed["meta"]["counts"] == recipe
    mixed_ids = mixed["meta"]["image_ids"]
    assert sorted(i for i in mixed_ids if i.startswith("real:")) == sorted(
        f"real:{i}" for i in trained["real@2"]["meta"]["image_ids"]
    )
    drr = torch.load(scope / "results/detector/drr/fold1/seed0/model.pt", weights_only=False)
    drr_ids = {f"drr:{i}" for i in drr["meta"]["image_ids"]}
    assert len([i for i in mixed_ids if i in drr_ids]) == 3 and len(mixed_ids) == 5
    assert not [i for i in mixed_ids if ":demo01/" in i]  # never the fold's test subject
    table = pd.read_csv(scope / "results/report/metrics.csv").set_index("arm")
    assert table.compared_with["drr"] == "real" and table.compared_with.isna()["real@6"]
    assert table.compared_with.isna()["real+drr"]  # 5 images; the sweep has no real@5
    assert table.diff_mean_mm.isna()[["real+drr", "real@2", "real"]].all()  # none, or itself
    assert not table.diff_mean_mm.isna()["drr"]
    scaling = pd.read_csv(scope / "results/report/scaling.csv").set_index("arm")
    assert scaling.loc[["real@2", "real", "real@6"], "n_train"].tolist() == [2, 4, 6]
    assert set(scaling.line[["real@2", "real", "real@6"]]) == {"real"}
    assert scaling.line["real+drr"] == "recipe" and scaling.n_train["real+drr"] == 5
    assert scaling.mean_mm["real@6"] == table.mean_mm["real@6"]
    assert scaling.success_10mm["real@6"] == table.success_10mm["real@6"]
    assert scaling.detection_rate["real@6"] == table.detection_rate["real@6"]
    r = run(scope, "--report", str(scope / "report.html"))
    assert r.returncode == 0 and "scaling.png" in (scope / "report.html").read_text()
    # generated arms make more to order: new synth2d shards and synth3d parts only, the arms'
    # own images and detectors untouched; a larger set holds the smaller one's images
    sweep["detector"]["sizes"] = {"real": [2, 6], "synth2d": [6], "synth3d": [8]}
    assert planned_jobs(study_dir(scope, sweep)) == {
        "sample_synth2d": 2,
        "render_synth3d": 4,
        "train_detector": 4,
        "evaluate_detector": 4,
        "report": 1,
        "all": 1,
    }
    r = run(scope, "--cores", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    for arm, larger, n in (("synth2d", "synth2d@6", 6), ("synth3d", "synth3d@8", 8)):
        own, more = (
            torch.load(scope / f"results/detector/{a}/fold1/seed0/model.pt", weights_only=False)
            for a in (arm, larger)
        )
        assert set(own["meta"]["image_ids"]) < set(more["meta"]["image_ids"])
        assert len(more["meta"]["image_ids"]) == n
    assert sorted(more["meta"]["image_ids"]) == [  # every volume's first 4 DRRs (3 + 1)
        f"synth3d-f1-v{v}/{k}" for v in (0, 1) for k in range(4)
    ]

    # a user's cohort in the same layout plugs in through the config alone
    user = study_dir(
        tmp_path / "user",
        {**TINY, "cohort": {"source": "sheet", "sheet": str(res / "cohort" / "subjects.tsv")}},
    )
    jobs = planned_jobs(user)
    assert "demo_subject" not in jobs and "fetch_demo_data" not in jobs
    assert jobs["render_imageset"] == 6 and jobs["cohort_qc"] == 1 and jobs["report"] == 1


def _incomplete(workdir: Path) -> set[Path]:
    """Outputs Snakemake marked incomplete (jobs running when it died)."""
    markers = (workdir / ".snakemake" / "incomplete").glob("*")
    return {workdir / base64.b64decode(m.name).decode() for m in markers if m.is_file()}


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_metrics(tiny_study, tmp_path):
    """SIGKILL on Snakemake and its jobs mid-run (a lost login node), then --rerun-incomplete:
    finished jobs are kept, and the metrics equal those of the uninterrupted tiny study."""
    workdir = study_dir(tmp_path, {**TINY, "detector": {**TINY["detector"], "arms": ["real"]}})
    res = workdir / "results"
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen(
        [*SNAKEMAKE, "-d", str(workdir), "--cores", "2"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + RUN_LIMIT_S
    while not list(res.glob("detector/*/*/*/model.pt")):  # some detectors trained, more to go
        assert proc.poll() is None and time.monotonic() < deadline, "run ended before the kill"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = {p: p.stat().st_mtime_ns for p in res.rglob("*") if p.is_file()}
    redo = _incomplete(workdir)
    assert kept and not (workdir / "results" / "report").exists()

    assert run(workdir, "--unlock").returncode == 0  # the dead run's lock
    r = run(workdir, "--cores", "2", "--rerun-incomplete")
    assert r.returncode == 0, r.stderr[-3000:]
    for path, mtime in kept.items():
        if path not in redo:
            assert path.stat().st_mtime_ns == mtime, f"{path} was redone"
    metrics = pd.read_csv(res / "report" / "metrics.csv").set_index("arm")
    reference = pd.read_csv(tiny_study / "reference_metrics.csv").set_index("arm")
    pd.testing.assert_frame_equal(metrics, reference.loc[metrics.index])


def test_paper_scale_study_plans_within_500_jobs(tmp_path):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    paper = REPO / "benchmarks" / "paper_scale.yaml"
    jobs = planned_jobs(study_dir(tmp_path, config), "--configfile", str(paper))
    assert sum(jobs.values()) <= 500
    assert jobs["train_detector"] == jobs["evaluate_detector"] == 6 * 4 * 3
    assert jobs["render_imageset"] == 12 and jobs["sample_synth2d"] == 6 * 4
    assert jobs["render_synth3d"] == 6 * 5 and jobs["report"] == 1
