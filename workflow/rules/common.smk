import json
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from xrayfactory.cohort.sheet import demo_subjects, folds, read_sheet
from xrayfactory.core.config import schema_file, validate_config
from xrayfactory.core.errors import InputError
from xrayfactory.detection.training_sets import (
    available_images,
    training_sets,
    units_for,
    units_to_make,
    with_arms,
)
from snakemake.exceptions import WorkflowError

ENV = "../../envs/xrayfactory.yaml"

try:
    validate_config(config, schema_file("config.schema.yaml"))
    if config["cohort"]["source"] == "sheet":
        if not config["cohort"]["sheet"]:
            raise InputError(
                "config", "key cohort.sheet: required when cohort.source is sheet"
            )
        SHEET = read_sheet(config["cohort"]["sheet"], schema_file("cohort.schema.yaml"))
        SUBJECTS = list(SHEET.index)
    elif config["cohort"]["source"] == "deepfluoro":
        SHEET = None
        SUBJECTS = list(config["deepfluoro"]["specimens"])
    else:
        SHEET = None
        SUBJECTS = demo_subjects(config["cohort"]["n_subjects"])
    SPLIT = config["split"]
    FOLDS = folds(SUBJECTS, SPLIT["scheme"], SPLIT["n_folds"], SPLIT["folds"])
except InputError as e:
    raise WorkflowError(f"error: {e}") from None

# Job images (--sdm apptainer): GPU-capable rules run in the CUDA image, the rest in the CPU one.
CPU_IMAGE = config["containers"]["cpu"]
CUDA_IMAGE = config["containers"]["cuda"]
DEEPFLUORO = config["cohort"]["source"] == "deepfluoro"
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


def cohort_files(kind):
    """Every subject's file of one kind (ct, segmentation, landmarks), in cohort order."""
    get = subject_file(kind)
    return [get(SimpleNamespace(subject=s)) for s in SUBJECTS]


def checked_label_groups():
    """Label groups every subject's map must hold: the synth3d bone groups, where an arm
    builds on the synth3d grid (synth3d and its controls)."""
    if not set(SYNTH3D_GRID_ARMS) & set(config["detector"]["arms"]):
        return {}
    section = config["synth3d"]
    return {group: section["condition"][group] for group in section["bone"]}


CHECKED = "results/cohort/checked.csv"
# Jobs that make training images (rendering, the generators and their samples) run before
# ready detectors: the generator chains then overlap the `real` and `drr` detectors instead of
# following them, and the generated arms' detectors do not start last (the scheduler would
# otherwise prefer the jobs with the largest inputs).
IMAGES_FIRST = 10


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


def control_render_settings():
    """drr_grid renders like `drr`, after resampling to the synth3d grid and HU window."""
    keys = ("shape", "spacing_mm", "hu_range", "body_hu", "condition", "bone")
    grid = {k: config["synth3d"][k] for k in keys}
    return json.dumps(
        {**json.loads(render_settings("drr")), "synth3d": grid}, sort_keys=True
    )


def gpu_request():
    """GPUs a GPU-capable job asks the scheduler for: 1 unless the config says cpu (`auto`
    asks for one and falls back to the CPU where the job lands without one)."""
    return 0 if config["device"] == "cpu" else 1


def imageset_subjects(arm):
    """real: every subject (train/test membership is in folds.csv); drr and the per-subject
    controls: training subjects."""
    return SUBJECTS if arm == "real" else TRAIN_SUBJECTS


def drr_recon_shards(folds):
    """The drr_recon control: each fold's training subjects through that fold's autoencoder."""
    return [
        f"results/imagesets/drr_recon/fold{fold}/{subject}.h5"
        for fold in folds
        for subject in fold_training_subjects(fold)
    ]


def generated_units(arm, n=None):
    """A generated arm's units (synth2d shards, synth3d parts) per fold: those holding its
    first `n` images, or (n None) all it makes, enough for its largest training set."""
    if n is None:
        return range(units_to_make(config, ALL_SETS, arm))
    return range(units_for(config, arm, n))


