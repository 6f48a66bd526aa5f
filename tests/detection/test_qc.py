"""The figure of what the detectors train on: the same augmentation draw for every arm."""

import dataclasses

import matplotlib.image
import numpy as np
import torch

from tests.conftest import write_blob_shard, xrayfactory_cli
from xrayfactory.imaging.imageset import read_imageset, write_imageset

NAMES = ["a", "b", "c"]
SIZE = 32


def _shard(path, arm, seed):
    lm = np.random.default_rng(seed).uniform(4, SIZE - 4, (6, len(NAMES), 2))
    write_blob_shard(path, "s0", NAMES, lm, SIZE, 4.0)
    s = read_imageset(path)
    write_imageset(path, dataclasses.replace(s, attrs={**s.attrs, "arm": arm}))
    return path


def test_every_arm_gets_the_same_augmentation_draw(tmp_path):
    from xrayfactory.detection.qc import augmented_views

    real = read_imageset(_shard(tmp_path / "real.h5", "real", 0))
    other = dataclasses.replace(real, images=1.0 - real.images)  # same labels, other images
    seen, (x1, lm1, vis1) = augmented_views(real, 24, seed=5)
    _, (x2, lm2, vis2) = augmented_views(other, 24, seed=5)
    assert seen.images.shape == (4, 1, 24, 24) and x1.shape == (4, 1, 24, 24)
    assert torch.equal(lm1, lm2) and torch.equal(vis1, vis2)  # one spatial draw for both
    assert not torch.allclose(x1, x2)
    assert not torch.allclose(lm1, seen.landmarks)  # the landmarks moved with the images
    _, (_, lm3, _) = augmented_views(real, 24, seed=6)
    assert not torch.allclose(lm1, lm3)


def test_augmentation_qc_draws_one_row_per_arm(tmp_path):
    real = _shard(tmp_path / "real.h5", "real", 0)
    drr = _shard(tmp_path / "drr.h5", "drr", 1)
    heights = []
    for shards in ([real], [real, drr]):
        out = tmp_path / f"aug{len(shards)}.png"
        r = xrayfactory_cli(
            "augmentation-qc", "--fold", "0", "--seed", "0", "--image-size", "24",
            "--out", str(out), *map(str, shards),
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        heights.append(matplotlib.image.imread(out).shape[0])
    assert 1.5 < heights[1] / heights[0] < 2.5


def test_augmentation_qc_refuses_a_corrupt_image_set(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    out = tmp_path / "aug.png"
    r = xrayfactory_cli(
        "augmentation-qc", "--fold", "0", "--seed", "0", "--image-size", "24",
        "--out", str(out), str(bad),
    )  # fmt: skip
    assert r.returncode != 0 and r.stderr.startswith(f"error: {bad}")
    assert "Traceback" not in r.stderr and not out.exists()
