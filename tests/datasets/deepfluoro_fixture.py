"""A small HDF5 file in the exact DeepFluoro full-resolution layout, with known geometry.

Each specimen is a box of soft tissue with a dense bead at each of the 14 landmarks, on an LPS
grid with a non-zero origin; projections look at it from random near-AP poses through the
file's intrinsic and extrinsic matrices, with raw intensities I0 exp(-blobs) at the landmarks.
Poses are stored the way the real file stores them (xreg's half-voxel offset undone), and some
projections are flagged rot-180-for-up.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from xrayfactory.datasets.deepfluoro import LANDMARKS, SPECIMENS, Preprocessing, Reader

SHAPE = (36, 32, 28)  # x, y, z voxels (stored as z, y, x)
SPACING = (4.0, 4.0, 5.0)
ROWS = COLS = 256
PIXEL_MM = 1.94  # 10x DeepFluoro's 0.194 mm: the same field of view at a tenth of the pixels
SDD, SID = 1020.0, 530.0
BEAD_MM = 6.0
LABELS = {1: "left-hemipelvis", 2: "right-hemipelvis", 3: "vertebrae", 4: "upper-sacrum"}
LABELS |= {5: "left-femur", 6: "right-femur"}
INTRINSIC = np.array(
    [[-SDD / PIXEL_MM, 0, (COLS - 1) / 2], [0, -SDD / PIXEL_MM, (ROWS - 1) / 2], [0, 0, 1]]
)
EXTRINSIC = np.array(  # world -> camera: a quarter turn about z plus a shift
    [[0.0, -1, 0, 12], [1, 0, 0, -7], [0, 0, 1, 30], [0, 0, 0, 1]]
)
PREPROCESSING = Preprocessing(border=16, downsample=4)  # 256 -> 56 px


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """Near-AP camera axes in LPS (rows: columns -> patient left, rows -> feet, z -> source
    (posterior)), turned by up to 20 degrees about each axis."""
    base = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    a, b, c = np.deg2rad(rng.uniform(-20, 20, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx @ base


def specimen_geometry(index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(LPS origin, {landmark: LPS mm}) of fixture specimen `index`."""
    rng = np.random.default_rng(100 + index)
    origin = np.array([-70.0, -60.0, -950.0]) + rng.uniform(-10, 10, 3)
    extent = (np.array(SHAPE) - 1) * SPACING
    points = origin + rng.uniform(0.2, 0.8, (len(LANDMARKS), 3)) * extent
    return origin, dict(zip(LANDMARKS, points, strict=True))


def _write_image(g: h5py.Group, pixels: np.ndarray, spacing, origin, direction) -> None:
    g["pixels"] = pixels
    g["spacing"] = np.asarray(spacing, float).reshape(-1, 1)
    g["origin"] = np.asarray(origin, float).reshape(-1, 1)
    g["dir-mat"] = np.asarray(direction, float)