def synth2d_shards(folds, n=None):
    return expand(
        "results/imagesets/synth2d/fold{fold}/shard{shard}.h5",
        fold=folds,
        shard=generated_units("synth2d", n),
    )


def fold_synth2d_shards(wildcards):
    """The shards holding the fold's synth2d training set (detector.train_images)."""
    return synth2d_shards(wildcards.fold, config["detector"]["train_images"])


def synth3d_volumes(folds, name, arm="synth3d"):
    """The generated volumes' files (name: ct.nii.gz, seg.nii.gz, landmarks.csv) of synth3d
    or its control synth3d_nolatent."""
    return expand(
        "results/{arm}/fold{fold}/vol{vol}/{name}",
        arm=arm,
        fold=folds,
        vol=range(config["synth3d"]["n_volumes"]),
        name=name,
    )


def synth3d_shards(folds, n=None, arm="synth3d"):
    """Per fold, every volume's parts in volume order (a volume's images stay together), of
    synth3d or its control synth3d_nolatent."""
    return expand(
        "results/imagesets/{arm}/fold{fold}/vol{vol}_part{part}.h5",
        arm=arm,
        fold=folds,
        vol=range(config["synth3d"]["n_volumes"]),
        part=generated_units(arm, n),
    )


def imageset_shards(wildcards):
    """Input function: the shards an arm's training set reads; a sweep point's or a recipe's:
    its sources'."""
    own = {wildcards.arm: config["detector"]["train_images"]}
    sources = TRAINING_SETS.get(wildcards.arm, own)
    return [
        path for arm, n in sources.items() for path in arm_shards(arm, wildcards, n)
    ]


def arms_training_shards(arms):
    """Input function: the image sets the fold's detectors of `arms` train on (the
    augmentation figure: the study's arms; realism: every arm it compares)."""

    def shards(wildcards):
        n = config["detector"]["train_images"]
        return [path for arm in arms for path in arm_shards(arm, wildcards, n)]

    return shards


def arm_shards(arm, wildcards, n=None):
    """An arm's shards: per subject for real, drr, drr_grid and real_resized, per fold (or all
    folds) for the generated arms, synth3d_nolatent and drr_recon. With a fold wildcard: exactly
    what that fold trains on (a per-subject arm's training subjects; a generated arm's fold, the
    units holding its first `n` images)."""
    folds = wildcards.fold if hasattr(wildcards, "fold") else FOLD_IDS
    if arm == "synth2d":
        return synth2d_shards(folds, n)
    if arm in SYNTH3D_VOLUME_ARMS:
        return synth3d_shards(folds, n, arm)
    if arm == "drr_recon":
        return drr_recon_shards(folds)
    subjects = imageset_subjects(arm)
    if hasattr(wildcards, "fold"):
        subjects = fold_training_subjects(wildcards.fold)
    return expand("results/imagesets/{arm}/{subject}.h5", arm=arm, subject=subjects)


def fold_subjects(fold, role):
    """The fold's training or test subjects, sorted: fold membership is resolved here, once,
    from the config and the cohort (results/cohort/folds.csv records it for readers)."""
    rows = FOLDS[(FOLDS.fold == int(fold)) & (FOLDS.role == role)]
    return sorted(rows.subject)


def fold_training_subjects(fold):
    return fold_subjects(fold, "train")


def fold_real_shards(role):
    """Input function: the real image sets of the fold's training or test subjects."""

    def shards(wildcards):
        return expand(
            "results/imagesets/real/{subject}.h5",
            subject=fold_subjects(wildcards.fold, role),
        )

    return shards


def fold_subject_files(kind):
    """Input function: a file kind (ct, segmentation, landmarks) of the fold's training
    subjects, in subject order: the generators' training data."""
    get = subject_file(kind)

    def files(wildcards):
        return [
            get(SimpleNamespace(subject=s))
            for s in fold_training_subjects(wildcards.fold)
        ]

    return files


