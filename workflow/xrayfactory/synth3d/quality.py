"""Quality of generated CTs: mask adherence, per-tissue HU histogram distance to real CTs, and
how far the carried landmarks are from the anatomy the generator drew.

Tissues come from the label map on the model grid: `bone` (the bone label groups), `organ` (the
other label groups) and `other` (every other voxel: fat, muscle, air).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.stats import wasserstein_distance

from xrayfactory.cohort.landmarks import derive_where_defined
from xrayfactory.cohort.volumes import Volume
from xrayfactory.synth3d.ctgrid import GridSpec

TISSUES = ("bone", "organ", "other")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1.0 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def tissues(seg: np.ndarray, spec: GridSpec) -> dict[str, np.ndarray]:
    bone = np.isin(seg, spec.bone_labels())
    labelled = np.isin(seg, [i for _, ids in spec.groups for i in ids])
    return {"bone": bone, "organ": labelled & ~bone, "other": ~labelled}


def _sample(values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return values if len(values) <= n else rng.choice(values, n, replace=False)


def tissue_values(
    pairs: list[tuple[np.ndarray, np.ndarray]], spec: GridSpec, *, n: int = 100_000
) -> dict[str, np.ndarray]:
    """HU values per tissue pooled over (hu, seg) pairs, at most `n` per tissue (fixed seed;
    empty without pairs)."""
    rng = np.random.default_rng(0)
    out = {}
    for t in TISSUES:
        values = [hu[tissues(seg, spec)[t]] for hu, seg in pairs]
        out[t] = _sample(np.concatenate(values), n, rng) if values else np.empty(0)
    return out


def reference_values(
    real: list[tuple[np.ndarray, np.ndarray]], spec: GridSpec
) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    """What HU histograms are compared with: for a generated CT, every real CT of the fold
    (tissue_values of `real`, (hu, seg) pairs); for each real CT, the others (a CT compared with
    a pool holding itself would look about twice as close as it is)."""
    others = [tissue_values(real[:i] + real[i + 1 :], spec) for i in range(len(real))]
    return tissue_values(real, spec), others


def volume_quality(
    hu: np.ndarray, seg: np.ndarray, real: dict[str, np.ndarray], spec: GridSpec, bone_hu: float
) -> dict[str, float]:
    """Bone Dice (HU > bone_hu vs the conditioning bone labels) and, per tissue, the earth
    mover's distance (HU) between the generated and the real CTs' histograms."""
    row = {"bone_dice": dice(hu > bone_hu, np.isin(seg, spec.bone_labels()))}
    generated = tissue_values([(hu, seg)], spec)
    for t in TISSUES:
        ok = len(generated[t]) and len(real[t])
        row[f"hu_emd_{t}"] = (
            float(wasserstein_distance(generated[t], real[t])) if ok else float("nan")
        )
        row[f"hu_mean_{t}"] = float(generated[t].mean()) if len(generated[t]) else float("nan")
    return row


def drawn_landmarks(
    hu: np.ndarray,
    seg: np.ndarray,
    affine: np.ndarray,
    spec: GridSpec,
    bone_hu: float,
    labels: dict[str, int],
    names: list[str],
) -> dict[str, np.ndarray]:
    """Landmarks re-derived from the bone a CT shows: each voxel above `bone_hu` within two
    voxels of the label map's bone takes the nearest bone label, and each landmark's definition
    (landmarks.DEFINITIONS) runs on that map. NaN where it fails or has no definition."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    labelled_bone = np.isin(seg, spec.bone_labels())
    dist, idx = ndi.distance_transform_edt(~labelled_bone, sampling=spacing, return_indices=True)
    near = (hu > bone_hu) & (dist <= 2 * spacing.max())
    drawn = Volume(np.where(near, seg[tuple(idx)], 0).astype(np.int16), affine)
    return derive_where_defined(drawn, labels, names, "the drawn bone")


def landmark_offset(drawn: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict:
    """Mean distance (mm) between re-derived and labelled landmarks, over those derived, and
    how many were (of how many labelled): a CT that lets none be derived has no offset, and
    its count says so."""
    d = [np.linalg.norm(drawn[n] - p) for n, p in labels.items() if np.isfinite(drawn[n]).all()]
    return {
        "landmark_offset_mm": float(np.mean(d)) if d else float("nan"),
        "landmarks_derived": len(d),
        "landmarks_labelled": len(labels),
    }
