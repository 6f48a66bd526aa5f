"""Realism measures: Fréchet distance, intensity distance and detector encoder features."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import write_blob_shard, xrayfactory_cli
from xrayfactory.detection.detector import Detector, DetectorSettings, build_network
from xrayfactory.study.realism import encoder_features, frechet_distance, intensity_distance


def test_frechet_distance_of_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    shifted = a + np.array([3.0, 0, 0])
    assert frechet_distance(a, shifted) == pytest.approx(9.0, rel=1e-6)
    # covariance C vs 4C: tr(C + 4C - 2 * 2C) = tr(C), the mean moves too
    expected = np.trace(np.cov(a, rowvar=False)) + (a.mean(0) ** 2).sum()
    assert frechet_distance(a, 2 * a) == pytest.approx(expected, rel=1e-6)


def test_intensity_distance_is_an_earth_movers_distance():
    _, c = np.mgrid[0:32, 0:32]
    ramp = (c / 31.0)[None].repeat(3, 0)
    assert intensity_distance(ramp, ramp, 32) == 0
    # a square-root contrast curve moves mass up: positive, below the full range
    d = intensity_distance(ramp, np.sqrt(ramp), 32)
    assert 0.05 < d < 0.5
    assert intensity_distance(np.sqrt(ramp), ramp, 32) == pytest.approx(d)


def test_intensity_distance_compares_resolutions_as_the_detector_sees_them():
    """The same images at 128 px and at 64 px (synth2d's size) are the same to a 48 px
    detector; compared at their own resolutions, the smaller set's blur would count."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    fine = gaussian_filter(rng.random((4, 128, 128)), (0, 1, 1)).astype(np.float32)
    coarse = fine.reshape(4, 64, 2, 64, 2).mean(axis=(2, 4))
    assert intensity_distance(fine, coarse, 48) < 0.01
    assert intensity_distance(fine, coarse, 128) > 0.03


def test_encoder_features_come_from_the_bottom_of_the_unet(tmp_path):
    import torch

    s = DetectorSettings(image_size=32, channels=(4, 8, 16))
    net = build_network(2, s)
    path = tmp_path / "det.pt"
    torch.save({"model": net.state_dict(), "names": ["A", "B"], "settings": dict(s.__dict__)}, path)
    det = Detector(path, device="cpu")
    feats = encoder_features(det, np.random.default_rng(0).random((5, 48, 40)))
    assert feats.shape == (5, 16) and np.isfinite(feats).all()


def test_realism_job_names_an_arm_it_got_no_image_set_of(tmp_path):
    import torch

    s = DetectorSettings(image_size=32, channels=(4, 8, 16))
    det = tmp_path / "det.pt"
    torch.save({"model": build_network(2, s).state_dict(), "names": ["A", "B"],
                "settings": dict(s.__dict__)}, det)  # fmt: skip
    lm = np.full((3, 2, 2), 16.0)
    train = write_blob_shard(tmp_path / "train.h5", "s0", ["A", "B"], lm, 32, 4.0)
    test = write_blob_shard(tmp_path / "test.h5", "s1", ["A", "B"], lm, 32, 4.0)
    out = tmp_path / "realism.csv"
    settings = {"n_images": 2, "train_images": 2, "selection_seed": 0, "device": "cpu"}
    r = xrayfactory_cli(
        "realism", "--arms", "drr", "real", "--fold", "0", "--train-subjects", "s0",
        "--detector", str(det), "--test", str(test), "--out", str(out),
        "--settings", json.dumps(settings), str(train),
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().endswith("no image set of arm drr"), r.stderr
    assert "Traceback" not in r.stderr and not out.exists()