def write_deepfluoro(path: Path, n_specimens: int = 3, n_projections: int = 3) -> Path:
    """Write the fixture file; returns its path. Specimen k's projection j is rotated for up
    when j is odd."""
    with h5py.File(path, "w") as f:
        pp = f.create_group("proj-params")
        pp["intrinsic"] = INTRINSIC
        pp["extrinsic"] = EXTRINSIC
        pp["num-rows"], pp["num-cols"] = ROWS, COLS
        pp["pixel-row-spacing"] = pp["pixel-col-spacing"] = PIXEL_MM
        offset = np.eye(4)
        offset[:3, 3] = PREPROCESSING.pose_offset_mm
        for k, spec in enumerate(SPECIMENS[:n_specimens]):
            origin, landmarks = specimen_geometry(k)
            ijk = np.stack(np.meshgrid(*map(np.arange, SHAPE), indexing="ij"), -1)
            world = origin + ijk * SPACING
            ct = np.zeros(SHAPE, np.float32)  # soft tissue
            seg = np.zeros(SHAPE, np.uint8)
            for i, p in enumerate(landmarks.values()):
                bead = np.linalg.norm(world - p, axis=-1) <= BEAD_MM
                ct[bead] = 1500.0
                seg[bead] = 1 + i % 6
            g = f.create_group(spec)
            _write_image(g.create_group("vol"), ct.transpose(2, 1, 0), SPACING, origin, np.eye(3))
            seg_g = g.create_group("vol-seg")
            _write_image(
                seg_g.create_group("image"), seg.transpose(2, 1, 0), SPACING, origin, np.eye(3)
            )
            for label, name in LABELS.items():
                seg_g[f"labels-def/{label}"] = name
            for name, p in landmarks.items():
                g[f"vol-landmarks/{name}"] = p.reshape(3, 1)
            rng = np.random.default_rng(200 + k)
            centre = origin + (np.array(SHAPE) - 1) * SPACING / 2
            for j in range(n_projections):
                rot = _rotation(rng)
                cam = np.eye(4)  # LPS volume -> camera: centre on the principal ray at SID
                cam[:3, :3] = rot
                cam[:3, 3] = np.r_[rng.uniform(-15, 15, 2), -SID] - rot @ centre
                pose = np.linalg.inv(cam) @ EXTRINSIC  # camera world -> volume
                h = (INTRINSIC @ cam[:3]) @ np.c_[np.stack(list(landmarks.values())), np.ones(14)].T
                uv = (h[:2] / h[2]).T
                rows, cols = np.mgrid[0:ROWS, 0:COLS]
                line = sum(np.exp(-((cols - u) ** 2 + (rows - v) ** 2) / 18.0) for u, v in uv)
                proj = g.create_group(f"projections/{j:03d}")
                image = proj.create_group("image")
                image["pixels"] = (40000.0 * np.exp(-0.8 * line) + 500.0).astype(np.float32)
                image["spacing"] = np.array([[PIXEL_MM], [PIXEL_MM]])
                for name, point in zip(landmarks, uv, strict=True):
                    proj[f"gt-landmarks/{name}"] = point.reshape(2, 1)
                proj["gt-poses/cam-to-pelvis-vol"] = np.linalg.inv(offset) @ pose
                proj["rot-180-for-up"] = np.uint8(j % 2)
    return path


def write_preprocessed(full: Path, path: Path, n_specimens: int = 3) -> Path:
    """A preprocessed file (ipcai_2020_ds_<d>x.h5 layout) made from the fixture `full` with
    PREPROCESSING; landmark names stored in reverse order, lands as (N, 2, L)."""
    names = list(LANDMARKS)[::-1]
    with Reader(full) as r, h5py.File(path, "w") as f:
        params = r.proj_params()
        f["land-names/num-lands"] = len(names)
        for i, name in enumerate(names):
            f[f"land-names/land-{i:02d}"] = name
        for k, spec in enumerate(SPECIMENS[:n_specimens]):
            points = r.landmarks_3d(spec, names)
            projs = r.projections(spec, names, PREPROCESSING, params, points)
            f[f"{k + 1:02d}/projs"] = projs.images
            f[f"{k + 1:02d}/lands"] = projs.landmarks.transpose(0, 2, 1)
            f[f"{k + 1:02d}/segs"] = np.zeros(projs.images.shape, np.uint8)
    return path


def mirror_deepfluoro(path: Path) -> Path:
    """Mirror a fixture file in place: every image flipped left-right, its 2D landmarks with
    it, and the intrinsic matrix composed with the same flip, so that the stored geometry still
    reproduces the stored landmarks but with the other handedness."""
    flip = np.array([[-1.0, 0, COLS - 1], [0, 1, 0], [0, 0, 1]])
    with h5py.File(path, "a") as f:
        f["proj-params/intrinsic"][...] = flip @ f["proj-params/intrinsic"][()]
        for spec in (k for k in f if k != "proj-params"):
            for proj in f[f"{spec}/projections"].values():
                pixels = proj["image/pixels"]
                pixels[...] = pixels[()][:, ::-1]
                for land in proj["gt-landmarks"].values():
                    land[...] = (flip[:2] @ np.r_[land[()].ravel(), 1.0]).reshape(2, 1)
    return path
