import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from xrayfactory.cohort import demo_subjects, folds, read_sheet
from xrayfactory.config import validate_config
from xrayfactory.errors import InputError
from snakemake.exceptions import WorkflowError

SCHEMAS = Path(workflow.basedir) / "workflow" / "schemas"
ENV = "../../envs/xrayfactory.yaml"

try:
    validate_config(config, SCHEMAS / "config.schema.yaml")
    if config["cohort"]["source"] == "sheet":
        if not config["cohort"]["sheet"]:
            raise InputError(
                "config", "key cohort.sheet: required when cohort.source is sheet"
            )
        SHEET = read_sheet(config["cohort"]["sheet"], SCHEMAS / "cohort.schema.yaml")
        SUBJECTS = list(SHEET.index)
    else:
        SHEET = None
        SUBJECTS = demo_subjects(config["cohort"]["n_subjects"])
    FOLDS = folds(SUBJECTS, config["split"]["scheme"], config["split"]["n_folds"])
except InputError as e:
    raise WorkflowError(f"error: {e}") from None

TRAIN_SUBJECTS = sorted(set(FOLDS.loc[FOLDS.role == "train", "subject"]))
DEMO = Path("resources") / "pelvis-ct"


def subject_file(kind):
    """Input function: a subject's ct / segmentation / landmarks file, demo or user sheet."""
    names = {
        "ct": "ct.nii.gz",
        "segmentation": "seg.nii.gz",
        "landmarks": "landmarks.csv",
    }

    def get(wildcards):
        if SHEET is not None:
            return SHEET.loc[wildcards.subject, kind]
        return f"results/cohort/{wildcards.subject}/{names[kind]}"

    return get


def settings(**extra):
    """JSON settings for the CLI: the config sections a step uses (reruns it when they change)."""
    return json.dumps(
        {"seed": config["seed"], "device": config["device"], **extra}, sort_keys=True
    )


def render_settings(arm):
    section = config[arm]
    extra = {
        "names": config["landmarks"]["names"],
        "carm": config["carm"],
        "views": config["views"],
        "n_images": section["images_per_subject"],
    }
    if arm == "drr":
        extra["drr"] = {k: v for k, v in section.items() if k != "images_per_subject"}
    else:
        extra["acquisition"] = section["acquisition"]
    return settings(**extra)


def render_params(wildcards):
    return render_settings(wildcards.arm)


def gpu_request():
    """GPUs a GPU-capable job asks the scheduler for: 1 when the config says cuda."""
    return 1 if config["device"] == "cuda" else 0


def imageset_subjects(arm):
    """real: every subject (train/test membership is in folds.csv); drr: training subjects."""
    return SUBJECTS if arm == "real" else TRAIN_SUBJECTS


def imageset_shards(wildcards):
    return expand(
        "results/imagesets/{arm}/{subject}.h5",
        arm=wildcards.arm,
        subject=imageset_subjects(wildcards.arm),
    )


FOLD_IDS = sorted(FOLDS.fold.unique().tolist())
ARMS = config["detector"]["arms"]


def prediction_files():
    """Every per-run prediction file the report rests on (arms + baseline, folds x seeds)."""
    return expand(
        "results/predictions/{arm}/fold{fold}_seed{seed}.csv",
        arm=["baseline", *ARMS],
        fold=FOLD_IDS,
        seed=config["detector"]["seeds"],
    )


def output_dir(wildcards, output):
    """Params function: the folder of a rule's first output."""
    return str(Path(output[0]).parent)


def all_outputs():
    out = [
        "results/cohort/folds.csv",
        expand("results/cohort/qc/{subject}.png", subject=SUBJECTS),
    ]
    if SHEET is None:
        out.append("results/cohort/subjects.tsv")
    for arm in ("real", "drr"):
        out += expand(
            "results/imagesets/{arm}/{subject}.h5",
            arm=arm,
            subject=imageset_subjects(arm),
        )
        out.append(f"results/qc/imageset_{arm}.png")
    out += ["results/report/metrics.csv", "results/report/examples.png"]
    return out


wildcard_constraints:
    fold=r"\d+",
    seed=r"\d+",
