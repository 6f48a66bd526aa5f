"""Compute cost of a study configuration (default: the paper's), measured on this machine.

    python benchmarks/paper_cost.py [--config config/deepfluoro.yaml] [--device cpu|cuda]
                                    [--steps 2] [--ct CT]

Each workload runs at the configuration's sizes on synthetic inputs (time per step does not
depend on the data): the trainings for `--steps` and 2 x `--steps` steps after a warm-up run,
whose difference cancels the set-up; a synth3d volume, a few synth2d images and DRRs. The table
multiplies the seconds per unit by the units the configuration implies (folds, arms, seeds,
steps, images); each measurement is printed to stderr as it ends.
DRRs use the configured backend when it can run here, else the torch renderer, on `--ct`
(the demo CT; DeepFluoro's CTs are larger). Evaluation, imports and bookkeeping (seconds each)
are left out.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from snakemake.utils import update_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from xrayfactory.cohort.sheet import demo_subjects, folds  # noqa: E402
from xrayfactory.cohort.volumes import load_ct  # noqa: E402
from xrayfactory.core.config import validate_config  # noqa: E402
from xrayfactory.core.images import preprocess  # noqa: E402
from xrayfactory.detection import detector  # noqa: E402
from xrayfactory.detection.training_sets import (  # noqa: E402
    available_images,
    training_sets,
    unit_size,
    units_to_make,
    with_arms,
)
from xrayfactory.imaging.drr import deepdrr_available, make_renderer  # noqa: E402
from xrayfactory.imaging.geometry import CArm, ViewSampler, projection_matrix  # noqa: E402
from xrayfactory.imaging.splits import GENERATED  # noqa: E402
from xrayfactory.synth2d import model as synth2d  # noqa: E402
from xrayfactory.synth3d import model as synth3d  # noqa: E402
from xrayfactory.synth3d.ctgrid import grid_spec  # noqa: E402

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
NEVER = 10**9  # no intermediate checkpoints while timing


def load(path: str) -> dict:
    """The demo configuration with `path` merged over it, as Snakemake merges config files."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    update_config(config, yaml.safe_load(Path(path).read_text()))
    return validate_config(config, SCHEMA, where=path)


def seconds(fn: Callable[[], object], device: torch.device) -> float:
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def per_step(train: Callable[[int, Path], None], k: int, device: torch.device) -> float:
    """Seconds per step of `train(steps, out)`: (t(2k) - t(k)) / k after a warm-up run, so
    that set-up (network, data, first-call initialisation) cancels."""
    with tempfile.TemporaryDirectory() as tmp:
        train(1, Path(tmp) / "warm-up.pt")
        once = seconds(lambda: train(k, Path(tmp) / "a.pt"), device)
        twice = seconds(lambda: train(2 * k, Path(tmp) / "b.pt"), device)
    if twice <= once:  # set-up noise larger than k steps: report the bound that includes it
        print(f"warning: t({2 * k}) <= t({k}); an upper bound (raise --steps)", file=sys.stderr)
        return twice / (2 * k)
    return (twice - once) / k


