"""DeepDRR backend (NVIDIA GPU, `gpu` extra). Imported only when the deepdrr backend is chosen.

DeepDRR expects a proper camera (det R = +1); our projection matrices read images as seen from
the detector (det R = -1). Each view is rendered with the mirrored camera and flipped back, so
the result is pixel-for-pixel in our convention. DeepDRR's spectra are presets: the nearest of
60 / 90 / 120 kVp is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from xrayfactory.drr import AIR_MAX_HU, SOFT_MAX_HU
from xrayfactory.geometry import decompose_projection, source_position
from xrayfactory.volumes import Volume

if TYPE_CHECKING:
    from xrayfactory.drr import DeepDRRRenderer

SPECTRA = {60.0: "60KV_AL35", 90.0: "90KV_AL40", 120.0: "120KV_AL43"}


def proper_camera(p: np.ndarray, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(K, R, t, flip) with det R = +1 such that the image of K [R | t], flipped left-right when
    `flip`, equals the image of P."""
    k, r, t = decompose_projection(p)
    flip = bool(np.linalg.det(r) < 0)
    if flip:
        mirror = np.diag([-1.0, 1.0, 1.0])
        r, t = mirror @ r, mirror @ t
        k = k.copy()
        k[0, 2] = cols - 1 - k[0, 2]
    return k, r, t, flip


def _camera(p: np.ndarray, rows: int, cols: int):
    """(deepdrr CameraProjection, whether the rendered image must be flipped left-right)."""
    from deepdrr import geo

    k, r, t, flip = proper_camera(p, cols)
    extrinsic = np.eye(4)
    extrinsic[:3, :3], extrinsic[:3, 3] = r, t
    intrinsic = geo.CameraIntrinsicTransform(k, sensor_height=rows, sensor_width=cols)
    return geo.CameraProjection(intrinsic, geo.FrameTransform(extrinsic)), flip


def render_deepdrr(
    opts: DeepDRRRenderer, ct: Volume, projections: np.ndarray, rows: int, cols: int
) -> np.ndarray:
    import deepdrr
    from deepdrr import geo

    hu = ct.data.astype(np.float32)
    materials = {
        "air": hu < AIR_MAX_HU,
        "soft tissue": (hu >= AIR_MAX_HU) & (hu < SOFT_MAX_HU),
        "bone": hu >= SOFT_MAX_HU,
    }
    density = np.clip(1.0 + hu / 1000.0, 0.0, None).astype(np.float32)
    volume = deepdrr.Volume(
        density,
        materials,
        anatomical_from_IJK=geo.FrameTransform(ct.affine),
        anatomical_coordinate_system="RAS",
    )
    spectrum = SPECTRA[min(SPECTRA, key=lambda kv: abs(kv - opts.kvp))]
    cams = [_camera(p, rows, cols) for p in np.asarray(projections).reshape(-1, 3, 4)]
    intrinsic = cams[0][0].intrinsic
    # DeepDRR marches rays up to 4x `source_to_detector_distance`: bound it by the volume.
    corners = ct.voxel_to_world(
        np.array(np.meshgrid(*[[0, s - 1] for s in ct.shape])).reshape(3, -1).T
    )
    reach = max(
        float(np.linalg.norm(corners - source_position(p), axis=1).max())
        for p in np.asarray(projections).reshape(-1, 3, 4)
    )
    out = np.empty((len(cams), rows, cols), np.float32)
    with deepdrr.Projector(
        volume,
        camera_intrinsics=intrinsic,
        step=opts.step_mm,
        spectrum=spectrum,
        neglog=False,
        add_noise=False,
        source_to_detector_distance=reach,
    ) as projector:
        for i, (cam, flip) in enumerate(cams):
            intensity = np.asarray(projector.project(cam), np.float32)
            img = -np.log(np.clip(intensity, 1e-12, None))
            out[i] = img[:, ::-1] if flip else img
    return out
