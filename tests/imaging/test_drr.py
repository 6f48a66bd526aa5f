import importlib.util

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from tests.conftest import sphere_volume
from xrayfactory.cohort.volumes import Volume
from xrayfactory.core.errors import InputError
from xrayfactory.imaging.drr import DeepDRRRenderer, TorchRenderer, make_renderer
from xrayfactory.imaging.geometry import CArm, project, projection_matrix, source_position
from xrayfactory.imaging.raycast import line_integrals

CARM = CArm(pixel_spacing=0.3, downsample=12)  # 128 x 128, 3.6 mm pixels
BEAD = np.array([12.0, -8.0, 20.0])  # a "landmark" in world mm
BEAD_VIEWS = [
    (0, 0, 0, 0, 0, 0),
    (30, 10, 0, 5, 0, -5),
    (-40, -15, 5, 0, 10, 0),
    (90, 0, 0, 0, 0, 0),
    (15, 35, -8, -10, 5, 10),
]
HAS_DEEPDRR = torch.cuda.is_available() and importlib.util.find_spec("deepdrr") is not None


def _hu_phantom(bead: np.ndarray | None) -> Volume:
    vol = sphere_volume(np.zeros(3), 50.0, value=40.0)  # soft-tissue ball
    vol.data[vol.data == 0] = -1000.0
    if bead is not None:
        b = sphere_volume(bead, 3.0, value=1.0)
        vol.data[b.data > 0] = 2000.0
    return vol


def _bead_offset(renderer, view) -> float:
    """Distance (px) between the centroid of a rendered bead (with minus without) and the
    projection of its centre."""
    p = projection_matrix(CARM, np.array(view, float), np.zeros(3))[None]
    with_bead = renderer.render(_hu_phantom(BEAD), p, CARM.rows, CARM.cols)[0]
    without = renderer.render(_hu_phantom(None), p, CARM.rows, CARM.cols)[0]
    diff = with_bead - without
    mask = diff > 0.05 * diff.max()
    _, n = ndi.label(mask)
    assert n == 1
    row, col = ndi.center_of_mass(diff * mask)
    uv, _ = project(p[0], BEAD[None])
    return float(np.hypot(col - uv[0, 0], row - uv[0, 1]))


@pytest.mark.parametrize("view", BEAD_VIEWS)
def test_bead_centroid_matches_projected_landmark(view):
    """Render a dense sphere at a landmark: its 2D centroid is within 0.5 px of the projection."""
    assert _bead_offset(TorchRenderer(device="cpu"), view) < 0.5


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_DEEPDRR, reason="needs CUDA and deepdrr")
@pytest.mark.parametrize("view", BEAD_VIEWS)
def test_deepdrr_bead_centroid_matches_projected_landmark(view):
    """DeepDRR images line up with our labels (no half-pixel shift) and are -ln(I/I0): air 0."""
    renderer = DeepDRRRenderer()
    p = projection_matrix(CARM, np.array(view, float), np.zeros(3))[None]
    air = renderer.render(_hu_phantom(None), p, CARM.rows, CARM.cols)[0, 0, 0]  # misses the CT
    assert abs(air) < 1e-4
    assert _bead_offset(renderer, view) < 0.1


