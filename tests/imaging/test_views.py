import numpy as np

from tests.conftest import sphere_volume
from xrayfactory.imaging.drr import TorchRenderer
from xrayfactory.imaging.geometry import CArm, ViewSampler, project
from xrayfactory.imaging.views import subject_imageset

CARM = CArm(pixel_spacing=0.3, downsample=32)  # 48 x 48


def _imageset(seed: int):
    vol = sphere_volume(np.zeros(3), 40.0, value=500.0)
    vol.data[vol.data == 0] = -1000.0
    landmarks = {
        "A": np.array([10.0, 0.0, 0.0]),
        "B": np.array([0.0, 0.0, 30.0]),
        "up": np.array([0.0, 0.0, 500.0]),
        "down": np.array([0.0, 0.0, -500.0]),
    }
    renderer = TorchRenderer(device="cpu")
    return subject_imageset(
        "s1",
        landmarks,
        CARM,
        ViewSampler(),
        4,
        np.random.default_rng(seed),
        lambda ps: renderer.render(vol, ps, CARM.rows, CARM.cols),
        {"arm": "drr"},
    ), landmarks


def test_labels_come_from_the_same_matrices_as_the_images():
    s, landmarks = _imageset(0)
    assert s.images.shape == (4, CARM.rows, CARM.cols)
    for i in range(len(s)):
        uv, _ = project(s.projection[i], np.stack(list(landmarks.values())))
        assert np.allclose(s.landmarks[i], uv)
    assert s.visible[:, :2].all() and not s.visible[:, 2:].any()  # up/down are off the detector
    assert s.attrs["landmark_names"] == ["A", "B", "up", "down"]
    assert np.isclose(s.attrs["pixel_spacing_mm"], CARM.spacing)


def test_same_seed_same_images_and_views():
    a, _ = _imageset(7)
    b, _ = _imageset(7)
    c, _ = _imageset(8)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.view, b.view)
    assert not np.array_equal(a.view, c.view)
