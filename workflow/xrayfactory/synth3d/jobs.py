"""synth3d's jobs, one per rule of workflow/rules/synth3d.smk (the table of all folds: in
synth3d/tables.py). A fold's jobs receive exactly the fold's training subjects (resolved by the
workflow from the config and the cohort); models record them and every later job checks that
it got the same fold and subjects."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from xrayfactory.cohort.deform import DeformationParams
from xrayfactory.cohort.landmarks import load_landmarks, save_landmarks
from xrayfactory.cohort.volumes import Volume, load_ct, load_segmentation, save_nifti
from xrayfactory.core.atomic import PathLike, write_csv
from xrayfactory.core.errors import InputError
from xrayfactory.core.progress import Progress
from xrayfactory.core.rng import rng_for
from xrayfactory.imaging.imageset import write_imageset
from xrayfactory.imaging.qc import subject_figure
from xrayfactory.imaging.render import ViewPlan, drr_imageset
from xrayfactory.synth3d.controls import latent_use, on_model_grid, reconstructed
from xrayfactory.synth3d.ctgrid import (
    GridSpec,
    NewMask,
    condition,
    deformed_mask,
    resample,
    to_hu,
    training_pair,
)
from xrayfactory.synth3d.model import (
    AutoencoderSettings,
    DiffusionSettings,
    Runtime,
    Synth3D,
    load_autoencoder,
    train_autoencoder,
    train_diffusion,
)
from xrayfactory.synth3d.quality import (
    drawn_landmarks,
    landmark_offset,
    reference_values,
    volume_quality,
)

log = logging.getLogger("xrayfactory")


@dataclass(frozen=True)
class FoldCTs:
    """A fold's training subjects and their files, in subject order."""

    fold: int
    subjects: list[str]
    ct: list[str]
    seg: list[str]
    landmarks: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for flag, files in (("ct", self.ct), ("seg", self.seg), ("landmarks", self.landmarks)):
            if files and len(files) != len(self.subjects):
                raise InputError(
                    f"--{flag}", f"{len(files)} files for {len(self.subjects)} subjects"
                )

    def load(self, i: int) -> tuple[Volume, Volume]:
        ct = load_ct(self.ct[i])
        return ct, load_segmentation(self.seg[i], ct, self.ct[i])

    def meta(self) -> dict:
        return {"fold": self.fold, "subjects": sorted(self.subjects)}

    def training_data(self, spec: GridSpec) -> tuple[np.ndarray, np.ndarray]:
        """(volumes, conditions) of every subject on the model grid."""
        pairs = [training_pair(*self.load(i), spec) for i in range(len(self.subjects))]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def fold_autoencoder(path: PathLike, data: FoldCTs) -> tuple:
    """load_autoencoder's tuple for the fold's autoencoder, checked to have trained on `data`."""
    loaded = load_autoencoder(path)
    if loaded[4] != data.meta():
        raise InputError(path, f"trained on {loaded[4]}, not on {data.meta()}")
    return loaded


def train_synth3d_autoencoder(
    data: FoldCTs,
    spec: GridSpec,
    settings: AutoencoderSettings,
    run: Runtime,
    out: PathLike,
    device: str,
) -> None:
    """The fold's 3D autoencoder, trained on its training CTs."""
    volumes, conditions = data.training_data(spec)
    log.info("training the synth3d autoencoder of fold %d on %d CTs", data.fold, len(volumes))
    train_autoencoder(
        volumes, conditions, spec, settings, run, Path(out), meta=data.meta(), device=device
    )


def train_synth3d_diffusion(
    data: FoldCTs,
    autoencoder: PathLike,
    settings: DiffusionSettings,
    run: Runtime,
    out: PathLike,
    device: str,
) -> None:
    """The fold's mask-conditioned latent diffusion model, in its autoencoder's latent space."""
    _, _, spec, _, _ = fold_autoencoder(autoencoder, data)
    volumes, conditions = data.training_data(spec)
    log.info("training the synth3d latent diffusion model of fold %d", data.fold)
    train_diffusion(
        autoencoder,
        volumes,
        conditions,
        settings,
        run,
        Path(out),
        meta=data.meta(),
        device=device,
    )


@dataclass(frozen=True)
class SamplingPlan:
    """How generated CTs are drawn: deformation of the training masks, sampler (none for the
    decoder alone), precision."""

    names: list[str]
    deformation: DeformationParams
    kind: str | None
    steps: int | None
    batch_size: int
    mixed_precision: bool
    seed: int


