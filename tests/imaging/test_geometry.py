import numpy as np
import pytest

from xrayfactory.core.errors import InputError
from xrayfactory.imaging.geometry import (
    CArm,
    ViewSampler,
    angles,
    decompose_projection,
    project,
    projection_matrix,
    rotation,
    source_position,
    view_from_projection,
    visible,
)

CARM = CArm(downsample=8)
ANCHOR = np.array([10.0, -20.0, 30.0])


@pytest.mark.parametrize("lao,cran,roll", [(0, 0, 0), (30, 10, 5), (-25, -12, -3), (89, 40, 170)])
def test_angles_round_trip(lao, cran, roll):
    assert np.allclose(angles(rotation(lao, cran, roll)), (lao, cran, roll), atol=1e-9)


def test_rotation_is_orthonormal_and_ap_reads_like_a_radiograph():
    r = rotation(0, 0, 0)
    assert np.allclose(r @ r.T, np.eye(3))
    # AP: columns towards the patient's left (-x in RAS), rows to the feet, rays to anterior
    assert np.allclose(r, [[-1, 0, 0], [0, 0, -1], [0, 1, 0]])


def test_lao_and_cranial_move_the_detector_as_named():
    w_lao = rotation(30, 0)[2]
    assert w_lao[0] < 0 and w_lao[1] > 0  # detector towards patient's left-anterior
    assert rotation(0, 20)[2][2] > 0  # cranial: detector towards the head


def test_source_and_isocentre():
    view = np.array([25.0, -10.0, 4.0, 5.0, -3.0, 8.0])
    p = projection_matrix(CARM, view, ANCHOR)
    iso = ANCHOR + view[3:]
    src = source_position(p)
    assert np.isclose(np.linalg.norm(src - iso), CARM.sid)
    uv, depth = project(p, iso[None])
    assert np.allclose(uv, [[(CARM.cols - 1) / 2, (CARM.rows - 1) / 2]])
    assert np.isclose(depth[0], CARM.sid)


def test_magnification_at_isocentre():
    p = projection_matrix(CARM, np.zeros(6), ANCHOR)
    uv, _ = project(p, np.stack([ANCHOR, ANCHOR + [0, 0, 10.0]]))
    # 10 mm superior at the isocentre -> 10 * SDD/SID mm up on the detector
    assert np.isclose(uv[0, 1] - uv[1, 1], 10 * CARM.magnification / CARM.spacing)


def test_backprojected_ray_projects_to_its_pixel():
    p = projection_matrix(CARM, np.array([15.0, 5.0, 0.0, 0, 0, 0]), ANCHOR)
    pix = np.array([37.25, 101.5, 1.0])
    direction = np.linalg.solve(p[:, :3], pix)
    pts = source_position(p) + np.outer(
        [100.0, 500.0, 900.0], direction / np.linalg.norm(direction)
    )
    uv, depth = project(p, pts)
    assert np.allclose(uv, pix[:2]) and np.all(depth > 0)


def test_visibility():
    uv = np.array([[0, 0], [-0.6, 5], [CARM.cols - 0.5, 3], [5, CARM.rows], [5, 5]], float)
    vis = visible(CARM, uv, np.array([1, 1, 1, 1, -1.0]))
    assert vis.tolist() == [True, False, True, False, False]


def test_sampler_respects_ranges_and_seed():
    s = ViewSampler(
        lao_deg=(-10, 10),
        cran_deg=(0, 5),
        roll_deg=(0, 0),
        tx_mm=(1, 2),
        ty_mm=(0, 0),
        tz_mm=(-3, -2),
    )
    a = s.sample(500, np.random.default_rng(3))
    assert a.shape == (500, 6)
    lo = np.array([-10, 0, 0, 1, 0, -3])
    hi = np.array([10, 5, 0, 2, 0, -2])
    assert np.all(a >= lo) and np.all(a <= hi)
    assert np.array_equal(a, s.sample(500, np.random.default_rng(3)))


def test_carm_rejects_impossible_geometry():
    with pytest.raises(InputError, match="carm.sid and carm.sdd: need 0 < sid < sdd"):
        CArm(sdd=500, sid=600, downsample=1)


def test_decompose_projection_round_trip():
    view = np.array([20.0, 10.0, 3.0, 5.0, 6.0, 7.0])
    p = projection_matrix(CARM, view, ANCHOR)
    k, r, t = decompose_projection(2.5 * p)  # any scale
    assert np.allclose(k, CARM.intrinsic())
    assert np.allclose(r, rotation(*view[:3]))
    assert np.allclose(k @ np.c_[r, t], p)


@pytest.mark.parametrize(
    "view", [(0, 0, 0, 0, 0, 0), (25, -12, 4, 8, -6, 11), (-40, 20, -7, 0, 3, 0)]
)
def test_view_from_projection_inverts_projection_matrix(view):
    p = projection_matrix(CARM, np.array(view, float), ANCHOR)
    np.testing.assert_allclose(view_from_projection(3.0 * p, CARM.sid, ANCHOR), view, atol=1e-9)
