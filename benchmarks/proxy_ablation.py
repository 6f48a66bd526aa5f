"""Did a detector not learn, or not transfer, and which proxy-real effect stops it?

    python benchmarks/proxy_ablation.py [--workdir .] [--fold 0] [--seed 0] [--arms real drr]
                                        [--variants "as is" "no collimation" ...]

After a demo study has run: renders the fold's test subjects again, as held-out DRRs (the `drr`
arm's own domain) and as proxy-real X-rays with one effect of the acquisition model removed at a
time (then all of them), and evaluates the trained detectors of `--arms` on each. A diagnostic on
the test side only: nothing is trained, and the study's own test images are not touched. Prints
one table of mean error (mm at the detector, visible and found landmarks), detection rate and
false-positive rate per image set and arm.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from xrayfactory.cohort.landmarks import load_landmarks
from xrayfactory.cohort.sheet import read_sheet
from xrayfactory.cohort.volumes import load_ct
from xrayfactory.core.config import validate_config
from xrayfactory.core.errors import InputError
from xrayfactory.detection.detector import Detector
from xrayfactory.detection.predictions import prediction_table, with_errors
from xrayfactory.imaging.acquisition import AcquisitionParams
from xrayfactory.imaging.imageset import ImageSet, concatenate
from xrayfactory.imaging.render import ViewPlan, drr_imageset, real_imageset

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = REPO / "workflow" / "schemas"

# each variant removes one effect of the acquisition model (imaging/acquisition.py)
VARIANTS: dict[str, dict] = {
    "as is": {},
    "no collimation": {"collimation_probability": 0.0},
    "no scatter": {"scatter_fraction": 0.0},
    "no heel effect": {"heel_effect": 0.0},
    "no K-wires": {"kwire_probability": 0.0},
    "no processing": {"unsharp_amount": 0.0, "gamma_range": (1.0, 1.0)},
    "no blur or glare": {"blur_sigma_mm": 1e-3, "glare_fraction": 0.0},
    "no noise": {"photons_per_mm2": 3e6, "electronic_noise": 0.0},
    "DRR spectrum": {"kvp": 90.0, "cu_mm": 0.0, "al_mm": 2.5},
}
VARIANTS["all removed"] = {k: v for d in VARIANTS.values() for k, v in d.items()}
HELD_OUT_DRRS = "held-out DRRs"


def scores(det: Detector, arm: str, fold: int, seed: int, images: ImageSet) -> dict:
    """Mean error of found visible landmarks, detection and false-positive rates."""
    pts, score, found = det.predict(images.images)
    ids = np.arange(len(images))
    df = with_errors(prediction_table(arm, fold, seed, images, ids, pts, score, found))
    vis = df.visible.astype(bool)
    hit = df.found.astype(bool)
    return {"mean_mm": df.err_mm.mean(), "detection": hit[vis].mean(), "fpr": hit[~vis].mean()}


def ablation(
    workdir: Path, fold: int, seed: int, arms: list[str], variants: list[str]
) -> pd.DataFrame:
    """Mean error, detection and false-positive rates per image set (row) and arm."""
    res = workdir / "results"
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config = validate_config(config, SCHEMAS / "config.schema.yaml")
    device = config["device"]
    folds = pd.read_csv(res / "cohort" / "folds.csv")
    test = folds[(folds.fold == fold) & (folds.role == "test")].subject.tolist()
    if not test:
        raise InputError(res / "cohort" / "folds.csv", f"fold {fold} has no test subjects")
    sheet = read_sheet(res / "cohort" / "subjects.tsv", SCHEMAS / "cohort.schema.yaml")
    plan = ViewPlan.from_settings(
        {"carm": config["carm"], "views": config["views"], "names": config["landmarks"]["names"],
         "n_images": config["real"]["images_per_subject"], "seed": config["seed"]}
    )  # fmt: skip
    acquisition = AcquisitionParams.from_config(config["real"]["acquisition"], device)
    drr = {k: v for k, v in config["drr"].items() if k != "images_per_subject"}
    drr_plan = dataclasses.replace(plan, n_images=config["drr"]["images_per_subject"])
    detectors = {
        arm: Detector(
            res / "detector" / arm / f"fold{fold}" / f"seed{seed}" / "model.pt", device=device
        )
        for arm in arms
    }
    subjects = []
    for s in test:
        ct = load_ct(sheet.loc[s, "ct"])
        subjects.append((s, ct, load_landmarks(sheet.loc[s, "landmarks"], plan.names, ct)))
    rows = []
    for variant in variants:
        if variant == HELD_OUT_DRRS:
            sets = [drr_imageset("drr", s, ct, lm, drr_plan, drr, device) for s, ct, lm in subjects]
        else:
            params = dataclasses.replace(acquisition, **VARIANTS[variant])
            sets = [real_imageset(s, ct, lm, plan, params) for s, ct, lm in subjects]
        images = concatenate(sets, variant)
        for arm, det in detectors.items():
            rows.append({"images": variant, "arm": arm, **scores(det, arm, fold, seed, images)})
    table = pd.DataFrame(rows).pivot(index="images", columns="arm").reindex(variants)
    table.columns = [f"{arm} {what}" for what, arm in table.columns]
    table.attrs["test"] = test
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", default=".", type=Path)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arms", nargs="+", default=["real", "drr"])
    p.add_argument("--variants", nargs="+", default=[*VARIANTS, HELD_OUT_DRRS])
    a = p.parse_args()
    unknown = set(a.variants) - {*VARIANTS, HELD_OUT_DRRS}
    if unknown:
        sys.exit(f"error: --variants: unknown {sorted(unknown)}; known: {list(VARIANTS)}")
    try:
        table = ablation(a.workdir, a.fold, a.seed, a.arms, a.variants)
    except (InputError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    print(f"fold {a.fold}, seed {a.seed}, test subjects {', '.join(table.attrs['test'])}")
    print(table.round(2).to_markdown())


if __name__ == "__main__":
    main()