def landmarks_on_grid(masks: list[NewMask], spec: GridSpec) -> None:
    """An InputError naming `synth3d.shape` unless every carried landmark of the deformed masks
    lies on the model grid: a generated CT holds nothing beyond it, so the landmark would label
    anatomy the CT lacks (and its DRRs could not be rendered)."""
    problems = []
    for k, m in enumerate(masks):
        grid = Volume(m.seg, m.affine)
        outside = [name for name, p in m.landmarks.items() if not grid.contains(p)[0]]
        if outside:
            problems.append(f"volume {k} ({m.source}'s deformed mask): {', '.join(outside)}")
    if problems:
        extent = " x ".join(f"{n * spec.spacing_mm:g}" for n in spec.shape)
        raise InputError(
            "synth3d.shape",
            f"the model grid ({extent} mm, centred on each CT) does not hold the carried "
            f"landmarks of {'; '.join(problems)}; enlarge synth3d.shape or synth3d.spacing_mm",
        )


def sample_synth3d(
    data: FoldCTs,
    autoencoder: PathLike,
    diffusion: PathLike | None,
    plan: SamplingPlan,
    out: tuple[list[str], list[str], list[str]],
    device: str,
) -> None:
    """Generated CTs for deformed training masks: CT, label map and carried landmarks files
    `out` (three lists, one entry per volume). Without `diffusion`, the control
    `synth3d_nolatent`: the same masks (the same random streams) through the decoder alone."""
    model = Synth3D(autoencoder, diffusion, device=device)
    if model.meta.get("fold") != data.fold:
        raise InputError(autoencoder, f"trained for fold {model.meta.get('fold')}, not {data.fold}")
    sources = []  # (ct, seg, landmarks) per training subject, each read once
    for i in range(len(data.subjects)):
        ct, seg = data.load(i)
        sources.append((ct, seg, load_landmarks(data.landmarks[i], plan.names, ct)))
    out_ct, out_seg, out_landmarks = out
    n = len(out_ct)
    masks = []
    for k in range(n):
        i = k % len(data.subjects)
        rng = rng_for(plan.seed, "synth3d-mask", data.fold, k)
        masks.append(
            deformed_mask(data.subjects[i], *sources[i], model.spec, plan.deformation, rng)
        )
    landmarks_on_grid(masks, model.spec)
    progress = Progress(n, "synth3d generation", unit="volumes", interval=0)
    for start in range(0, n, plan.batch_size):
        batch = masks[start : start + plan.batch_size]
        volumes = model.generate(
            np.stack([m.condition for m in batch]),
            sampler=plan.kind,
            steps=plan.steps,
            rng_key=(plan.seed, "synth3d", data.fold, start),
            batch_size=len(batch),
            mixed_precision=plan.mixed_precision,
            progress=progress,
        )
        for k, (m, x) in enumerate(zip(batch, volumes, strict=True), start):
            hu = np.round(to_hu(x, model.spec)).astype(np.int16)
            save_nifti(out_ct[k], hu, m.affine)
            save_nifti(out_seg[k], m.seg, m.affine)
            save_landmarks(out_landmarks[k], m.landmarks)
            log.info("volume %d from %s's deformed mask -> %s", k, m.source, out_ct[k])


GENERATORS = {
    "synth3d": "synth3d latent diffusion CT + {drr}",
    "synth3d_nolatent": "synth3d decoder CT from its mask (zero latent, no diffusion) + {drr}",
}


def render_synth3d(
    arm: str,
    fold: int,
    volume: int,
    part: int,
    ct: PathLike,
    landmarks: PathLike,
    out: PathLike,
    plan: ViewPlan,
    drr: dict,
    device: str,
) -> None:
    """Part `part` of the DRRs of one generated CT of `arm` (synth3d or synth3d_nolatent): the
    `drr` arm's renderer, view ranges and image count, views from the part's own random stream
    (a part never changes when more are made). Both arms name a volume alike and draw the same
    views of it, so the control's images have synth3d's ids."""
    subject = f"synth3d-f{fold}-v{volume}"
    ct_volume = load_ct(ct)
    attrs = {
        "generator": GENERATORS[arm],
        "fold": fold,
        "trained_on": "the fold's training CTs",
    }
    result = drr_imageset(
        arm,
        subject,
        ct_volume,
        load_landmarks(landmarks, plan.names, ct_volume),
        plan,
        drr,
        device,
        attrs,
        view_stream=f"synth3d/part{part}",
    )
    write_imageset(out, result)


