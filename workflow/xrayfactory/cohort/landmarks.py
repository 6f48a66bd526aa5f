"""3D anatomical landmarks: definitions from a segmentation, and the landmark file format.

Every definition below is the one used everywhere; names follow DeepFluoro where the definition
matches ("-l"/"-r": the patient's left/right). Directions are world RAS+ (+x right, +y anterior,
+z superior), so definitions hold for any voxel orientation. A "cap" is the centroid of the
structure's voxels that lie within `CAP_MM` of its extreme point along a direction: more stable
than a single extreme voxel.

Landmark files are CSV with columns ``name,x,y,z`` in world (RAS+) millimetres.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from xrayfactory.cohort.volumes import Volume
from xrayfactory.core.atomic import atomic_path
from xrayfactory.core.errors import InputError

CAP_MM = 3.0
CONTACT_MM = 6.0  # two bones closer than this are "in contact" (joint or symphysis) ...
CONTACT_VOXELS = 1.5  # ... or than this many voxels, on grids coarser than 4 mm

SIDES = {"l": "left", "r": "right"}
ANTERIOR, POSTERIOR = np.array([0.0, 1.0, 0.0]), np.array([0.0, -1.0, 0.0])
SUPERIOR, INFERIOR = np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, -1.0])


class _Anatomy:
    """Per-structure voxel sets of one segmentation, computed lazily and cached."""

    def __init__(self, seg: Volume, labels: dict[str, int], path: str | os.PathLike):
        self.seg, self.labels, self.path = seg, labels, path
        self._cache: dict[str, object] = {}

    def mask(self, structure: str) -> np.ndarray:
        key = f"mask:{structure}"
        if key not in self._cache:
            if structure not in self.labels:
                raise InputError("labels", f"no label id configured for structure {structure!r}")
            m = self.seg.data == self.labels[structure]
            if not m.any():
                raise InputError(self.path, f"missing label {structure} ({self.labels[structure]})")
            self._cache[key] = m
        return self._cache[key]  # type: ignore[return-value]

    def world(self) -> np.ndarray:
        """World coordinates of every voxel, shape (I, J, K, 3)."""
        if "world" not in self._cache:
            ijk = np.indices(self.seg.shape).reshape(3, -1).T
            self._cache["world"] = self.seg.voxel_to_world(ijk).reshape((*self.seg.shape, 3))
        return self._cache["world"]  # type: ignore[return-value]

    def contact_mm(self) -> float:
        """The contact distance on this grid (a coarse grid's neighbours are further apart)."""
        return max(CONTACT_MM, CONTACT_VOXELS * float(np.max(self.seg.spacing)))

    def near(self, structure: str, other: str) -> np.ndarray:
        """Voxels of `structure` within the contact distance of `other`."""
        dist = ndi.distance_transform_edt(~self.mask(other), sampling=self.seg.spacing)
        return self.mask(structure) & (dist <= self.contact_mm())

    def cap(self, mask: np.ndarray, direction: np.ndarray, name: str) -> np.ndarray:
        """Centroid of the voxels within CAP_MM of the extreme along `direction`."""
        ijk = np.argwhere(mask)
        if len(ijk) == 0:
            raise InputError(self.path, f"landmark {name}: its defining region is empty")
        pts = self.seg.voxel_to_world(ijk)
        h = pts @ direction
        sel = h >= h.max() - CAP_MM
        at_border = (ijk[sel] == 0) | (ijk[sel] == np.asarray(self.seg.shape) - 1)
        if at_border.any():
            raise InputError(
                self.path,
                f"landmark {name} is undefined: its structure is cut by the scan border "
                f"(extend the scan or drop {name} from landmarks.names)",
            )
        return pts[sel].mean(axis=0)

    def side_height(self, side: str) -> tuple[float, float]:
        """(femoral-head z, iliac-crest z) of one side: the hip bone's vertical extent of use."""
        crest = self.seg.voxel_to_world(np.argwhere(self.mask(f"hip_{side}")))[:, 2].max()
        return float(femoral_head(self, side, f"FH-{side[0]}")[2]), float(crest)

    def upper_ilium(self, side: str) -> np.ndarray:
        """Hip-bone voxels above a quarter of the way from the femoral head to the crest."""
        fh_z, crest_z = self.side_height(side)
        return self.mask(f"hip_{side}") & (self.world()[..., 2] > fh_z + 0.25 * (crest_z - fh_z))


def _fit_sphere(points: np.ndarray) -> np.ndarray:
    """Least-squares sphere centre through (N, 3) points."""
    a = np.c_[2 * points, np.ones(len(points))]
    b = (points**2).sum(axis=1)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    return sol[:3]


def femoral_head(anat: _Anatomy, side: str, name: str) -> np.ndarray:
    """FH: centre of the sphere fitted to the femur's surface voxels within the contact distance
    of the same side's hip bone (the articular surface of the femoral head)."""
    key = f"FH:{side}"
    if key not in anat._cache:
        femur = anat.mask(f"femur_{side}")
        surface = femur & ~ndi.binary_erosion(femur, border_value=1)
        dist = ndi.distance_transform_edt(~anat.mask(f"hip_{side}"), sampling=anat.seg.spacing)
        ijk = np.argwhere(surface & (dist <= anat.contact_mm()))
        if len(ijk) < 20:
            raise InputError(
                anat.path, f"landmark {name}: femoral head and acetabulum not in contact"
            )
        anat._cache[key] = _fit_sphere(anat.seg.voxel_to_world(ijk))
    return anat._cache[key]  # type: ignore[return-value]


def _symphysis(anat: _Anatomy, side: str) -> np.ndarray:
    other = "right" if side == "left" else "left"
    return anat.near(f"hip_{side}", f"hip_{other}")


def _centroid(mask: np.ndarray, anat: _Anatomy) -> np.ndarray:
    return anat.seg.voxel_to_world(np.argwhere(mask)).mean(axis=0)


Definition = Callable[[_Anatomy, str, str], np.ndarray]

# name pattern -> definition(anatomy, side, name); "{s}" stands for l / r.
DEFINITIONS: dict[str, Definition] = {
    # Femoral head centre: sphere fit to the articular surface (see femoral_head).
    "FH-{s}": femoral_head,
    # Anterior superior iliac spine: anterior cap of the upper ilium.
    "ASIS-{s}": lambda a, side, n: a.cap(a.upper_ilium(side), ANTERIOR, n),
    # Posterior superior iliac spine: posterior cap of the upper ilium.
    "PSIS-{s}": lambda a, side, n: a.cap(a.upper_ilium(side), POSTERIOR, n),
    # Superior / inferior pubic symphysis: superior / inferior cap of the part of this side's
    # hip bone within the contact distance of the other side's (the symphyseal surface).
    "SPS-{s}": lambda a, side, n: a.cap(_symphysis(a, side), SUPERIOR, n),
    "IPS-{s}": lambda a, side, n: a.cap(_symphysis(a, side), INFERIOR, n),
    # L5: centroid of the whole fifth lumbar vertebra.
    "L5": lambda a, side, n: _centroid(a.mask("vertebra_L5"), a),
}


def _definition(name: str) -> tuple[Definition, str]:
    for pattern, fn in DEFINITIONS.items():
        for s, side in SIDES.items():
            if pattern.replace("{s}", s) == name:
                return fn, side
        if pattern == name:
            return fn, ""
    known = sorted(
        p.replace("{s}", s) for p in DEFINITIONS for s in (SIDES if "{s}" in p else [""])
    )
    raise InputError("landmarks.names", f"unknown landmark {name!r}; defined: {', '.join(known)}")


def _derive(anat: _Anatomy, name: str) -> np.ndarray:
    fn, side = _definition(name)
    return np.asarray(fn(anat, side, name), float)


def derive_landmarks(
    seg: Volume, labels: dict[str, int], names: Sequence[str], path: str | os.PathLike
) -> dict[str, np.ndarray]:
    """Compute the named landmarks (world mm) from a segmentation."""
    anat = _Anatomy(seg, labels, path)
    return {name: _derive(anat, name) for name in names}


def derive_where_defined(
    seg: Volume, labels: dict[str, int], names: Sequence[str], path: str | os.PathLike
) -> dict[str, np.ndarray]:
    """`derive_landmarks`, with NaN for each landmark that has no definition or whose
    definition fails on this segmentation (one shared anatomy: masks and fits computed once)."""
    anat = _Anatomy(seg, labels, path)
    out = {}
    for name in names:
        try:
            out[name] = _derive(anat, name)
        except InputError:
            out[name] = np.full(3, np.nan)
    return out


def save_landmarks(path: str | os.PathLike, landmarks: dict[str, np.ndarray]) -> None:
    df = pd.DataFrame(
        [(n, *np.round(p, 4)) for n, p in landmarks.items()], columns=["name", "x", "y", "z"]
    )
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def _rows(path: str | os.PathLike) -> list[list[str]]:
    try:
        with open(path, newline="") as f:
            return [row for row in csv.reader(f) if row]
    except (UnicodeDecodeError, csv.Error) as e:
        raise InputError(path, f"not a readable landmark CSV: {e}") from e


def load_landmarks(
    path: str | os.PathLike, names: Sequence[str], volume: Volume | None = None
) -> dict[str, np.ndarray]:
    """Read the named landmarks (CSV name,x,y,z in world mm); each must be present once,
    numeric, finite and (if given) inside `volume`. Every problem of the file is reported at
    once."""
    if not os.path.exists(path):
        raise InputError(path, "landmark file does not exist")
    rows = _rows(path)
    if not rows or rows[0][:4] != ["name", "x", "y", "z"]:
        found = ",".join(rows[0]) if rows else "an empty file"
        raise InputError(path, f"expected columns name,x,y,z; found {found}")
    width = len(rows[0])
    problems, table, listed = [], {}, set()
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != width:
            problems.append(f"row {line} has {len(row)} fields, the header {width}")
            continue
        name = row[0]
        listed.add(name)
        try:
            point = np.array([float(v) for v in row[1:4]])
        except ValueError:
            problems.append(f"row {line} ({name}): non-numeric coordinate in {', '.join(row[1:4])}")
            continue
        if name in table:
            problems.append(f"landmark {name} listed more than once")
        table[name] = point
    missing = [n for n in names if n not in listed]
    if missing:
        problems.append(f"missing landmark(s): {', '.join(missing)}")
    out = {n: table[n] for n in names if n in table}
    for n, p in out.items():
        if not np.all(np.isfinite(p)):
            problems.append(f"landmark {n} has non-finite coordinates {p}")
        elif volume is not None and not volume.contains(p)[0]:
            problems.append(f"landmark {n} at {np.round(p, 1)} mm lies outside the volume")
    if problems:
        raise InputError(path, "; ".join(problems))
    return out
