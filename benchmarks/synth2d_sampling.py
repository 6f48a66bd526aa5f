"""synth2d sampling: images/s and label fidelity of DDPM (1000 steps) against fast samplers.

    python benchmarks/synth2d_sampling.py [--fold 0] [--images 16] [--device cpu]

Uses a finished demo run (or any run: --results, --config): the fold's generator, its real-arm
detector (first seed) and its training subjects' 3D landmarks. Every sampler draws the same
views from the same starting noise. Goal: >= 20x fewer network evaluations than DDPM at a label
fidelity (mean error, px) no worse than 1.2x DDPM's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from xrayfactory.core.config import validate_config  # noqa: E402
from xrayfactory.detection.detector import Detector  # noqa: E402
from xrayfactory.imaging.geometry import CArm, ViewSampler  # noqa: E402
from xrayfactory.synth2d.fidelity import fidelity_rows, sampler_row, timed  # noqa: E402
from xrayfactory.synth2d.model import Synth2D, generate  # noqa: E402
from xrayfactory.synth2d.shapes import shape_model_from_files  # noqa: E402

SAMPLERS = [("ddpm", 1000), ("ddim", 50), ("ddim", 25), ("dpmsolver++", 50)]
SAMPLERS += [("dpmsolver++", 25), ("dpmsolver++", 20), ("dpmsolver++", 10)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    p.add_argument("--results", default=str(REPO / "results"))
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--device", default="auto")
    a = p.parse_args()
    cfg = yaml.safe_load(Path(a.config).read_text())
    validate_config(cfg, REPO / "workflow" / "schemas" / "config.schema.yaml", where=a.config)
    res = Path(a.results)
    gen = Synth2D(res / "synth2d" / f"fold{a.fold}" / "model.pt", device=a.device)
    train = gen.meta["subjects"]  # the fold's training subjects, as the generator records them
    shapes = shape_model_from_files(
        [str(res / "cohort" / s / "landmarks.csv") for s in train], cfg["landmarks"]["names"]
    )
    seed = cfg["detector"]["seeds"][0]
    det = Detector(
        res / "detector" / "real" / f"fold{a.fold}" / f"seed{seed}" / "model.pt", device=a.device
    )
    carm = CArm(**cfg["carm"])
    views = ViewSampler.from_config(cfg["views"])
    base = cfg["synth2d"]["sampler"]
    rows, reference = [], None  # the first sampler (DDPM) is every row's paired reference
    for kind, steps in SAMPLERS:
        sampler = {**base, "kind": kind, "steps": steps}
        made, seconds = timed(
            generate,
            gen,
            shapes,
            carm,
            views,
            a.images,
            sampler=sampler,
            rng_key=(0, "benchmark"),
            fold=a.fold,
        )
        if gen.device.type == "cuda":
            torch.cuda.synchronize()
        errors = fidelity_rows(det, made, "synth2d", a.fold)
        rows.append(sampler_row(errors, sampler, seconds, a.fold, reference))
        reference = errors if reference is None else reference
    df = pd.DataFrame(rows)
    ddpm = df.iloc[0]
    df["fewer_evaluations"] = ddpm.evaluations_per_image / df.evaluations_per_image
    df["fidelity_vs_ddpm"] = df.mean_px / ddpm.mean_px
    df["goal_met"] = (df.fewer_evaluations >= 20) & (df.fidelity_vs_ddpm <= 1.2)
    cols = [
        "sampler",
        "steps",
        "evaluations_per_image",
        "fewer_evaluations",
        "images_per_s",
        "mean_px",
        "median_px",
        "mean_mm",
        "detection_rate",
        "diff_mean_mm",
        "diff_ci95_low_mm",
        "diff_ci95_high_mm",
        "fidelity_vs_ddpm",
        "goal_met",
    ]
    print(
        f"synth2d sampling, fold {a.fold}, {a.images} images at "
        f"{gen.settings.image_size} px, device {gen.device}, guidance {base['guidance']}"
    )
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