def _landmarks(rng, n: int, n_landmarks: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    uv = rng.uniform(0.2 * size, 0.8 * size, (n, n_landmarks, 2)).astype(np.float32)
    return uv, np.ones((n, n_landmarks), bool)


def detector_step(c: dict, dev: str, k: int, device: torch.device) -> float:
    """One detector step: a batch at the configured input size, augmentation included."""
    s = replace(detector.DetectorSettings.from_config(c["detector"], 0), epochs=1)
    rows, names = CArm(**c["carm"]).rows, c["landmarks"]["names"]
    rng = np.random.default_rng(0)

    def train(steps: int, out: Path) -> None:  # one epoch of `steps` batches
        n = steps * s.batch_size
        uv, vis = _landmarks(rng, n, len(names), rows)
        images = rng.random((n, rows, rows), dtype=np.float32)
        data = preprocess(images, uv, vis, s.image_size)
        detector.train(data, names, s, out, meta={}, device=dev)

    return per_step(train, k, device)


def synth2d_step(c: dict, dev: str, k: int, device: torch.device) -> float:
    s = replace(synth2d.settings_from(c["synth2d"], 0), checkpoint_every=NEVER)
    names, size = c["landmarks"]["names"], s.image_size
    rng = np.random.default_rng(0)
    uv, vis = _landmarks(rng, s.batch_size, len(names), size)
    images = torch.as_tensor(rng.random((s.batch_size, 1, size, size), dtype=np.float32))

    def train(steps: int, out: Path) -> None:
        settings = replace(s, train_steps=steps)
        synth2d.train(
            images,
            torch.as_tensor(uv),
            torch.as_tensor(vis),
            names,
            settings,
            out,
            meta={},
            device=dev,
        )

    return per_step(train, k, device)


def synth2d_image_eval(c: dict, dev: str, k: int, device: torch.device) -> float:
    """Seconds per image and network evaluation of the configured sampler (its batch size on
    a GPU, `k` images on the CPU)."""
    s = replace(synth2d.settings_from(c["synth2d"], 0), train_steps=1)
    names, sampler = c["landmarks"]["names"], c["synth2d"]["sampler"]
    with tempfile.TemporaryDirectory() as tmp:
        uv, vis = _landmarks(np.random.default_rng(0), 1, len(names), s.image_size)
        images = torch.zeros((1, 1, s.image_size, s.image_size))
        out = Path(tmp) / "g.pt"
        synth2d.train(images, torch.as_tensor(uv), torch.as_tensor(vis), names, s, out, meta={})
        gen = synth2d.Synth2D(out, device=dev)
    n = sampler["batch_size"] if device.type == "cuda" else k
    uv, vis = _landmarks(np.random.default_rng(1), n, len(names), s.image_size)

    def sample() -> None:
        gen.sample(
            uv,
            vis,
            sampler=sampler["kind"],
            steps=sampler["steps"],
            guidance=sampler["guidance"],
            rng_key=(0,),
            batch_size=n,
        )

    evals = synth2d.network_evaluations(sampler["steps"], sampler["guidance"])
    return seconds(sample, device) / (n * evals)


def synth3d_steps(c: dict, dev: str, k: int, device: torch.device) -> tuple[float, ...]:
    """Seconds per autoencoder step, per diffusion step and per generated volume."""
    section = c["synth3d"]
    spec = grid_spec(section)
    r = replace(synth3d.runtime(section, 0), checkpoint_every=NEVER)
    a = synth3d.autoencoder_settings(section)
    d = synth3d.diffusion_settings(section)
    rng = np.random.default_rng(0)
    n = max(a.batch_size, d.batch_size)
    volumes = rng.random((n, 1, *spec.shape), dtype=np.float32)
    conditions = (rng.random((n, len(spec.channels), *spec.shape)) > 0.5).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        ae = Path(tmp) / "ae.pt"

        def train_ae(steps: int, out: Path) -> None:
            synth3d.train_autoencoder(
                volumes, conditions, spec, replace(a, steps=steps), r, out, meta={}, device=dev
            )
            out.replace(ae)

        def train_ldm(steps: int, out: Path) -> None:
            synth3d.train_diffusion(
                ae, volumes, conditions, replace(d, steps=steps), r, out, meta={}, device=dev
            )

        ae_step = per_step(train_ae, k, device)
        ldm_step = per_step(train_ldm, k, device)
        ldm = Path(tmp) / "ldm.pt"
        synth3d.train_diffusion(ae, volumes, conditions, replace(d, steps=1), r, ldm, meta={})
        model = synth3d.Synth3D(ae, ldm, device=dev)
    sampler = section["sampler"]

    def generate() -> None:
        model.generate(
            conditions[:1], sampler=sampler["kind"], steps=sampler["steps"], rng_key=(0,)
        )

    return ae_step, ldm_step, seconds(generate, device)


def drr_image(c: dict, dev: str, k: int, ct_path: str, device: torch.device) -> tuple[float, str]:
    """Seconds per DRR on the configured detector grid, and the backend that made them."""
    backend = c["drr"]["backend"]
    if backend != "torch" and not (device.type == "cuda" and deepdrr_available()):
        backend = "torch"
    kwargs = {"kvp": c["drr"]["kvp"]} if backend == "deepdrr" else {"device": dev}
    renderer = make_renderer(backend, **kwargs)
    carm = CArm(**c["carm"])
    ct = load_ct(ct_path)
    centre = ct.voxel_to_world((np.asarray(ct.shape)[None] - 1) / 2)[0]
    views = ViewSampler.from_config(c["views"]).sample(k + 1, np.random.default_rng(0))
    ps = np.stack([projection_matrix(carm, v, centre) for v in views])
    vol = renderer.prepare(ct)  # once per subject, as the workflow renders a subject's set
    renderer.render(vol, ps[:1], carm.rows, carm.cols)  # warm-up
    return seconds(lambda: renderer.render(vol, ps[1:], carm.rows, carm.cols), device) / k, backend


def units(c: dict, subjects: list[str]) -> dict[str, int]:
    """How many steps, images and volumes the configured study makes (its sweep and recipes
    included: every training set trains for `detector.epochs`)."""
    split = folds(subjects, c["split"]["scheme"], c["split"]["n_folds"], c["split"]["folds"])
    n_folds = split.fold.nunique()
    det, s2, s3 = c["detector"], c["synth2d"], c["synth3d"]
    sets = with_arms(det, training_sets(det, available_images(c, split)))
    det_steps = sum(
        det["epochs"] * max(1, sum(n.values()) // det["batch_size"]) for n in sets.values()
    )
    uses = {arm: any(arm in n for n in sets.values()) for arm in ("drr", *GENERATED)}
    made = {arm: units_to_make(c, sets, arm) * unit_size(c, arm) * uses[arm] for arm in GENERATED}
    evals = synth2d.network_evaluations(s2["sampler"]["steps"], s2["sampler"]["guidance"])
    fidelity = sum(
        synth2d.network_evaluations(f["steps"], f["guidance"]) for f in s2["fidelity"]["samplers"]
    )
    return {
        "detector": n_folds * len(det["seeds"]) * det_steps,
        "synth2d train": n_folds * s2["train_steps"] * uses["synth2d"],
        "synth2d sample": n_folds
        * (made["synth2d"] * evals + s2["fidelity"]["n_images"] * fidelity * uses["synth2d"]),
        "synth3d autoencoder": n_folds * s3["autoencoder"]["steps"] * uses["synth3d"],
        "synth3d diffusion": n_folds * s3["diffusion"]["steps"] * uses["synth3d"],
        "synth3d generate": n_folds * s3["n_volumes"] * uses["synth3d"],
        "DRR": len(subjects) * c["drr"]["images_per_subject"] * uses["drr"]
        + n_folds * (made["synth3d"] + made["synth3d_nolatent"]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "config" / "deepfluoro.yaml"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=2)
    shared = Path(os.environ.get("XRAYFACTORY_SHARED", REPO.parent / "shared"))
    p.add_argument("--ct", default=str(shared / "data/pelvis-ct/example_ct.nii.gz"))
    a = p.parse_args()
    c = load(a.config)
    device = torch.device(a.device)
    subjects = (
        list(c["deepfluoro"]["specimens"])
        if c["cohort"]["source"] == "deepfluoro"
        else demo_subjects(c["cohort"]["n_subjects"])
    )
    k, start = a.steps, time.perf_counter()

    def timed(what: str, fn: Callable[[], Any]) -> Any:
        out = fn()
        shown = " ".join(
            f"{v:.4g}" if isinstance(v, float) else str(v)
            for v in (out if isinstance(out, tuple) else (out,))
        )
        print(
            f"[{time.perf_counter() - start:5.0f} s] {what}: {shown}", file=sys.stderr, flush=True
        )
        return out

    ae, ldm, volume = timed(
        "synth3d (s/step, s/step, s/volume)", lambda: synth3d_steps(c, a.device, k, device)
    )
    measured = {
        "detector": (timed("detector", lambda: detector_step(c, a.device, k, device)), "step"),
        "synth2d train": (timed("synth2d", lambda: synth2d_step(c, a.device, k, device)), "step"),
        "synth2d sample": (
            timed("sampling", lambda: synth2d_image_eval(c, a.device, k, device)),
            "image x evaluation",
        ),
        "synth3d autoencoder": (ae, "step"),
        "synth3d diffusion": (ldm, "step"),
        "synth3d generate": (volume, "volume"),
    }
    drr, backend = timed("DRR", lambda: drr_image(c, a.device, 2 * k, a.ct, device))
    measured["DRR"] = (drr, f"image ({backend})")
    name = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"{torch.get_num_threads()} CPU threads"
    )
    print(f"{a.config} on {name}")
    print(f"{'workload':<21}{'unit':<22}{'s/unit':>10}{'units':>12}{'hours':>9}")
    total = 0.0
    for what, count in units(c, subjects).items():
        sec, unit = measured[what]
        total += sec * count / 3600
        print(f"{what:<21}{unit:<22}{sec:>10.4f}{count:>12,}{sec * count / 3600:>9.2f}")
    print(f"{'total':<65}{total:>9.2f}")


if __name__ == "__main__":
    main()