def test_line_integral_of_uniform_box_equals_chord():
    """A uniform box (1 per mm) seen along its axis integrates to its thickness in mm."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -31.0
    data = torch.ones(1, 32, 32, 32)
    p = projection_matrix(CARM, np.zeros(6), np.zeros(3))[None]
    li = line_integrals(data, affine, p, CARM.rows, CARM.cols)[0, 0]
    centre = li[CARM.rows // 2, CARM.cols // 2].item()
    assert centre == pytest.approx(64.0, rel=0.02)  # 32 voxels x 2 mm, tents included


def test_chunking_and_batching_do_not_change_results():
    vol = _hu_phantom(BEAD)
    ps = np.stack(
        [
            projection_matrix(CARM, np.array(v, float), np.zeros(3))
            for v in [(0,) * 6, (20, 5, 0, 0, 0, 0)]
        ]
    )
    a = TorchRenderer(device="cpu").render(vol, ps, CARM.rows, CARM.cols)
    b = TorchRenderer(device="cpu", views_per_batch=1, max_samples=5000).render(
        vol, ps, CARM.rows, CARM.cols
    )
    assert np.allclose(a, b, atol=1e-5)


def test_polychromatic_beam_hardening():
    """Log attenuation grows with thickness, but less than linearly (beam hardening)."""
    affine = np.eye(4)
    affine[:3, 3] = -60
    thick = []
    for t in (20, 40, 80):
        data = np.full((120, 120, 120), -1000.0, np.float32)
        data[:, 60 - t // 2 : 60 + t // 2, :] = 1000.0  # a bone slab, t mm along y
        img = TorchRenderer(device="cpu").render(
            Volume(data, affine),
            projection_matrix(CARM, np.zeros(6), np.zeros(3))[None],
            CARM.rows,
            CARM.cols,
        )
        thick.append(img[0, CARM.rows // 2, CARM.cols // 2])
    assert thick[0] < thick[1] < thick[2]
    assert thick[2] / thick[1] < 2.0 and thick[1] / thick[0] < 2.0


def test_renderer_selection_errors():
    with pytest.raises(InputError, match="drr.backend: unknown DRR backend 'raytracer'"):
        make_renderer("raytracer")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="drr.backend: deepdrr needs an NVIDIA GPU"):
            make_renderer("deepdrr", kvp=90.0)
        assert isinstance(make_renderer("auto"), TorchRenderer)


def test_deepdrr_camera_conversion_reproduces_our_images():
    """DeepDRR needs det R = +1: rendering the converted camera and flipping gives our image."""
    from xrayfactory.imaging.deepdrr_backend import proper_camera

    vol = _hu_phantom(BEAD)
    p = projection_matrix(CARM, np.array([25.0, -10, 4, 5, 0, 3]), np.zeros(3))
    k, r, t, flip = proper_camera(p, CARM.cols)
    assert flip and np.isclose(np.linalg.det(r), 1.0)
    renderer = TorchRenderer(device="cpu")
    ours = renderer.render(vol, p[None], CARM.rows, CARM.cols)[0]
    theirs = renderer.render(vol, (k @ np.c_[r, t])[None], CARM.rows, CARM.cols)[0]
    assert np.allclose(theirs[:, ::-1], ours, atol=1e-4)


@pytest.mark.parametrize(
    "view",
    [(0, 0, 0, 0, 0, 0), (25, -10, 4, 5, 0, 3), (-40, 15, -3, 0, 10, 0), (90, 30, 8, -20, 5, 10)],
)
def test_deepdrr_camera_rays_pass_through_our_pixel_centres(view):
    """Emulate DeepDRR 1.2.2's ray rule (output pixel (u, v) -> inv(K R) [u + 0.5, v + 0.5, 1],
    then our left-right flip): each pixel's ray is the ray through our pixel centre."""
    from xrayfactory.imaging.deepdrr_backend import deepdrr_camera

    carm = CArm(pixel_spacing=0.3, downsample=12, detector_cols=1200)  # 128 rows x 100 cols
    p = projection_matrix(carm, np.array(view, float), np.zeros(3))
    k, r, t, flip = deepdrr_camera(p, carm.cols)
    assert flip and np.isclose(np.linalg.det(r), 1.0)
    assert np.allclose(-r.T @ t, source_position(p))
    v, u = np.mgrid[0 : carm.rows, 0 : carm.cols]
    theirs = np.stack([u + 0.5, v + 0.5, np.ones(u.shape)], -1) @ np.linalg.inv(k @ r).T
    theirs = theirs[:, ::-1]
    ours = np.stack([u, v, np.ones(u.shape)], -1) @ np.linalg.inv(p[:, :3]).T
    theirs /= np.linalg.norm(theirs, axis=-1, keepdims=True)
    ours /= np.linalg.norm(ours, axis=-1, keepdims=True)
    assert np.abs(np.cross(theirs, ours)).max() < 1e-9
    assert (np.sum(theirs * ours, axis=-1) > 0).all()


def test_unattenuated_intensity_of_a_deepdrr_spectrum():
    """DeepDRR's air value: bins of (eV, photons) -> sum of keV x normalised photon count."""
    from xrayfactory.imaging.deepdrr_backend import unattenuated_intensity

    spectrum = np.array([[20e3, 1.0], [40e3, 3.0], [60e3, 0.0], [80e3, 4.0]])
    assert unattenuated_intensity(spectrum) == pytest.approx((20 * 1 + 40 * 3 + 80 * 4) / 8.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_matches_cpu():
    vol = _hu_phantom(BEAD)
    p = projection_matrix(CARM, np.array([20.0, 5, 0, 0, 0, 0]), np.zeros(3))[None]
    cpu = TorchRenderer(device="cpu").render(vol, p, CARM.rows, CARM.cols)
    gpu = TorchRenderer(device="cuda").render(vol, p, CARM.rows, CARM.cols)
    assert np.allclose(cpu, gpu, atol=1e-3)


def test_prepared_ct_renders_as_before(demo_ct):
    """The demo CT, prepared once and rendered one view per call, gives the DRRs of the
    renderer as it was before volumes were prepared (material channels re-made per call)."""
    from tests.imaging.reference_raycast import line_integrals as reference
    from xrayfactory.imaging.drr import MATERIALS, material_channels, polychromatic
    from xrayfactory.imaging.physics import mass_attenuation, tube_spectrum

    ct, _ = demo_ct
    carm = CArm(pixel_spacing=0.28, downsample=24)  # 64 x 64
    centre = ct.voxel_to_world((np.asarray(ct.shape)[None] - 1) / 2)[0]
    views = [(0, 0, 0, 0, 0, 0), (28, -12, 4, 15, -10, 8), (-90, 5, 0, 0, 0, 0)]
    ps = np.stack([projection_matrix(carm, np.array(v, float), centre) for v in views])
    renderer = TorchRenderer(device="cpu")
    vol = renderer.prepare(ct)
    got = np.concatenate([renderer.render(vol, p[None], carm.rows, carm.cols) for p in ps])
    spec = tube_spectrum(90.0, al_mm=2.5)
    mu = torch.as_tensor(mass_attenuation(MATERIALS, spec.energies_kev), dtype=torch.float32)
    li = reference(material_channels(torch.as_tensor(ct.data)), ct.affine, ps, 64, 64) / 10.0
    want = -torch.log(polychromatic(li, mu, torch.as_tensor(spec.weights).float())).numpy()
    assert np.allclose(got, want, rtol=1e-4, atol=1e-4)
