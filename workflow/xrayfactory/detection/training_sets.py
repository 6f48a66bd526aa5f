"""Training sets beyond the arms, checked against the images each source has in each fold
before any job runs: the points of a scaling sweep (`detector.sizes`) and recipes that mix
sources (`detector.recipes`).

A training set is {source arm: images}. The arm `real` is {real: train_images}; the sweep
point "<arm>@<n>" is {arm: n}; a recipe is what it names, e.g. "real+synth2d": {real: 20,
synth2d: 60}. A source gives the first n images of its selection order in the fold
(imaging.splits), so a smaller set is a subset of a larger one and a recipe's images of a source
are those of that source's detector arm at the same count.
"""

from __future__ import annotations

import pandas as pd

from xrayfactory.core.errors import InputError
from xrayfactory.datasets.deepfluoro import IMAGES as DEEPFLUORO_IMAGES


def available_images(config: dict, folds: pd.DataFrame) -> dict[int, dict[str, int]]:
    """Per fold, the training images each arm has: rendered arms per training subject, real
    DeepFluoro X-rays per specimen, generated arms per fold."""
    drr = config["drr"]["images_per_subject"]
    generated = {
        "synth2d": config["synth2d"]["n_images"],
        "synth3d": config["synth3d"]["n_volumes"] * drr,
    }
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
            **generated,
        }
    return out


def _check(key: str, counts: dict[str, int], available: dict[int, dict[str, int]]) -> None:
    for source, n in counts.items():
        for fold, has in available.items():
            if has[source] < n:
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
