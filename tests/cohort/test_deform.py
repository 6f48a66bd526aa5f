import numpy as np
import pytest

from tests.conftest import LABELS
from xrayfactory.cohort.deform import DeformationParams, Warp, deform_subject
from xrayfactory.cohort.landmarks import derive_landmarks
from xrayfactory.core.rng import rng_for

CENTROID_LIKE = ["FH-l", "FH-r", "L5"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recomputed_landmarks_agree_with_carried_ones(demo_ct, seed):
    """Warping the segmentation and re-deriving a landmark agrees with the landmark carried
    through the deformation within 1.5 voxels."""
    ct, seg = demo_ct
    base = derive_landmarks(seg, LABELS, CENTROID_LIKE, "seg")
    _, new_seg, carried, _ = deform_subject(
        ct, seg, base, DeformationParams(), rng_for(seed, "cohort", "t")
    )
    again = derive_landmarks(new_seg, LABELS, CENTROID_LIKE, "warped seg")
    voxel = ct.spacing.max()
    for name in CENTROID_LIKE:
        assert np.linalg.norm(again[name] - carried[name]) / voxel < 1.5, name
        assert np.linalg.norm(carried[name] - base[name]) > 0.5  # it did move


def test_push_inverts_pull(demo_ct):
    ct, _ = demo_ct
    warp = Warp(ct, DeformationParams(), np.random.default_rng(5))
    pts = ct.voxel_to_world(np.array([[10, 20, 30], [60, 50, 40], [100, 80, 100]]))
    assert np.allclose(warp.pull(warp.push(pts)), pts, atol=1e-3)
    assert warp.min_jacobian() > 0.2


def test_grid_displacement_is_the_spline_at_every_voxel(demo_ct):
    ct, _ = demo_ct
    warp = Warp(ct, DeformationParams(displacement_sd_mm=5), np.random.default_rng(3))
    grid = warp.grid_displacement()
    assert grid.shape == (*ct.shape, 3)
    idx = np.indices(ct.shape).reshape(3, -1).T
    pointwise = warp.displacement(ct.voxel_to_world(idx)).reshape(grid.shape)
    assert np.abs(pointwise).max() > 1  # a real displacement, not zeros on both sides
    assert np.allclose(grid, pointwise, atol=1e-9)


def test_zero_deformation_is_identity(demo_ct):
    ct, seg = demo_ct
    params = DeformationParams(
        displacement_sd_mm=0,
        scale_sd=0,
        rotation_sd_deg=0,
        bone_density_sd=0,
        soft_tissue_offset_sd_hu=0,
        noise_sd_hu=0,
    )
    new_ct, new_seg, moved, _ = deform_subject(
        ct, seg, {"p": np.array([0.0, 150, 200])}, params, np.random.default_rng(0)
    )
    assert np.array_equal(new_seg.data, seg.data)
    assert np.allclose(new_ct.data, ct.data, atol=1e-3)
    assert np.allclose(moved["p"], [0, 150, 200], atol=1e-6)


def test_same_seed_same_subject(demo_ct):
    ct, seg = demo_ct
    a = deform_subject(ct, seg, {}, DeformationParams(), rng_for(0, "cohort", "demo01"))
    b = deform_subject(ct, seg, {}, DeformationParams(), rng_for(0, "cohort", "demo01"))
    c = deform_subject(ct, seg, {}, DeformationParams(), rng_for(0, "cohort", "demo02"))
    assert np.array_equal(a[0].data, b[0].data)
    assert not np.array_equal(a[0].data, c[0].data)
