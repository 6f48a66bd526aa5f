"""The synth2d generator: conditioning, shape model, new views, train-then-sample, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import sigterm_after_checkpoint, write_blob_shard, xrayfactory_cli
from xrayfactory.core.errors import InputError
from xrayfactory.core.images import preprocess
from xrayfactory.detection.heatmaps import peaks
from xrayfactory.imaging.geometry import CArm, ViewSampler, project
from xrayfactory.imaging.imageset import read_imageset, write_imageset
from xrayfactory.imaging.views import shape_views
from xrayfactory.synth2d.model import (
    Synth2D,
    Synth2DSettings,
    conditioning,
    generate,
    make_sampler,
    noise_schedule,
)
from xrayfactory.synth2d.shapes import ShapeModel, pairwise_distances

NAMES = ["A", "B", "C"]
SIZE = 16
TINY = {
    "image_size": SIZE,
    "channels": [8, 8],
    "attention": False,
    "sigma_px": 1.0,
    "timesteps": 100,
    "train_steps": 40,
    "batch_size": 4,
    "learning_rate": 0.002,
    "warmup_steps": 2,
    "ema_decay": 0.9,
    "checkpoint_every": 5,
}


def test_conditioning_heatmaps_round_trip_to_their_landmarks():
    lm = torch.tensor([[[10.3, 20.6], [40.0, 5.25], [33.0, 33.0]]])
    vis = torch.tensor([[True, True, False]])
    cond = conditioning(lm, vis, torch.tensor([True]), 64, 1.5)
    assert cond.shape == (1, 4, 64, 64)
    xy, value = peaks(cond[:, :3])
    assert torch.allclose(xy[0, :2], lm[0, :2], atol=0.02)
    assert value[0, 2] == 0  # an invisible landmark's channel is empty
    assert torch.all(cond[:, 3] == 1)  # the condition-present channel
    dropped = conditioning(lm, vis, torch.tensor([False]), 64, 1.5)
    assert torch.count_nonzero(dropped) == 0


def _subjects(n: int, seed: int = 0) -> np.ndarray:
    """Plausible 3D configurations: a template pelvis scaled, shifted and perturbed."""
    template = np.array([[-80.0, 0, 0], [80, 0, 0], [0, 60, 40]])
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.9, 1.1, (n, 1, 1))
    return template * scale + rng.normal(0, 3, (n, 3, 3)) + rng.normal(0, 50, (n, 1, 3))


def test_shape_model_samples_keep_landmarks_and_plausible_distances():
    shapes = _subjects(6)
    model = ShapeModel.fit(shapes, NAMES, "test")
    samples = model.sample(500, np.random.default_rng(1))
    assert samples.shape == (500, 3, 3)
    assert np.allclose(samples.mean(axis=1), 0, atol=1e-9)  # centred on the centroid
    d_train = pairwise_distances(shapes)
    d = pairwise_distances(samples)
    iu = np.triu_indices(3, 1)
    lo, hi = d_train[:, *iu].min(0), d_train[:, *iu].max(0)
    spread = hi - lo
    assert np.all(d[:, *iu] > lo - spread) and np.all(d[:, *iu] < hi + spread)
    assert d[:, *iu].std(0).min() > 0  # it varies
    assert np.allclose(model.sample(3, np.random.default_rng(0), scale=0.0), model.mean)


def test_shape_model_of_one_subject_is_that_subject():
    one = _subjects(1)
    model = ShapeModel.fit(one, NAMES, "test")
    assert len(model.sd) == 0
    assert np.allclose(model.sample(2, np.random.default_rng(0)), one - one.mean(axis=1))
    with pytest.raises(InputError, match="need \\(subjects, 3, 3\\)"):
        ShapeModel.fit(one[:, :2], NAMES, "test")


def test_new_views_label_the_generated_grid_like_the_detector_resize():
    carm = CArm(detector_rows=384, detector_cols=384, pixel_spacing=2.0, downsample=1)
    shapes = ShapeModel.fit(_subjects(4), NAMES, "t").sample(5, np.random.default_rng(2))
    sampler = ViewSampler(lao_deg=(-20, 20), cran_deg=(-10, 10))
    views, ps, uv, vis = shape_views(shapes, NAMES, carm, sampler, np.random.default_rng(3), 64)
    assert views.shape == (5, 6) and ps.shape == (5, 3, 4) and vis.all()
    for p, u, shape in zip(ps, uv, shapes, strict=True):
        assert np.allclose(project(p, shape)[0], u, atol=1e-9)
    # the same labels as full-resolution projection followed by the detector's resize
    _, _, uv_full, _ = shape_views(shapes, NAMES, carm, sampler, np.random.default_rng(3), 384)
    resized = preprocess(np.zeros((5, 384, 384)), uv_full, vis, 64).landmarks.numpy()
    assert np.allclose(resized, uv, atol=1e-4)


def test_unknown_sampler_is_refused():
    with pytest.raises(InputError, match="unknown sampler 'euler'"):
        make_sampler("euler", 10, noise_schedule(Synth2DSettings()))


def _real_shard(path: Path, subject: str, seed: int) -> Path:
    """A dark field with bright dots at the landmarks: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    n = 6
    lm = rng.uniform(3, SIZE - 4, (n, len(NAMES), 2)).astype(np.float32)
    return write_blob_shard(path, subject, NAMES, lm, SIZE, 2.0)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth2d")
    subjects = ["s0", "s1", "s2"]
    shards = [_real_shard(d / f"{s}.h5", s, i) for i, s in enumerate(subjects)]
    return d, shards