def fold_training_subject_ids(wildcards):
    return fold_training_subjects(wildcards.fold)


FOLD_IDS = sorted(FOLDS.fold.unique().tolist())
ARMS = config["detector"]["arms"]
# the study's arms and the controls that isolate what each generator changes
ALL_ARMS = (
    "real",
    "drr",
    "synth3d",
    "synth2d",
    "drr_grid",
    "drr_recon",
    "synth3d_nolatent",
    "real_resized",
)
# the arms that render generated CTs (results/<arm>/fold<f>/vol<k>/), and all whose images are
# made on the synth3d model grid
SYNTH3D_VOLUME_ARMS = ("synth3d", "synth3d_nolatent")
SYNTH3D_GRID_ARMS = (*SYNTH3D_VOLUME_ARMS, "drr_grid", "drr_recon")
REALISM_ARMS = ["real", *[arm for arm in ARMS if arm != "real"]]
try:
    # the detector arms beyond ARMS: the scaling sweep's points and the recipes
    TRAINING_SETS = training_sets(config["detector"], available_images(config, FOLDS))
except InputError as e:
    raise WorkflowError(f"error: {e}") from None
ALL_SETS = with_arms(config["detector"], TRAINING_SETS)
DETECTOR_ARMS = [*ARMS, *TRAINING_SETS]
SYNTH2D_SAMPLING_KEYS = (
    "shard_size",
    "shape_scale",
    "sampler",
    "fidelity",
    "threads",
)


def detector_settings(wildcards):
    """The detector's training settings: arms, seeds (wildcards), sizes, recipes and threads
    left out, so that adding an arm, a seed, a size or a recipe does not retrain the others; a
    sweep point or a recipe adds its images per source."""
    skip = ("arms", "seeds", "sizes", "recipes", "threads")
    detector = {k: v for k, v in config["detector"].items() if k not in skip}
    if wildcards.arm in TRAINING_SETS:
        return settings(detector=detector, training_set=TRAINING_SETS[wildcards.arm])
    return settings(detector=detector)


def real_selection():
    """Which real images the `real` arm's first-seed detector trains on in a fold (count and
    seed): the synth2d generator learns from the same selection."""
    return {
        "n_images": config["detector"]["train_images"],
        "seed": config["detector"]["seeds"][0],
    }


def real_detector(wildcards):
    """The fold's `real`-arm detector (first seed): it judges realism and label fidelity."""
    seed = config["detector"]["seeds"][0]
    return f"results/detector/real/fold{wildcards.fold}/seed{seed}/model.pt"


def synth2d_settings(stage):
    """CLI settings of a synth2d stage: training ignores sampling keys (and vice versa), so
    changing the sampler does not retrain the generator."""
    section = config["synth2d"]
    if stage == "train":
        part = {k: v for k, v in section.items() if k not in SYNTH2D_SAMPLING_KEYS}
        return settings(synth2d=part, selection=real_selection())
    view_keys = {
        "names": config["landmarks"]["names"],
        "carm": config["carm"],
        "views": config["views"],
    }
    if stage == "sample":
        sampling = {k: section[k] for k in ("shard_size", "shape_scale", "sampler")}
        return settings(**view_keys, **sampling)
    return settings(
        **view_keys,
        fidelity=section["fidelity"],
        shape_scale=section["shape_scale"],
        n_bootstrap=config["evaluation"]["n_bootstrap"],
    )


SYNTH3D_SAMPLING_KEYS = ("n_volumes", "sampler", "threads", "bone_hu")


