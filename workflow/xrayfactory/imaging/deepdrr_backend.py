"""DeepDRR backend (NVIDIA GPU, `gpu` extra). Imported only when the deepdrr backend is chosen.

What is bridged between DeepDRR 1.2.2 and our conventions:

* Handedness: DeepDRR expects a proper camera (det R = +1); our projection matrices read images
  as seen from the detector (det R = -1). Each view is rendered with the mirrored camera and
  flipped back, so the result is pixel-for-pixel in our convention.
* Pixel frame: our pixel centres are at integers; DeepDRR's kernel casts the ray of output pixel
  (u, v) through (u + 0.5, v + 0.5) of its intrinsic's pixel frame (project_kernel.cu), so its
  intrinsic is ours translated by half a pixel (`deepdrr_camera`).
* Intensity: DeepDRR returns sum_bin E_bin pdf_bin exp(-...) (keV per photon); dividing by its
  unattenuated value (`unattenuated_intensity`) gives I/I0, and the image is -ln(I/I0) as from
  the torch backend (air 0).
* Density and materials: `drr.hu_to_density` (DeepDRR's own HU fit) and `drr`'s HU thresholds.

DeepDRR's spectra are presets: the nearest of 60 / 90 / 120 kVp is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from xrayfactory.cohort.volumes import Volume
from xrayfactory.imaging.drr import AIR_MAX_HU, SOFT_MAX_HU, hu_to_density
from xrayfactory.imaging.geometry import decompose_projection, source_position

if TYPE_CHECKING:
    from xrayfactory.imaging.drr import DeepDRRRenderer

SPECTRA = {60.0: "60KV_AL35", 90.0: "90KV_AL40", 120.0: "120KV_AL43"}
# our pixel frame (centres at integers) -> DeepDRR's (pixel (u, v) sampled at u + 0.5, v + 0.5)
HALF_PIXEL = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])


def proper_camera(p: np.ndarray, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(K, R, t, flip) with det R = +1 such that the image of K [R | t], flipped left-right when
    `flip`, equals the image of P (both with pixel centres at integers)."""
    k, r, t = decompose_projection(p)
    flip = bool(np.linalg.det(r) < 0)
    if flip:
        mirror = np.diag([-1.0, 1.0, 1.0])
        r, t = mirror @ r, mirror @ t
        k = k.copy()
        k[0, 2] = cols - 1 - k[0, 2]
    return k, r, t, flip


def deepdrr_camera(p: np.ndarray, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """`proper_camera` with K in DeepDRR's pixel frame: the ray DeepDRR casts for its output
    pixel (u, v), flipped left-right when `flip`, is the ray of our pixel centre."""
    k, r, t, flip = proper_camera(p, cols)
    return HALF_PIXEL @ k, r, t, flip


def unattenuated_intensity(spectrum: np.ndarray) -> float:
    """DeepDRR's pixel value with nothing in the beam, sum_bin E_bin pdf_bin (keV), for a
    spectrum array of (energy in eV, photon count) rows, as its Projector reads it."""
    energies = spectrum[:, 0] / 1000.0
    pdf = spectrum[:, 1] / np.sum(spectrum[:, 1])
    return float(np.sum(energies * pdf))


def _camera(p: np.ndarray, rows: int, cols: int) -> tuple[Any, bool]:
    """(deepdrr CameraProjection, whether the rendered image must be flipped left-right)."""
    from deepdrr import geo

    k, r, t, flip = deepdrr_camera(p, cols)
    extrinsic = np.eye(4)
    extrinsic[:3, :3], extrinsic[:3, 3] = r, t
    intrinsic = geo.CameraIntrinsicTransform(k, sensor_height=rows, sensor_width=cols)
    return geo.CameraProjection(intrinsic, geo.FrameTransform(extrinsic)), flip


def render_deepdrr(
    opts: DeepDRRRenderer, ct: Volume, projections: np.ndarray, rows: int, cols: int
) -> np.ndarray:
    """(V, rows, cols) float32 images of -ln(I / I0), as `drr.Renderer.render`."""
    import deepdrr
    from deepdrr import geo
    from deepdrr.projector import spectral_data

    hu = ct.data.astype(np.float32)
    materials = {
        "air": hu < AIR_MAX_HU,
        "soft tissue": (hu >= AIR_MAX_HU) & (hu < SOFT_MAX_HU),
        "bone": hu >= SOFT_MAX_HU,
    }
    density = hu_to_density(torch.from_numpy(hu)).numpy()
    volume = deepdrr.Volume(
        density,
        materials,
        anatomical_from_IJK=geo.FrameTransform(ct.affine),
        anatomical_coordinate_system="RAS",
    )
    spectrum = spectral_data.spectrums[SPECTRA[min(SPECTRA, key=lambda kv: abs(kv - opts.kvp))]]
    i0 = unattenuated_intensity(spectrum)
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
            intensity = np.asarray(projector.project(cam), np.float64) / i0
            img = -np.log(np.clip(intensity, 1e-12, None)).astype(np.float32)
            out[i] = img[:, ::-1] if flip else img
    return out