def render_drr_grid(
    subject: str,
    ct: PathLike,
    landmarks: PathLike,
    out: PathLike,
    plan: ViewPlan,
    drr: dict,
    spec: GridSpec,
    device: str,
) -> None:
    """Control `drr_grid`: the subject's `drr` views of its CT on the synth3d grid and window."""
    ct_volume = load_ct(ct)
    lm = load_landmarks(landmarks, plan.names, ct_volume)
    attrs = {
        "generator": f"{{drr}} of the CT on the synth3d grid ({spec.spacing_mm:g} mm, HU window "
        f"{list(spec.hu_range)})"
    }
    result = drr_imageset(
        "drr_grid", subject, on_model_grid(ct_volume, spec), lm, plan, drr, device, attrs
    )
    write_imageset(out, result)


def render_drr_recon(
    fold: int,
    subject: str,
    ct: PathLike,
    seg: PathLike,
    landmarks: PathLike,
    autoencoder: PathLike,
    out: PathLike,
    plan: ViewPlan,
    drr: dict,
    device: str,
) -> None:
    """Control `drr_recon`: the subject's `drr` views of the fold's autoencoder reconstruction
    of its CT (the autoencoder must have trained on the subject; a SPADE decoder reads the
    subject's label map)."""
    ae, _, spec, _, meta = load_autoencoder(autoencoder)
    if meta.get("fold") != fold or subject not in meta.get("subjects", []):
        raise InputError(autoencoder, f"trained on {meta}, not on subject {subject} of fold {fold}")
    ct_volume = load_ct(ct)
    lm = load_landmarks(landmarks, plan.names, ct_volume)
    attrs = {
        "generator": "{drr} of the fold's synth3d autoencoder reconstruction of the CT",
        "fold": fold,
    }
    rec = reconstructed(ct_volume, load_segmentation(seg, ct_volume, ct), ae, spec, device=device)
    write_imageset(out, drr_imageset("drr_recon", subject, rec, lm, plan, drr, device, attrs))


def synth3d_quality(
    data: FoldCTs,
    generated: tuple[list[str], list[str], list[str]],
    autoencoder: PathLike,
    spec: GridSpec,
    bone_hu: float,
    labels: dict[str, int],
    names: list[str],
    out: PathLike,
    qc: list[str],
) -> None:
    """Bone Dice, per-tissue HU distances and landmark offsets of the fold's generated CTs
    (`generated`: CT, label map and landmark files), beside its real CTs on the same grid and
    in the generator's HU window, and each generated CT's QC figure (`qc`: its AP and lateral
    DRRs with the carried landmarks). A generated CT's HU histograms are compared with the
    fold's real CTs', a real CT's with the other real CTs' (never with itself). Every CT also
    goes through the fold's `autoencoder` (controls.latent_use: does its decoder read the
    latent?)."""
    ae = fold_autoencoder(autoencoder, data)[0]
    real = []
    for i in range(len(data.subjects)):
        ct, seg = data.load(i)
        hu = on_model_grid(ct, spec)
        grid_seg = resample(seg.data, seg.affine, hu.affine, spec.shape, order=0, cval=0)
        cond = condition(seg.data, ct.data > spec.body_hu, ct.affine, hu.affine, spec)
        lm = load_landmarks(data.landmarks[i], names)
        real.append((hu.data, grid_seg, cond, hu.affine, lm))
    every_real, others = reference_values([(r[0], r[1]) for r in real], spec)

    def row(kind: str, volume, hu, seg, cond, affine, landmarks, pool) -> dict:
        drawn = drawn_landmarks(hu, seg, affine, spec, bone_hu, labels, names)
        q = volume_quality(hu, seg, pool, spec, bone_hu)
        return {
            "fold": data.fold,
            "volume": volume,
            "kind": kind,
            **q,
            **landmark_offset(drawn, landmarks),
            **latent_use(hu, cond, ae, spec),
        }

    rows = [
        row("real", subject, *r, pool)
        for subject, r, pool in zip(data.subjects, real, others, strict=True)
    ]
    for k, (ct_path, seg_path, lm_path, qc_path) in enumerate(zip(*generated, qc, strict=True)):
        ct = load_ct(ct_path)
        seg = load_segmentation(seg_path, ct, ct_path)
        landmarks = load_landmarks(lm_path, names)
        cond = condition(seg.data, ct.data > spec.body_hu, ct.affine, ct.affine, spec)
        rows.append(row("generated", k, ct.data, seg.data, cond, ct.affine, landmarks, every_real))
        subject_figure(ct, landmarks, f"synth3d-f{data.fold}-v{k}: 3D landmarks", qc_path)
        log.info(
            "fold %d volume %d: bone Dice %.3f, carried landmarks %.1f mm from the drawn bone's,"
            " latent effect %.1f HU",
            data.fold,
            k,
            rows[-1]["bone_dice"],
            rows[-1]["landmark_offset_mm"],
            rows[-1]["latent_effect_hu"],
        )
    write_csv(pd.DataFrame(rows), out)
