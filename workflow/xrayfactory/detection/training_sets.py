"""Training sets beyond the arms, checked against the images each source has in each fold
before any job runs: the points of a scaling sweep (`detector.sizes`) and recipes that mix
sources (`detector.recipes`).

A training set is {source arm: images}. The arm `real` is {real: train_images}; the sweep
point "<arm>@<n>" is {arm: n}; a recipe is what it names, e.g. "real+synth2d": {real: 20,
synth2d: 60}. A source gives the first n images of its selection order in the fold
(imaging.splits), so a smaller set is a subset of a larger one and a recipe's images of a source
are those of that source's detector arm at the same count.

The generated arms (synth2d, synth3d) are made to order: in whole units (a synth2d shard of
`synth2d.shard_size` images; a synth3d part of `drr.images_per_subject` DRRs of every generated
volume), as many units as the largest training set needs. A unit never changes when more are
made, and a training set reads only the units that hold its images.
"""

from __future__ import annotations

import math

import pandas as pd

from xrayfactory.core.errors import InputError
from xrayfactory.datasets.deepfluoro import IMAGES as DEEPFLUORO_IMAGES
from xrayfactory.imaging.splits import GENERATED


def available_images(config: dict, folds: pd.DataFrame) -> dict[int, dict[str, int]]:
    """Per fold, the training images each rendered or real arm has (rendered arms per training
    subject, real DeepFluoro X-rays per specimen); the generated arms are made to order."""
    drr = config["drr"]["images_per_subject"]
    out = {}
    for fold, rows in folds[folds.role == "train"].groupby("fold"):
        subjects = list(rows.subject)
        if config["cohort"]["source"] == "deepfluoro":
            real = sum(DEEPFLUORO_IMAGES[s] for s in subjects)
        else:
            real = config["real"]["images_per_subject"] * len(subjects)
        rendered = drr * len(subjects)
        out[int(fold)] = {
            "real": real,
            "real_resized": real,
            "drr": rendered,
            "drr_grid": rendered,
            "drr_recon": rendered,
        }
    return out


def _check(key: str, counts: dict[str, int], available: dict[int, dict[str, int]]) -> None:
    for source, n in counts.items():
        for fold, has in available.items():
            if source not in GENERATED and has[source] < n:
                raise InputError(
                    "config",
                    f"key {key}: asks arm {source} for {n} training images, fold {fold} has "
                    f"{has[source]}",
                )


def training_sets(
    detector: dict, available: dict[int, dict[str, int]]
) -> dict[str, dict[str, int]]:
    """The detector arms beyond `detector.arms`, name -> {source arm: images}: the sweep's
    points in the order of `detector.sizes`, then the recipes; an InputError naming the key
    when a fold has too few images of a source."""
    sizes = detector["sizes"]
    per_arm = {arm: sizes for arm in detector["arms"]} if isinstance(sizes, list) else sizes
    sets = {}
    for arm, counts in per_arm.items():
        key = "detector.sizes" if isinstance(sizes, list) else f"detector.sizes.{arm}"
        if arm not in detector["arms"]:
            raise InputError("config", f"key {key}: {arm} is not one of detector.arms")
        for n in counts:
            _check(key, {arm: n}, available)
            if n != detector["train_images"]:
                sets[f"{arm}@{n}"] = {arm: n}
    for name, counts in detector["recipes"].items():
        if name in detector["arms"]:
            raise InputError("config", f"key detector.recipes.{name}: the name of an arm")
        _check(f"detector.recipes.{name}", counts, available)
        sets[name] = dict(counts)
    return sets


def with_arms(detector: dict, sets: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Every detector arm's training set: the arms' ({arm: detector.train_images}), then
    `sets`."""
    return {arm: {arm: detector["train_images"]} for arm in detector["arms"]} | sets


def unit_size(config: dict, arm: str) -> int:
    """Images in one unit of a generated arm: a synth2d shard, a synth3d part (every volume's
    `drr.images_per_subject` DRRs)."""
    if arm == "synth2d":
        return config["synth2d"]["shard_size"]
    return config["synth3d"]["n_volumes"] * config["drr"]["images_per_subject"]


def units_for(config: dict, arm: str, n: int) -> int:
    """The units of generated arm `arm` that hold its first `n` images."""
    return math.ceil(n / unit_size(config, arm))


def units_to_make(config: dict, sets: dict[str, dict[str, int]], arm: str) -> int:
    """The units generated arm `arm` makes per fold: enough for the arm's own training set
    (`detector.train_images`) and for the largest of `sets` (every detector arm's, see
    with_arms) that takes images of it."""
    need = [config["detector"]["train_images"], *(c.get(arm, 0) for c in sets.values())]
    return units_for(config, arm, max(need))
