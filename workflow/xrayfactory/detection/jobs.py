"""The detector's jobs, one per rule of workflow/rules/detection.smk (the baseline's: in
detection/baseline.py), and `predict` for users' own X-rays. Training jobs get the arm's image
sets of the fold's training subjects (or the fold's generated sets); evaluation jobs get the
fold's test subjects' real image sets."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from xrayfactory.core.atomic import PathLike, atomic_path, write_csv
from xrayfactory.core.errors import InputError
from xrayfactory.core.images import Batch, preprocess
from xrayfactory.datasets.radiographs import read_radiograph
from xrayfactory.detection.detector import Detector, DetectorSettings, train
from xrayfactory.detection.predictions import prediction_table
from xrayfactory.imaging.imageset import concatenate
from xrayfactory.imaging.splits import arm_training_set, load_test_set, shards_by_arm

log = logging.getLogger("xrayfactory")


def train_detector(
    arm: str,
    counts: dict[str, int],
    fold: int,
    train_subjects: list[str],
    shards: list[str],
    n_default: int,
    settings: DetectorSettings,
    out: PathLike,
    device: str,
) -> None:
    """One detector (arm, fold, seed) on `counts[source]` of the fold's images of each source
    arm (an arm: itself; a sweep point or a recipe: its sources), each source's first images of
    its selection order; `n_default`: detector.train_images, where every order starts."""
    by_source = shards_by_arm(shards)
    parts, ids, names = [], [], None
    for source, n in counts.items():
        if source not in by_source:
            raise InputError(f"arm {arm}, fold {fold}", f"no image sets of its source {source}")
        pool = concatenate(by_source[source], f"image sets of arm {source}")
        chosen, chosen_ids = arm_training_set(
            source, fold, train_subjects, pool, n, settings.seed, n_default=n_default
        )
        if names not in (None, list(chosen.attrs["landmark_names"])):
            raise InputError(f"arm {arm}", f"sources disagree on landmark names ({source})")
        names = list(chosen.attrs["landmark_names"])
        parts.append(
            preprocess(chosen.images, chosen.landmarks, chosen.visible, settings.image_size)
        )
        ids += chosen_ids if len(counts) == 1 else [f"{source}:{i}" for i in chosen_ids]
    data = Batch(
        *(torch.cat([getattr(b, k) for b in parts]) for k in ("images", "landmarks", "visible"))
    )
    meta = {
        "arm": arm,
        "counts": counts,
        "fold": fold,
        "subjects": sorted(train_subjects),
        "image_ids": ids,
    }
    log.info(
        "training the %s detector of fold %d (seed %d) on %d images (%s)",
        arm,
        fold,
        settings.seed,
        len(ids),
        ", ".join(f"{n} {source}" for source, n in counts.items()),
    )
    train(data, names, settings, Path(out), meta=meta, device=device)


def augmentation_qc(
    shards: list[str], fold: int, image_size: int, seed: int, out: PathLike
) -> None:
    """One figure of what the detectors of `fold` train on: every arm of `shards` (the arms'
    image sets of the fold's training data), as seen and under the same augmentation draw."""
    from xrayfactory.detection.qc import augmentation_figure

    sets = {
        arm: concatenate(parts, f"image sets of arm {arm}")
        for arm, parts in shards_by_arm(shards).items()
    }
    real = sets.get("real")
    proxy = " (real: PROXY-real images)" if real is not None and real.attrs.get("proxy") else ""
    title = (
        f"What the detectors of fold {fold} train on{proxy}: images of each arm's training pool"
        f" at {image_size} px as the detector sees them (left), and one draw of the domain"
        " randomisation, the same for every arm (right); dots: the landmarks the targets are made"
        " from"
    )
    augmentation_figure(sets, image_size, seed, title, out)


def evaluate_detector(
    arm: str, fold: int, seed: int, model: PathLike, image_size: int, test: list[str], out: PathLike
) -> None:
    """Predictions of a trained detector on the fold's test images (`test`: their shards)."""
    images, ids = load_test_set(test, f"fold {fold}")
    det = Detector(model)
    det.check_compatible(list(images.attrs["landmark_names"]), image_size)
    if det.meta.get("fold") != fold:
        trained = det.meta.get("fold")
        raise InputError(model, f"trained for fold {trained}, evaluated on fold {fold}")
    pts, scores, found = det.predict(images.images)
    write_csv(prediction_table(arm, fold, seed, images, ids, pts, scores, found), out)


def predict(model: PathLike, images: list[str], out_dir: PathLike) -> None:
    """Landmarks on users' X-rays (DICOM / PNG / JPEG / TIFF): a CSV and one figure each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    det = Detector(model)
    radiographs = [(p, read_radiograph(p)) for p in images]  # read all first: fail before writing
    out = Path(out_dir)
    rows = []
    for path, img in radiographs:
        pts, scores, found = det.predict(img[None])
        for name, (c, r), sc, f in zip(det.names, pts[0], scores[0], found[0], strict=True):
            rows.append(
                {"image": str(path), "landmark": name, "col": c, "row": r, "score": sc, "found": f}
            )
        fig, ax = plt.subplots(figsize=(5, 5 * img.shape[0] / img.shape[1]))
        ax.imshow(img, cmap="gray")
        ok = found[0]
        ax.scatter(pts[0, ok, 0], pts[0, ok, 1], c="red", s=14)
        for name, (c, r) in zip(np.array(det.names)[ok], pts[0, ok], strict=True):
            ax.annotate(
                name, (c, r), color="yellow", fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        ax.axis("off")
        with atomic_path(out / f"{Path(path).stem}_landmarks.png") as tmp:
            fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
    write_csv(pd.DataFrame(rows), out / "landmarks.csv")
    log.info("%d image(s): landmarks in %s", len(radiographs), out / "landmarks.csv")
