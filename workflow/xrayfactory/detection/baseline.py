"""The mean-position baseline's job (rule baseline_predictions): numpy and pandas only, so that
it imports neither torch nor MONAI."""

from __future__ import annotations

import numpy as np

from xrayfactory.core.atomic import PathLike, write_csv
from xrayfactory.detection.predictions import prediction_table
from xrayfactory.imaging.splits import load_arm, load_test_set, training_set


def baseline_predictions(
    fold: int, seed: int, n_images: int, train: list[str], test: list[str], out: PathLike
) -> None:
    """The mean-position baseline: every test image gets the mean landmark positions (and
    the majority visibility) of the `n_images` real training images the `real` arm draws."""
    pool = load_arm(train)
    chosen = training_set(
        pool,
        sorted(set(pool.subject)),
        n_images,
        (seed, "select", "real", fold),
        f"baseline, fold {fold}",
    )
    images, ids = load_test_set(test, f"fold {fold}")
    vis = chosen.visible[..., None]
    mean = (chosen.landmarks * vis).sum(0) / np.maximum(vis.sum(0), 1)
    pts = np.broadcast_to(mean, images.landmarks.shape)
    found = np.broadcast_to(chosen.visible.mean(0) > 0.5, images.visible.shape)
    table = prediction_table("baseline", fold, seed, images, ids, pts, found.astype(float), found)
    write_csv(table, out)
