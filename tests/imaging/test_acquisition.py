import numpy as np
import pytest
import torch

from tests.conftest import sphere_volume
from xrayfactory.imaging.acquisition import AcquisitionParams, ProxyRealAcquisition, kwire_path
from xrayfactory.imaging.drr import TorchRenderer
from xrayfactory.imaging.geometry import CArm, projection_matrix

CARM = CArm(pixel_spacing=0.3, downsample=24)  # 64 x 64


def _phantom():
    vol = sphere_volume(np.zeros(3), 50.0, value=40.0)
    vol.data[vol.data == 0] = -1000.0
    bone = sphere_volume(np.array([10.0, 0, 0]), 15.0)
    vol.data[bone.data > 0] = 900.0
    return vol


def test_kwire_path_integrates_to_the_wire_cross_section():
    """Across a wire, sum(chord) x pixel size at the wire = pi r^2 (its cross-section area)."""
    p = projection_matrix(CARM, np.zeros(6), np.zeros(3))
    radius = 1.0
    # wire along x through the isocentre, perpendicular to the central ray
    chord = kwire_path(
        p,
        CARM.rows,
        CARM.cols,
        np.array([-40.0, 0, 0]),
        np.array([40.0, 0, 0]),
        radius,
        supersample=16,
    )
    column = chord[:, CARM.cols // 2].numpy()
    pixel_at_iso = CARM.spacing / CARM.magnification
    assert column.sum() * pixel_at_iso == pytest.approx(np.pi * radius**2, rel=0.02)
    assert column.max() <= 2 * radius and chord[0, 0] == 0


def test_proxy_real_is_deterministic_bounded_and_differs_from_drr():
    vol = _phantom()
    ps = np.stack(
        [
            projection_matrix(CARM, np.array(v, float), np.zeros(3))
            for v in [(0,) * 6, (25, 5, 0, 0, 0, 0)]
        ]
    )
    model = ProxyRealAcquisition(AcquisitionParams(device="cpu", kwire_probability=1.0))
    anchors = np.zeros((1, 3))
    a = model.acquire(
        vol, ps, CARM.rows, CARM.cols, CARM.spacing, anchors, np.random.default_rng(1)
    )
    b = model.acquire(
        vol, ps, CARM.rows, CARM.cols, CARM.spacing, anchors, np.random.default_rng(1)
    )
    assert np.array_equal(a, b)
    assert a.shape == (2, CARM.rows, CARM.cols) and a.min() >= 0 and a.max() <= 1
    drr = TorchRenderer(device="cpu").render(vol, ps, CARM.rows, CARM.cols)
    # bone still bright in both, but the images are not a rescaled copy of each other
    corr = np.corrcoef(a[0].ravel(), drr[0].ravel())[0, 1]
    assert 0.3 < corr < 0.99


def test_fewer_photons_more_noise():
    """Two acquisitions differing only in their noise draw differ more at low dose."""
    vol = _phantom()
    p = projection_matrix(CARM, np.zeros(6), np.zeros(3))[None]

    def noise(photons: float) -> float:
        params = AcquisitionParams(
            device="cpu",
            photons_per_mm2=photons,
            collimation_probability=0,
            kwire_probability=0,
            gamma_range=(1.0, 1.0),
        )
        model = ProxyRealAcquisition(params)
        a, b = (
            model.acquire(
                vol,
                p,
                CARM.rows,
                CARM.cols,
                CARM.spacing,
                np.zeros((1, 3)),
                np.random.default_rng(seed),
            )[0]
            for seed in (2, 3)
        )
        return float(np.std((a - b)[16:48, 16:48]))

    assert noise(1.0) > 3 * noise(1e5) > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_matches_cpu():
    vol = _phantom()
    p = projection_matrix(CARM, np.array([20.0, 5, 0, 0, 0, 0]), np.zeros(3))[None]

    def run(device: str) -> np.ndarray:
        params = AcquisitionParams(device=device, photons_per_mm2=1e9, electronic_noise=0.0)
        return ProxyRealAcquisition(params).acquire(
            vol, p, CARM.rows, CARM.cols, CARM.spacing, np.zeros((1, 3)), np.random.default_rng(4)
        )

    assert np.allclose(run("cpu"), run("cuda"), atol=2e-2)


def test_prepared_proxy_real_volume_casts_as_before():
    """The proxy-real model's prepared volume leaves out the channels without material (air of
    -1000 HU weighs nothing in its density map; steel is filled by K-wires), casts the bone ball
    and the titanium screw each over its own box, and gives the 2x oversampled integrals of all
    five channels as the caster did before volumes were prepared."""
    from tests.imaging.reference_raycast import line_integrals as reference
    from xrayfactory.imaging.acquisition import material_channels

    vol = _phantom()
    screw = sphere_volume(np.array([-20.0, 10, 5]), 4.0)
    vol.data[screw.data > 0] = 3000.0
    model = ProxyRealAcquisition(AcquisitionParams(device="cpu"))
    prepared = model.prepare(vol)
    assert [g.channels for g in prepared.groups] == [[1], [2], [3]]
    assert prepared.groups[2].size.max() <= 7  # the screw's 8 mm, 2 mm voxels, margins
    ps = np.stack(
        [
            projection_matrix(CARM, np.array(v, float), np.zeros(3))
            for v in [(0,) * 6, (25, 5, 3, 4, -6, 2)]
        ]
    )
    got = prepared.integrals(ps, CARM.rows, CARM.cols)
    hu = torch.as_tensor(vol.data)
    want = reference(material_channels(hu), vol.affine, ps, CARM.rows, CARM.cols, oversample=2)
    assert want[:, 3].max() > 1.0 and not want[:, [0, 4]].any()
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.max()))


def test_kwire_cast_over_its_footprint_equals_the_whole_image(monkeypatch):
    """Random wires, some leaving the image: casting only the pixels of a wire's projected
    bounding box gives the chords of casting every pixel."""
    from xrayfactory.imaging import acquisition

    carm = CArm(pixel_spacing=0.3, downsample=12)  # 128 x 128
    rng = np.random.default_rng(3)
    wires = []
    for _ in range(12):
        view = np.r_[rng.uniform(-40, 40, 3), rng.uniform(-20, 20, 3)]
        p = projection_matrix(carm, view, np.zeros(3))
        centre, direction = rng.normal(0, 60, 3), rng.normal(size=3)
        half = rng.uniform(30, 75) * direction / np.linalg.norm(direction)
        wires.append((p, carm.rows, carm.cols, centre - half, centre + half, 0.8))
    fast = [kwire_path(*w) for w in wires]
    monkeypatch.setattr(acquisition, "_footprint", lambda p, rows, cols, *_: ((0, rows), (0, cols)))
    assert sum(float(f.sum() > 0) for f in fast) >= 8
    for f, w in zip(fast, wires, strict=True):
        assert torch.equal(f, kwire_path(*w))
