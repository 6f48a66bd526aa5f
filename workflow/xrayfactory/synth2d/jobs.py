"""synth2d's jobs, one per rule of workflow/rules/synth2d.smk (the tables of all folds: in
synth2d/tables.py): the generator of a fold learns from exactly the images the `real` arm's
first-seed detector trains on in that fold."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from xrayfactory.core.atomic import PathLike, write_csv
from xrayfactory.core.errors import InputError
from xrayfactory.core.images import preprocess
from xrayfactory.imaging.geometry import CArm, ViewSampler
from xrayfactory.imaging.imageset import ImageSet, read_imageset, write_imageset
from xrayfactory.imaging.splits import arm_training_set, load_arm
from xrayfactory.synth2d.controls import resized
from xrayfactory.synth2d.fidelity import (
    fidelity_rows,
    fidelity_table,
    sampler_row,
    timed,
)
from xrayfactory.synth2d.model import Synth2D, Synth2DSettings, generate, train
from xrayfactory.synth2d.shapes import ShapeModel, shape_model_from_files

log = logging.getLogger("xrayfactory")


def resize_real(shard: PathLike, size: int, out: PathLike) -> None:
    """Control `real_resized`: a subject's real images through the synth2d image size."""
    s = read_imageset(shard)
    attrs = {
        **s.attrs,
        "arm": "real_resized",
        "generator": f"{s.attrs.get('generator')}, resized to {size} px and back",
    }
    write_imageset(out, replace(s, images=resized(s.images, size), attrs=attrs))
    log.info("%s: %d images through %d x %d px", shard, len(s), size, size)


def train_synth2d(
    fold: int,
    train_subjects: list[str],
    shards: list[str],
    selection: tuple[int, int],
    settings: Synth2DSettings,
    out: PathLike,
    device: str,
) -> None:
    """The fold's generator, trained on the `real` arm's selection (`selection`: number of
    images and seed) of its training subjects' real images."""
    n_images, seed = selection
    real, ids = arm_training_set("real", fold, train_subjects, load_arm(shards), n_images, seed)
    data = preprocess(real.images, real.landmarks, real.visible, settings.image_size)
    trained_on = "proxy-real" if real.attrs.get("proxy") else "real"
    meta = {
        "fold": fold,
        "subjects": sorted(train_subjects),
        "image_ids": ids,
        "trained_on": trained_on,
    }
    log.info("training the synth2d generator of fold %d on %d images", fold, len(real))
    names = list(real.attrs["landmark_names"])
    train(
        data.images,
        data.landmarks,
        data.visible,
        names,
        settings,
        Path(out),
        meta=meta,
        device=device,
    )


@dataclass(frozen=True)
class Generator:
    """A fold's generator with the shape model of its training subjects and the C-arm."""

    model: Synth2D
    shapes: ShapeModel
    carm: CArm
    views: ViewSampler
    fold: int

    @classmethod
    def load(
        cls,
        path: PathLike,
        fold: int,
        landmarks: list[str],
        names: list[str],
        carm: CArm,
        views: ViewSampler,
        device: str,
    ) -> Generator:
        model = Synth2D(path, device=device)
        if model.meta.get("fold") != fold:
            raise InputError(path, f"trained for fold {model.meta.get('fold')}, not fold {fold}")
        return cls(model, shape_model_from_files(landmarks, names), carm, views, fold)

    def generate(self, n: int, sampler: dict, rng_key: tuple, **kw) -> ImageSet:
        """`n` new labelled images (synth2d.model.generate with this fold's parts)."""
        return generate(
            self.model,
            self.shapes,
            self.carm,
            self.views,
            n,
            sampler=sampler,
            rng_key=rng_key,
            fold=self.fold,
            **kw,
        )


def sample_synth2d(
    gen: Generator,
    shard: int,
    shard_size: int,
    sampler: dict,
    shape_scale: float,
    seed: int,
    out: PathLike,
) -> None:
    """Shard `shard` of the fold's generated, labelled images: `shard_size` images of their
    own random stream, whatever the number of shards."""
    images = gen.generate(
        shard_size,
        sampler,
        (seed, "synth2d", gen.fold, shard),
        shape_scale=shape_scale,
        first_id=shard * shard_size,
    )
    write_imageset(out, images)
    log.info("synth2d fold %d shard %d: %d images", gen.fold, shard, shard_size)


def synth2d_fidelity(
    gen: Generator,
    detector: PathLike,
    shards: list[str],
    sampling: tuple[list[dict], int, float],
    seed: int,
    device: str,
    out: tuple[PathLike, PathLike],
    n_boot: int,
) -> None:
    """Label fidelity of the fold's generated images (the `real` detector against the
    conditioning landmarks) and how it varies with the sampler (`sampling`: the samplers, the
    images per sampler and the arm's shape scale): tables `out` (fidelity, steps), intervals
    from `n_boot` bootstrap resamples."""
    # imported here, not at the top: training and sampling need no detector (MONAI: seconds)
    from xrayfactory.detection.detector import Detector

    det = Detector(detector, device=device)
    generated = load_arm(shards)
    det.check_compatible(list(generated.attrs["landmark_names"]), det.settings.image_size)
    table = fidelity_table(fidelity_rows(det, generated, "synth2d", gen.fold), n_boot)
    table.insert(0, "fold", gen.fold)
    write_csv(table, out[0])
    samplers, n_images, shape_scale = sampling
    rows, first = [], None  # every sampler compared with the first, on the same images
    for sampler in samplers:
        images, seconds = timed(
            gen.generate,
            n_images,
            sampler,
            (seed, "synth2d-fidelity", gen.fold),
            shape_scale=shape_scale,
        )
        errors = fidelity_rows(det, images, "synth2d", gen.fold)
        rows.append(sampler_row(errors, sampler, seconds, gen.fold, first, n_boot))
        first = errors if first is None else first
        log.info(
            "%s %d steps: %.2f px mean fidelity",
            sampler["kind"],
            sampler["steps"],
            rows[-1]["mean_px"],
        )
    write_csv(pd.DataFrame(rows), out[1])
