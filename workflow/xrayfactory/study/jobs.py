"""The study's jobs, one per rule of workflow/rules/study.smk: realism per (arm, fold), and the
report's tables and figures from the cached prediction files and test images only."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from xrayfactory.core.atomic import PathLike, write_csv
from xrayfactory.core.errors import InputError
from xrayfactory.imaging.imageset import concatenate
from xrayfactory.imaging.splits import load_arm, load_test_set, realism_sample, shards_by_arm
from xrayfactory.study.report import StatsSettings, realism_table, write_report

log = logging.getLogger("xrayfactory")


def realism(
    arms: list[str],
    fold: int,
    train_subjects: list[str],
    shards: list[str],
    test: list[str],
    detector: PathLike,
    sample: tuple[int, int, int],
    device: str,
    out: PathLike,
) -> None:
    """Fréchet and intensity distances to the fold's test images of N of each arm's training
    images (`shards`: every arm's, told apart by the arm that made them; `sample`: N, the
    detectors' training-set size, the selection seed), one row per arm."""
    # imported here, not at the top: the report jobs need neither torch nor MONAI, whose
    # imports cost each job seconds
    from xrayfactory.detection.detector import Detector
    from xrayfactory.study.realism import encoder_features, frechet_distance, intensity_distance

    n, n_train, seed = sample
    test_set, _ = load_test_set(test, f"fold {fold}")
    det = Detector(detector, device=device)
    test_features = encoder_features(det, test_set.images)
    pools = shards_by_arm(shards)
    rows = []
    for arm in arms:
        if arm not in pools:
            raise InputError(", ".join(shards), f"no image set of arm {arm}")
        pool = concatenate(pools[arm], f"image sets of arm {arm}")
        chosen = realism_sample(arm, fold, train_subjects, pool, n, n_train, seed)
        row = {
            "arm": arm,
            "fold": fold,
            "n_images": n,
            "n_test_images": len(test_set),
            "frechet_distance": np.nan,
            "intensity_distance": np.nan,
            "test_data": "proxy-real" if test_set.attrs.get("proxy") else "real",
        }
        if chosen is None:
            log.warning(
                "fold %d: fewer than %d real training-subject images that the feature network "
                "did not train on: `real` realism not measured",
                fold,
                n,
            )
        else:
            row["frechet_distance"] = frechet_distance(
                encoder_features(det, chosen.images), test_features
            )
            row["intensity_distance"] = intensity_distance(
                chosen.images, test_set.images, det.settings.image_size
            )
            log.info(
                "%s fold %d: FD %.3f, intensity EMD %.4f (N = %d)",
                arm,
                fold,
                row["frechet_distance"],
                row["intensity_distance"],
                n,
            )
        rows.append(row)
    write_csv(pd.DataFrame(rows), out)


def report(
    predictions: list[str], test: list[str], out_dir: PathLike, stats: StatsSettings,
    cohort_source: str, training_sets: dict[str, dict[str, int]],
) -> None:  # fmt: skip
    """The study's tables and figures (`training_sets`: each detector arm's images per
    source)."""
    table = write_report(predictions, load_arm(test), out_dir, stats, cohort_source, training_sets)
    for r in table.itertuples():
        log.info(
            "%-9s mean %.2f mm (median %.2f), detection %.2f",
            r.arm,
            r.mean_mm,
            r.median_mm,
            r.detection_rate,
        )


def report_realism(tables: list[str], out: PathLike) -> None:
    """The realism table: every arm at the same N, mean over folds."""
    table = realism_table(tables)
    write_csv(table, out)
    for r in table.itertuples():
        log.info(
            "%-8s FD %.3f, intensity EMD %.4f", r.arm, r.frechet_distance, r.intensity_distance
        )