SELECTION = {"n_images": 8, "seed": 0}  # the real arm's detector: 8 of the fold's 12 images


def _train_args(shards: list[Path], out: Path) -> list[str]:
    settings = json.dumps({"seed": 0, "device": "cpu", "synth2d": TINY, "selection": SELECTION})
    return [
        "train-synth2d",
        "--fold",
        "0",
        "--train-subjects",
        "s1",
        "s2",
        "--out",
        str(out),
        "--settings",
        settings,
        *map(str, shards),
    ]


@pytest.fixture(scope="module")
def generator(study) -> Path:
    d, shards = study
    path = d / "full" / "model.pt"
    r = xrayfactory_cli(*_train_args(shards, path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "synth2d training:" in r.stderr and "ETA" in r.stderr
    return path


def test_generator_learns_from_exactly_the_real_arms_training_images(study, generator):
    """Not every real image of the fold's training subjects (12): the 8 the `real` arm's
    detector of the first seed trains on, the same image ids."""
    d, shards = study
    meta = torch.load(generator, weights_only=True)["meta"]
    assert meta["fold"] == 0 and meta["subjects"] == ["s1", "s2"]
    detector = d / "real-detector.pt"
    settings = {
        "seed": 0,
        "device": "cpu",
        "detector": {"train_images": 8, "image_size": SIZE, "channels": [4, 8], "epochs": 1},
    }
    r = xrayfactory_cli(
        "train-detector",
        *("--arm", "real", "--fold", "0", "--seed", "0", "--train-subjects", "s1", "s2"),
        *("--out", str(detector), "--settings", json.dumps(settings), *map(str, shards)),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    real_ids = torch.load(detector, weights_only=True)["meta"]["image_ids"]
    assert len(meta["image_ids"]) == 8 and meta["image_ids"] == real_ids
    assert all(i.split("/")[0] in ("s1", "s2") for i in real_ids)


def test_sigterm_then_resume_equals_an_uninterrupted_run(study, generator):
    d, shards = study
    out = d / "resumed" / "model.pt"
    last = out.with_name("model.pt.last.pt")
    sigterm_after_checkpoint(xrayfactory_cli(*_train_args(shards, out), wait=False), last)
    assert last.exists() and not out.exists()
    r = xrayfactory_cli(*_train_args(shards, out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming synth2d training from" in r.stderr and not last.exists()
    a = torch.load(generator, weights_only=True)["model"]
    b = torch.load(out, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kind", ["ddpm", "ddim", "dpmsolver++"])
def test_train_then_sample_makes_labelled_image_sets(generator, tmp_path, kind):
    gen = Synth2D(generator, device="cpu")
    shapes = ShapeModel.fit(_subjects(3), NAMES, "t")
    carm = CArm(
        detector_rows=160, detector_cols=160, pixel_spacing=2.0, sdd=1000, sid=600, downsample=1
    )
    sampler = {"kind": kind, "steps": 10, "guidance": 2.0, "batch_size": 3}
    views = ViewSampler(lao_deg=(-10, 10))
    made = [
        generate(gen, shapes, carm, views, 5, sampler=sampler, rng_key=(0, "t"), fold=0)
        for _ in range(2)
    ]
    s = made[0]
    assert s.images.shape == (5, SIZE, SIZE) and np.isfinite(s.images).all()
    assert s.images.min() >= 0 and s.images.max() <= 1 and s.images.std() > 0
    assert np.array_equal(s.images, made[1].images)  # same key -> same images
    assert s.attrs["pixel_spacing_mm"] == pytest.approx(20.0)  # 160 px of 2 mm on 16 px
    # it draws what it was conditioned on: bright dots at the labelled landmarks
    px = np.round(s.landmarks).astype(int)
    inside = s.visible & (px >= 0).all(-1) & (px < SIZE).all(-1)
    i, j = np.nonzero(inside)
    at_labels = s.images[i, px[i, j, 1], px[i, j, 0]]
    assert len(at_labels) >= 5 and np.mean(at_labels) > s.images.mean() + 0.3
    write_imageset(tmp_path / "g.h5", s)
    back = read_imageset(tmp_path / "g.h5")
    assert back.attrs["arm"] == "synth2d" and back.attrs["fold"] == 0
    assert np.allclose(back.landmarks, s.landmarks, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_training_with_mixed_precision_and_compile(study, tmp_path):
    _, shards = study
    cfg = {**TINY, "mixed_precision": True, "compile": True}
    settings = json.dumps({"seed": 0, "device": "cuda", "synth2d": cfg, "selection": SELECTION})
    out = tmp_path / "gpu.pt"
    args = _train_args(shards, out)
    args[args.index("--settings") + 1] = settings
    r = xrayfactory_cli(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    gen = Synth2D(out, device="cuda")
    lm = np.full((2, len(NAMES), 2), 8.0)
    images = gen.sample(
        lm, np.ones((2, 3), bool), sampler="dpmsolver++", steps=5, guidance=2.0, rng_key=(0,)
    )
    assert images.shape == (2, SIZE, SIZE) and np.isfinite(images).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_training_twice_gives_the_same_weights(study, tmp_path):
    """One seed, one GPU, the same weights: attention's backward (cuDNN) is non-deterministic
    unless deterministic kernels are asked for (core.device)."""
    _, shards = study
    cfg = {**TINY, "attention": True}
    settings = json.dumps({"seed": 0, "device": "cuda", "synth2d": cfg, "selection": SELECTION})
    weights = []
    for name in ("a.pt", "b.pt"):
        args = _train_args(shards, tmp_path / name)
        args[args.index("--settings") + 1] = settings
        r = xrayfactory_cli(*args)
        assert r.returncode == 0, r.stderr[-2000:]
        weights.append(torch.load(tmp_path / name, weights_only=True)["model"])
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.parametrize("kind", ["ddpm", "ddim", "dpmsolver++"])
def test_samplers_start_from_pure_noise_whatever_the_step_count(kind):
    """Sampling starts at the last training timestep (signal scale ~0), as the starting sample
    is pure noise; diffusers' default "leading" spacing started DDIM at t = 900 (signal scale
    0.15) and moved the start with the step count."""
    schedule = noise_schedule(Synth2DSettings())
    starts = set()
    for steps in (10, 25):
        sched = make_sampler(kind, steps, schedule)
        start = int(sched.timesteps[0])
        starts.add(start)
        assert schedule.alphas_cumprod[start].sqrt() < 0.02  # signal scale of the start
        assert len(sched.timesteps) >= steps
    assert len(starts) == 1


def test_label_fidelity_beside_guessing_the_mean_position():
    """Predictions 2 px off every label: fidelity 2 px (x spacing in mm); the mean-position
    guess is each visible label's distance from its landmark's mean visible label, and a
    missed label counts in the detection rate, not in the error."""
    from tests.imaging.test_imageset import _set
    from xrayfactory.synth2d.fidelity import fidelity_table, label_errors

    s = _set(n=4, size=16)
    s.landmarks[:, 0] = [[2, 2], [4, 2], [6, 2], [8, 2]]  # landmark A: mean (5, 2)
    s.landmarks[:, 1] = [[8, 8]] * 4  # landmark B: always at (8, 8)
    s.visible[:] = True
    s.visible[3, 0] = False  # A of image 3 out of view: mean of the others, (4, 2)
    s.attrs["magnification"] = 2.0
    found = np.ones((4, 2), bool)
    found[0, 1] = False
    pts = s.landmarks + [2.0, 0.0]
    table = fidelity_table(label_errors(s, pts, found.astype(float), found, "synth2d", 0))
    rows = table.set_index("landmark")
    assert rows.mean_px["all"] == 2.0 and rows.mean_mm["all"] == 2.0 * 1.5
    assert rows.detection_rate["B"] == 0.75 and rows.n_labels["A"] == 3
    assert rows.mean_position_mm["A"] == pytest.approx((2 + 0 + 2) / 3 * 1.5)
    assert rows.mean_position_mm["B"] == 0.0
    assert rows.mean_position_mm["all"] == pytest.approx(4 / 7 * 1.5)


def _errors(offset_px: np.ndarray, found: np.ndarray):
    """Label errors of 40 generated images of 2 landmarks, all visible, predicted
    `offset_px` (per image and landmark) to the right of every label, 1.5 mm pixels."""
    from tests.imaging.test_imageset import _set
    from xrayfactory.synth2d.fidelity import label_errors

    s = _set(n=40, size=32)
    s.subject = np.array([f"fold0-shape{i:06d}" for i in range(40)])
    s.visible[:] = True
    s.attrs["magnification"] = 2.0
    pts = s.landmarks.copy()
    pts[..., 0] += offset_px
    return label_errors(s, pts, found.astype(float), found, "synth2d", 0)


def test_sampler_rows_are_paired_with_the_first_on_the_same_images():
    """Errors shared by the two landmarks of an image: the second sampler is d px worse on
    both labels of image i (d varies by image) and misses 4 of the 80 labels. Its row pairs
    labels by image and landmark (the reference's rows shuffled), gives the mean of 1.5 d mm
    over the 76 labels both found and -0.05 in detection, and every interval resamples whole
    images: as wide as a bootstrap of images, wider than one of single labels."""
    from xrayfactory.core.bootstrap import cluster_bootstrap
    from xrayfactory.synth2d.fidelity import sampler_row

    rng = np.random.default_rng(0)
    off = rng.uniform(2, 6, (40, 1)) + rng.uniform(0, 0.1, (40, 2))
    d = np.repeat(rng.uniform(0, 2, (40, 1)), 2, axis=1)
    all_found = np.ones((40, 2), bool)
    ref = _errors(off, all_found)
    worse_found = all_found.copy()
    worse_found[:4, 0] = False
    worse = _errors(off + d, worse_found)
    ddim = {"kind": "ddim", "steps": 10, "guidance": 2.0}
    first = sampler_row(ref, ddim, 2.0, 0)
    shuffled = ref.sample(frac=1.0, random_state=0)
    row = sampler_row(worse, {**ddim, "steps": 25}, 4.0, 0, shuffled)
    assert "diff_mean_mm" not in first and first["images_per_s"] == 20.0
    assert first["n_images"] == 40 and row["images_per_s"] == 10.0
    both = worse_found.ravel()
    diff_mm = 1.5 * d.ravel()[both]
    images = np.repeat(np.arange(40), 2)[both]
    assert row["paired_n"] == 76 and row["diff_mean_mm"] == pytest.approx(diff_mm.mean())
    by_image = cluster_bootstrap(diff_mm, images)
    by_label = cluster_bootstrap(diff_mm, np.arange(76))
    assert (row["diff_ci95_low_mm"], row["diff_ci95_high_mm"]) == pytest.approx(by_image)
    assert by_image[1] - by_image[0] > 1.2 * (by_label[1] - by_label[0])
    assert row["detection_rate_diff"] == pytest.approx(-4 / 80)
    own = cluster_bootstrap(ref.err_mm.to_numpy(), np.repeat(np.arange(40), 2))
    assert (first["ci95_low_mm"], first["ci95_high_mm"]) == pytest.approx(own)
    assert first["ci95_low_mm"] < first["mean_mm"] < first["ci95_high_mm"]


def test_fold_tables_average_without_intervals(tmp_path):
    """The `mean` block over folds averages each column and leaves interval ends empty."""
    from xrayfactory.synth2d.tables import concat_tables

    for fold, m in ((0, 10.0), (1, 14.0)):
        pd.DataFrame(
            {"fold": [fold], "landmark": ["all"], "mean_mm": [m], "ci95_low_mm": [m - 1]}
        ).to_csv(tmp_path / f"{fold}.csv", index=False)
    t = concat_tables([str(tmp_path / "0.csv"), str(tmp_path / "1.csv")], ["landmark"])
    mean = t[t.fold == "mean"].iloc[0]
    assert mean.mean_mm == 12.0 and np.isnan(mean.ci95_low_mm)
    assert t[t.fold == "0"].ci95_low_mm.item() == 9.0
