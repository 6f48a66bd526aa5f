"""DeepFluoro (Grupp et al. 2020, CC BY-NC 4.0): the full-resolution HDF5 file read into the
project's cohort (CT, label map, 3D landmarks per specimen) and image sets (real X-rays).

File layout (rg2/DeepFluoroLabeling-IPCAI2020, hdf5_layouts): `proj-params/{intrinsic (3x3),
extrinsic (4x4, world -> camera), num-rows, num-cols, pixel-row-spacing, pixel-col-spacing}`;
per specimen `vol/{pixels (z, y, x), spacing, origin, dir-mat}` (ITK image in LPS mm),
`vol-seg/image/{...}`, `vol-seg/labels-def/<id>` (label names), `vol-landmarks/<name>` (LPS mm),
`projections/NNN/{image/pixels, gt-landmarks/<name> (col, row), gt-poses/cam-to-pelvis-vol
(camera world -> pelvis volume), rot-180-for-up}`. Camera frame: origin at the X-ray source,
x along columns, y along rows, z towards the source.

A projection maps an LPS point x to pixels by K [E inv(C T)] x, with T the stored
cam-to-pelvis-vol pose and C the half-voxel translation that xreg (the dataset's own code)
applies to it (`pose_offset_mm`). Preprocessing (SyntheX / IPCAI protocol): crop a border,
log transform, rotate 180 degrees where `rot-180-for-up` says so, downsample by block means. The
same 2D affine moves the landmarks and the projection matrix, so projection and labels agree.
The labels are the stored 2D landmarks (the dataset's ground truth), and so is visibility: a
landmark is visible where its stored position lies in the imported image (`in_image`); one
absent from `gt-landmarks` or not finite there is invisible. An imported P whose handedness
differs from the synthetic C-arm's (a mirrored convention) is refused (`check_handedness`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from xrayfactory.core.errors import InputError
from xrayfactory.imaging.geometry import CArm, decompose_projection, projection_matrix
from xrayfactory.imaging.views import pixel_rescale

SPECIMENS = ("17-1882", "18-1109", "18-0725", "18-2799", "18-2800", "17-1905")
# X-rays per specimen in the archive (366 in all)
IMAGES = {
    "17-1882": 111,
    "18-1109": 104,
    "18-0725": 24,
    "18-2799": 48,
    "18-2800": 55,
    "17-1905": 24,
}
LANDMARKS = tuple(
    f"{name}-{side}"
    for name in ("FH", "GSN", "IOF", "MOF", "SPS", "IPS", "ASIS")
    for side in ("l", "r")
)
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse


@dataclass(frozen=True)
class Preprocessing:
    """The 2D preprocessing of the projections: border crop (px), downsampling factor."""

    border: int = 50
    downsample: int = 4
    pose_offset_mm: tuple[float, float, float] = (-0.5, -0.5, -0.5)


@dataclass(frozen=True)
class ProjParams:
    intrinsic: np.ndarray  # (3, 3)
    extrinsic: np.ndarray  # (4, 4)
    rows: int
    cols: int
    spacing: float  # mm per pixel at the detector


@dataclass
class Specimen:
    """One specimen in RAS+ mm: CT and label map (NIfTI-ready arrays + affine), labels,
    3D landmarks."""

    ct: np.ndarray
    seg: np.ndarray
    affine: np.ndarray
    labels: dict[int, str]
    landmarks: dict[str, np.ndarray]


@dataclass
class Projections:
    """A specimen's preprocessed projections: images (N, H, W), the stored 2D landmarks
    (N, L, 2) in pixels (NaN where a projection's `gt-landmarks` lacks one or holds a non-finite
    value), projection matrices (N, 3, 4) from RAS+ mm, and the stored projection ids."""

    images: np.ndarray
    landmarks: np.ndarray
    projection: np.ndarray
    ids: list[str]


class Reader:
    """Reads groups of one DeepFluoro file; every missing or malformed item is an InputError
    naming the file and the group path."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise InputError(self.path, "file does not exist")
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as e:
            raise InputError(self.path, f"not a readable HDF5 file: {e}") from e

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def _error(self, group: str, problem: str) -> InputError:
        return InputError(f"{self.path}:/{group}", problem)

    def group(self, path: str) -> h5py.Group:
        obj = self.file.get(path)
        if not isinstance(obj, h5py.Group):
            raise self._error(path, "group missing")
        return obj

    def array(self, path: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """A dataset's values, reshaped to `shape` when given (the file stores vectors as
        (n, 1)); a size that does not fit is an error naming the dataset."""
        obj = self.file.get(path)
        if not isinstance(obj, h5py.Dataset):
            raise self._error(path, "dataset missing")
        value = np.asarray(obj[()])
        if shape is not None:
            if value.size != int(np.prod(shape)) or (len(shape) == 2 and value.shape != shape):
                raise self._error(path, f"shape {value.shape}, expected {shape}")
            value = value.reshape(shape)
        return value

    def proj_params(self) -> ProjParams:
        g = "proj-params"
        self.group(g)
        row, col = (
            self.array(f"{g}/pixel-row-spacing", (1,)),
            self.array(f"{g}/pixel-col-spacing", (1,)),
        )
        if not np.isclose(row[0], col[0]):
            raise self._error(g, f"non-square pixels ({row[0]} x {col[0]} mm) are not supported")
        return ProjParams(
            intrinsic=self.array(f"{g}/intrinsic", (3, 3)).astype(float),
            extrinsic=self.array(f"{g}/extrinsic", (4, 4)).astype(float),
            rows=int(self.array(f"{g}/num-rows", (1,))[0]),
            cols=int(self.array(f"{g}/num-cols", (1,))[0]),
            spacing=float(row[0]),
        )

    def image(self, path: str) -> tuple[np.ndarray, np.ndarray]:
        """An ITK image group -> (array in (i, j, k) = (x, y, z) order, LPS affine)."""
        pixels = self.array(f"{path}/pixels")
        if pixels.ndim != 3:
            raise self._error(f"{path}/pixels", f"expected a 3D volume, got shape {pixels.shape}")
        spacing = self.array(f"{path}/spacing", (3,))
        origin = self.array(f"{path}/origin", (3,))
        direction = self.array(f"{path}/dir-mat", (3, 3))
        affine = np.eye(4)
        affine[:3, :3] = direction * spacing
        affine[:3, 3] = origin
        return pixels.transpose(2, 1, 0), affine

    def specimen(self, spec: str, names: list[str]) -> Specimen:
        """CT, label map, label names and the configured 3D landmarks of one specimen (RAS+)."""
        self.group(spec)
        ct, lps = self.image(f"{spec}/vol")
        seg, seg_lps = self.image(f"{spec}/vol-seg/image")
        if seg.shape != ct.shape or not np.allclose(seg_lps, lps, atol=1e-3):
            raise self._error(f"{spec}/vol-seg/image", "segmentation is not on the CT's grid")
        labels_g = self.group(f"{spec}/vol-seg/labels-def")
        labels = {int(k): _text(labels_g[k][()]) for k in labels_g}
        return Specimen(
            ct=ct.astype(np.float32),
            seg=seg.astype(np.int16),
            affine=LPS_TO_RAS @ lps,
            labels=labels,
            landmarks=self.landmarks_3d(spec, names),
        )

    def _names(self, path: str, names: list[str], missing_ok: bool = False) -> list[str]:
        """Checks the landmark names stored at `path` against the configured ones; returns
        the stored names."""
        stored = list(self.group(path))
        check_names(f"{self.path}:/{path}", stored, names, missing_ok=missing_ok)
        return stored

    def landmarks_3d(self, spec: str, names: list[str]) -> dict[str, np.ndarray]:
        path = f"{spec}/vol-landmarks"
        self._names(path, names)
        return {n: _lps_to_ras(self.array(f"{path}/{n}", (3,))) for n in names}

    def projection_ids(self, spec: str) -> list[str]:
        return sorted(self.group(f"{spec}/projections"))

    def projections(
        self,
        spec: str,
        names: list[str],
        prep: Preprocessing,
        params: ProjParams,
        landmarks: dict[str, np.ndarray],
    ) -> Projections:
        """Every projection of a specimen, preprocessed, with its stored 2D landmarks and P
        (RAS+); the specimen's 3D `landmarks` (RAS+) fix P's sign: they lie in front of the
        source. A P of the other handedness than the synthetic C-arm's is an error."""
        ids = self.projection_ids(spec)
        if not ids:
            raise self._error(f"{spec}/projections", "no projections")
        offset = np.eye(4)
        offset[:3, 3] = prep.pose_offset_mm
        centre = np.r_[np.mean(list(landmarks.values()), axis=0), 1.0]
        images, lands, ps = [], [], []
        for pid in ids:
            g = f"{spec}/projections/{pid}"
            raw = self.array(f"{g}/image/pixels")
            if raw.shape != (params.rows, params.cols):
                raise self._error(
                    f"{g}/image/pixels",
                    f"shape {raw.shape}, expected ({params.rows}, {params.cols}) (proj-params)",
                )
            pose = self.array(f"{g}/gt-poses/cam-to-pelvis-vol", (4, 4))
            rotate = bool(self.array(f"{g}/rot-180-for-up", (1,))[0])
            stored = self._names(f"{g}/gt-landmarks", names, missing_ok=True)
            uv = np.stack(
                [
                    self.array(f"{g}/gt-landmarks/{n}", (2,)) if n in stored else np.full(2, np.nan)
                    for n in names
                ]
            ).astype(float)
            uv[~np.isfinite(uv).all(axis=1)] = np.nan
            cam = params.extrinsic @ np.linalg.inv(offset @ pose)
            p = params.intrinsic @ cam[:3] @ LPS_TO_RAS
            p *= np.sign(p[2] @ centre)  # positive depth in front of the source
            a = image_affine(params.rows, params.cols, prep, rotate)
            images.append(preprocess(raw, prep, rotate))
            lands.append(uv @ a[:2, :2].T + a[:2, 2])
            ps.append(a @ p)
            check_handedness(f"{self.path}:/{g}", ps[-1], spec, pid)
        return Projections(np.stack(images), np.stack(lands), np.stack(ps), ids)


def check_names(where: str, stored: list[str], names: list[str], missing_ok: bool = False) -> None:
    """Refuse stored landmark names that are not configured, and (unless `missing_ok`)
    configured ones not stored."""
    unknown = sorted(set(stored) - set(names))
    if unknown:
        raise InputError(where, f"landmarks {unknown} are not in landmarks.names {names}")
    missing = [n for n in names if n not in stored]
    if missing and not missing_ok:
        raise InputError(where, f"landmarks {missing} missing")


def handedness(p: np.ndarray) -> int:
    """+1 or -1: the sign of det R in P = K [R | t] with K's diagonal positive, for a P scaled
    so that points in front of the source have positive depth. A mirror image (one image axis
    flipped) has the other sign."""
    _, r, _ = decompose_projection(p)
    return int(np.sign(np.linalg.det(r)))


def check_handedness(where: str, p: np.ndarray, spec: str, pid: str) -> None:
    """Refuse an imported P whose handedness differs from the synthetic C-arm's (our DRRs and
    views, `geometry.projection_matrix`): its images would be mirror images of the DRRs of the
    same pose, with left and right swapped, even where its reprojection error is small."""
    ours = handedness(projection_matrix(CArm(downsample=1), np.zeros(6), np.zeros(3)))
    theirs = handedness(p)
    if theirs != ours:
        raise InputError(
            where,
            f"mirrored convention: specimen {spec}, projection {pid}: the imported projection "
            f"matrix has det R = {theirs:+d} (P = K [R | t], K's diagonal positive, positive "
            f"depth in front of the source), the synthetic C-arm's has {ours:+d}: its images "
            "would be mirror images of the DRRs of the same view (left and right swapped)",
        )


def read_preprocessed(
    path: str | os.PathLike, specimen: str, names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, H, W), landmarks (N, L, 2) in `names` order) of one specimen of a
    preprocessed file (ipcai_2020_ds_{2,4,8,16}x.h5): `land-names/land-XX`, and per specimen
    number ("01" = 17-1882, ... in SPECIMENS order) `projs` (N, H, W) and `lands` (N, 2, L)."""
    where = os.fspath(path)
    group = f"{SPECIMENS.index(specimen) + 1:02d}"
    with Reader(path) as r:
        n_lands = int(r.array("land-names/num-lands", (1,))[0])
        stored = [_text(r.array(f"land-names/land-{i:02d}")) for i in range(n_lands)]
        check_names(f"{where}:/land-names", stored, names)
        images = r.array(f"{group}/projs").astype(np.float32)
        lands = r.array(f"{group}/lands")
    if images.ndim != 3 or lands.shape != (len(images), 2, n_lands):
        raise InputError(
            f"{where}:/{group}",
            f"projs {images.shape} and lands {lands.shape} do not match (N, H, W), (N, 2, L)",
        )
    order = [stored.index(n) for n in names]
    return images, lands.transpose(0, 2, 1)[:, order]


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return _text(value.reshape(-1)[0])
    return str(value)


def _lps_to_ras(point: np.ndarray) -> np.ndarray:
    return point * np.array([-1.0, -1.0, 1.0])


def image_affine(rows: int, cols: int, prep: Preprocessing, rotate: bool) -> np.ndarray:
    """3x3 map of raw pixel (col, row) to preprocessed pixel: crop, optional 180-degree
    rotation, downsampling (pixel centres at integers)."""
    b = prep.border
    crop = np.array([[1.0, 0, -b], [0, 1, -b], [0, 0, 1]])
    w, h = cols - 2 * b, rows - 2 * b
    rot = np.array([[-1.0, 0, w - 1], [0, -1, h - 1], [0, 0, 1]]) if rotate else np.eye(3)
    return pixel_rescale(prep.downsample) @ rot @ crop


def preprocess(raw: np.ndarray, prep: Preprocessing, rotate: bool) -> np.ndarray:
    """Crop, log transform (-ln(I / I_max), bone bright), rotate, downsample (block mean)."""
    b, d = prep.border, prep.downsample
    img = raw[b : raw.shape[0] - b, b : raw.shape[1] - b].astype(np.float64)
    img = -np.log(np.clip(img, 1e-6 * img.max(), None) / img.max())
    if rotate:
        img = img[::-1, ::-1]
    h, w = (s // d * d for s in img.shape)
    img = img[:h, :w].reshape(h // d, d, w // d, d).mean(axis=(1, 3))
    return img.astype(np.float32)