def synth3d_settings(stage):
    """CLI settings of a synth3d stage: the autoencoder ignores the diffusion model's keys,
    neither training stage sees sampling keys, so each change reruns only what it affects.
    """
    section = config["synth3d"]
    train = {k: v for k, v in section.items() if k not in SYNTH3D_SAMPLING_KEYS}
    if stage == "autoencoder":
        return settings(synth3d={k: v for k, v in train.items() if k != "diffusion"})
    if stage == "diffusion":
        return settings(synth3d=train)
    if stage == "quality":
        return settings(
            synth3d=section, names=config["landmarks"]["names"], labels=config["labels"]
        )
    # the control synth3d_nolatent samples nothing: only the batch size of its decoder
    sampler = section["sampler"]
    if stage == "nolatent":
        sampler = {"batch_size": sampler["batch_size"]}
    return settings(
        names=config["landmarks"]["names"],
        deformation=config["cohort"]["deformation"],
        sampler=sampler,
        mixed_precision=section["mixed_precision"],
    )


def deepfluoro_preprocessed():
    """The preprocessed DeepFluoro file the import uses for images and labels, if any."""
    path = config["deepfluoro"]["preprocessed"]
    return [path] if path else []


def preprocessed_flag(wildcards, input):
    """Params function: `--preprocessed FILE` when the import has one."""
    return f"--preprocessed {input.preprocessed}" if input.preprocessed else ""


def checksum_flags(source):
    """The archive's checksum options: the pinned sha256 when set, else where it is published."""
    if source["sha256"]:
        return f"--sha256 {source['sha256']}"
    if source["checksum_url"]:
        return f"--checksum-url {shlex.quote(source['checksum_url'])}"
    return ""


def prediction_files(arms=("baseline", *DETECTOR_ARMS)):
    """Per-run prediction files of `arms` (default: what the report rests on: the arms, the
    sweep's points and the baseline), folds x seeds."""
    return expand(
        "results/predictions/{arm}/fold{fold}_seed{seed}.csv",
        arm=arms,
        fold=FOLD_IDS,
        seed=config["detector"]["seeds"],
    )


def output_dir(wildcards, output):
    """Params function: the folder of a rule's first output."""
    return str(Path(output[0]).parent)


def generator_outputs(arm):
    """A generated arm's image sets, QC figures and report tables."""
    if arm == "synth2d":
        return [
            synth2d_shards(FOLD_IDS),
            "results/qc/imageset_synth2d.png",
            "results/report/label_fidelity.csv",
        ]
    return [
        synth3d_shards(FOLD_IDS),
        "results/qc/imageset_synth3d.png",
        expand(
            "results/synth3d/qc/fold{fold}_vol{vol}.png",
            fold=FOLD_IDS,
            vol=range(config["synth3d"]["n_volumes"]),
        ),
        "results/report/synth3d_quality.csv",
    ]


def arm_outputs(arm):
    """What `snakemake <arm>` builds: the arm's image sets and QC (a generated arm's models,
    QC and tables too) and, when it is a detector arm, its runs' predictions (realism, which
    compares the arms, is the study's: `all`).
    """
    if arm in ("synth3d", "synth2d"):
        out = generator_outputs(arm)
    else:
        out = [
            imageset_shards(SimpleNamespace(arm=arm)),
            f"results/qc/imageset_{arm}.png",
        ]
    if arm in ARMS:
        out += prediction_files(
            [arm, *[a for a, c in TRAINING_SETS.items() if arm in c]]
        )
    return out


def all_outputs():
    out = [
        "results/cohort/folds.csv",
        expand("results/cohort/qc/{subject}.png", subject=SUBJECTS),
    ]
    if SHEET is None:
        out.append("results/cohort/subjects.tsv")
    for arm in ALL_ARMS:
        if arm in ("real", "drr") or arm in ARMS:
            out += arm_outputs(arm)
    out += [
        expand("results/qc/augmentation_fold{fold}.png", fold=FOLD_IDS[:1]),
        "results/report/metrics.csv",
        "results/report/examples.png",
        "results/report/scaling.png",
        "results/report/realism.csv",
    ]
    return out


wildcard_constraints:
    fold=r"\d+",
    seed=r"\d+",
