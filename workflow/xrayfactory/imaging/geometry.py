"""C-arm geometry: poses, projection matrices, landmark projection and visibility.

Conventions (world = RAS+ mm, patient supine):

* A view is (lao, cran, roll) in degrees plus an isocentre offset (tx, ty, tz) in mm.
  lao > 0 turns the detector towards the patient's left (LAO), lao < 0 is RAO; cran > 0 tilts
  it towards the head (cranial), cran < 0 is caudal; roll turns the image in its plane.
* At lao = cran = roll = 0 (AP) the source is posterior, the detector anterior; image columns
  run towards the patient's left and rows towards the feet, as an AP radiograph is read.
* Pixel coordinates are (col, row) with pixel centres at integers; (0, 0) is the centre of the
  top-left pixel. P = K [R | -R s] maps homogeneous world points to homogeneous pixels, with
  positive third coordinate (depth along the principal ray) in front of the source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xrayfactory.core.errors import InputError

VIEW_FIELDS = ("lao_deg", "cran_deg", "roll_deg", "tx_mm", "ty_mm", "tz_mm")

# AP base frame: rows of R are the image column axis, row axis and principal ray (world).
_AP_FRAME = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


@dataclass(frozen=True, kw_only=True)
class CArm:
    """Source-to-detector / source-to-isocentre distances (mm) and a flat-panel detector."""

    sdd: float = 1020.0
    sid: float = 530.0
    detector_rows: int = 1536
    detector_cols: int = 1536
    pixel_spacing: float = 0.194
    downsample: int

    def __post_init__(self) -> None:
        if not 0 < self.sid < self.sdd:
            raise InputError(
                "config keys carm.sid and carm.sdd",
                f"need 0 < sid < sdd, got sid={self.sid}, sdd={self.sdd}",
            )

    @property
    def rows(self) -> int:
        return self.detector_rows // self.downsample

    @property
    def cols(self) -> int:
        return self.detector_cols // self.downsample

    @property
    def spacing(self) -> float:
        """Pixel spacing at the detector after downsampling (mm)."""
        return self.pixel_spacing * self.downsample

    @property
    def magnification(self) -> float:
        return self.sdd / self.sid

    def intrinsic(self) -> np.ndarray:
        f = self.sdd / self.spacing
        return np.array([[f, 0.0, (self.cols - 1) / 2], [0.0, f, (self.rows - 1) / 2], [0, 0, 1.0]])


def rotation(lao_deg: float, cran_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    """3x3 whose rows are the image column axis, row axis and source-to-detector axis (world)."""
    a, b, g = np.deg2rad([lao_deg, cran_deg, roll_deg])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    in_plane = np.array([[np.cos(g), -np.sin(g), 0], [np.sin(g), np.cos(g), 0], [0, 0, 1]])
    return in_plane @ _AP_FRAME @ (rz @ rx).T


def angles(rot: np.ndarray) -> tuple[float, float, float]:
    """Inverse of `rotation`: (lao, cran, roll) in degrees (|cran| < 90)."""
    w = rot[2]
    cran = np.arcsin(np.clip(w[2], -1, 1))
    lao = np.arctan2(-w[0], w[1])
    base = rotation(np.rad2deg(lao), np.rad2deg(cran), 0.0)
    in_plane = rot @ base.T
    roll = np.arctan2(in_plane[1, 0], in_plane[0, 0])
    return float(np.rad2deg(lao)), float(np.rad2deg(cran)), float(np.rad2deg(roll))


def projection_matrix(carm: CArm, view: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """3x4 P for a view (VIEW_FIELDS order) whose isocentre is `anchor` + (tx, ty, tz)."""
    view = np.asarray(view, float)
    rot = rotation(*view[:3])
    iso = np.asarray(anchor, float) + view[3:6]
    source = iso - carm.sid * rot[2]
    return carm.intrinsic() @ np.c_[rot, -rot @ source]


def source_position(p: np.ndarray) -> np.ndarray:
    """The X-ray source (camera centre): the null space of P."""
    return -np.linalg.solve(p[:, :3], p[:, 3])


def decompose_projection(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P -> (K, R, t) with P = K [R | t] (up to scale), K upper triangular with positive
    diagonal and K[2, 2] = 1. R may be a reflection (det -1), as for radiographs read as
    seen from the detector side."""
    from scipy.linalg import rq

    k, r = rq(p[:, :3])
    signs = np.diag(np.sign(np.diag(k)))
    k, r = k @ signs, signs @ r
    t = np.linalg.solve(k, p[:, 3])
    return k / k[2, 2], r, t


def view_from_projection(p: np.ndarray, sid: float, anchor: np.ndarray) -> np.ndarray:
    """Inverse of `projection_matrix` for the pose: the view (VIEW_FIELDS order) whose
    isocentre, `sid` mm from the source along the principal ray, is `anchor` + (tx, ty, tz).
    `p` is scaled so that points in front of the source have positive depth."""
    _, rot, _ = decompose_projection(p)
    iso = source_position(p) + sid * rot[2]
    return np.r_[angles(rot), iso - np.asarray(anchor, float)]


def project(p: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points (N, 3) -> pixel (col, row) (N, 2) and depth along the principal ray (N,)."""
    h = np.c_[np.asarray(points, float), np.ones(len(points))] @ p.T
    return h[:, :2] / h[:, 2:3], h[:, 2] / np.linalg.norm(p[2, :3])


def in_image(uv, rows: int, cols: int):
    """Whether points (..., 2) (col, row) lie on a rows x cols image, pixel centres at integers
    (a half-pixel rim included); NaN does not. Numpy arrays or torch tensors."""
    col, row = uv[..., 0], uv[..., 1]
    return (col >= -0.5) & (col <= cols - 0.5) & (row >= -0.5) & (row <= rows - 0.5)


def located(landmarks, visible, rows: int, cols: int):
    """Landmarks (..., 2) whose position is known: finite, and visible or invisible only
    because they lie outside the image (not hidden inside it, e.g. unannotated). Numpy arrays
    or torch tensors."""
    finite = (abs(landmarks) < math.inf).all(-1)
    return finite & (visible | ~in_image(landmarks, rows, cols))


def visible(carm: CArm, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Whether projected points fall on the detector (and lie in front of the source)."""
    return (depth > 0) & in_image(uv, carm.rows, carm.cols)


@dataclass(frozen=True, kw_only=True)
class ViewSampler:
    """Uniform sampling of clinically plausible poses within configured ranges."""

    lao_deg: tuple[float, float] = (-30.0, 30.0)
    cran_deg: tuple[float, float] = (-15.0, 15.0)
    roll_deg: tuple[float, float] = (-5.0, 5.0)
    tx_mm: tuple[float, float] = (-20.0, 20.0)
    ty_mm: tuple[float, float] = (-20.0, 20.0)
    tz_mm: tuple[float, float] = (-20.0, 20.0)

    @classmethod
    def from_config(cls, section: dict) -> ViewSampler:
        """From the config's `views` section (ranges as [low, high] lists)."""
        return cls(**{k: tuple(v) for k, v in section.items()})

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, 6) views in VIEW_FIELDS order."""
        lo = np.array([getattr(self, f)[0] for f in VIEW_FIELDS])
        hi = np.array([getattr(self, f)[1] for f in VIEW_FIELDS])
        return lo + (hi - lo) * rng.random((n, len(VIEW_FIELDS)))
