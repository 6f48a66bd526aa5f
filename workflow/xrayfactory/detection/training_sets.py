"""Training sets beyond the arms: the points of a scaling sweep (`detector.sizes`), checked
against the images each source has in each fold before any job runs.

A sweep point is the detector arm "<arm>@<n>": `n` images of arm `arm`, the first `n` of that
arm's selection order in the fold (imaging.splits), so a smaller set is a subset of a larger
one. A size equal to `detector.train_images` is the arm itself.
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


def scaling_sweep(
    detector: dict, folds: pd.DataFrame, available: dict[int, dict[str, int]]
) -> dict[str, dict]:
    """The sweep's detector arms, "<arm>@<n>" -> {"source": arm, "n_images": n}, in the order
    of `detector.sizes`; an InputError naming the key when a fold has too few images."""
    sizes = detector["sizes"]
    per_arm = {arm: sizes for arm in detector["arms"]} if isinstance(sizes, list) else sizes
    sweep = {}
    for arm, counts in per_arm.items():
        key = "detector.sizes" if isinstance(sizes, list) else f"detector.sizes.{arm}"
        if arm not in detector["arms"]:
            raise InputError("config", f"key {key}: {arm} is not one of detector.arms")
        for n in counts:
            for fold, has in available.items():
                if has[arm] < n:
                    raise InputError(
                        "config",
                        f"key {key}: asks arm {arm} for {n} training images, fold {fold} has "
                        f"{has[arm]}",
                    )
            if n != detector["train_images"]:
                sweep[f"{arm}@{n}"] = {"source": arm, "n_images": n}
    return sweep
