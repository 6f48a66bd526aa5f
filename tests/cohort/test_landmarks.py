import numpy as np
import pytest

from tests.conftest import LABELS, NAMES
from xrayfactory.cohort.landmarks import derive_landmarks, load_landmarks, save_landmarks
from xrayfactory.cohort.volumes import Volume
from xrayfactory.core.errors import InputError


def test_demo_landmarks_are_anatomically_placed(demo_ct):
    ct, seg = demo_ct
    lm = derive_landmarks(seg, LABELS, NAMES, "seg")
    assert list(lm) == NAMES
    for name in ("FH", "ASIS", "PSIS", "SPS"):
        left, right = lm[f"{name}-l"], lm[f"{name}-r"]
        assert left[0] < 0 < right[0], name  # RAS: patient's left is -x
    assert lm["ASIS-l"][1] > lm["FH-l"][1] > lm["PSIS-l"][1]  # anterior to posterior
    assert lm["ASIS-l"][2] > lm["FH-l"][2] and lm["L5"][2] > lm["ASIS-l"][2]
    assert 150 < np.linalg.norm(lm["FH-l"] - lm["FH-r"]) < 200  # inter-head distance (mm)
    assert abs(lm["SPS-l"][0]) < 15 and abs(lm["SPS-r"][0]) < 15  # symphysis at the midline
    assert all(ct.contains(p)[0] for p in lm.values())


def test_truncated_structure_is_reported_not_guessed(demo_ct):
    """The demo CT ends inside the pubic symphysis: IPS must not be invented."""
    _, seg = demo_ct
    with pytest.raises(
        InputError, match="IPS-l is undefined: its structure is cut by the scan border"
    ):
        derive_landmarks(seg, LABELS, ["IPS-l"], "seg.nii.gz")


def _pubic_phantom() -> Volume:
    """Two hip-bone blocks touching at the midline for z in [10, 30) mm, femora below."""
    data = np.zeros((40, 20, 50), np.int16)
    data[5:20, 5:15, 10:30] = 77  # x < 0 side... voxel i < 20 -> x < 0
    data[20:35, 5:15, 10:30] = 78
    return Volume(
        data,
        np.diag([1.0, 1.0, 1.0, 1.0])
        @ np.array([[1, 0, 0, -20], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]),
    )


def test_symphysis_points_on_a_phantom():
    seg = _pubic_phantom()
    lm = derive_landmarks(seg, LABELS, ["SPS-l", "IPS-l", "SPS-r", "IPS-r"], "phantom")
    assert lm["SPS-l"][2] == pytest.approx(28.0, abs=1.1) and lm["IPS-l"][2] == pytest.approx(
        11.0, abs=1.1
    )
    assert lm["SPS-l"][0] < 0 < lm["SPS-r"][0]


def test_missing_label_names_the_file(demo_ct):
    _, seg = demo_ct
    no_l5 = Volume(np.where(seg.data == 27, 0, seg.data), seg.affine)
    with pytest.raises(InputError, match=r"my_seg.nii.gz: missing label vertebra_L5 \(27\)"):
        derive_landmarks(no_l5, LABELS, ["L5"], "my_seg.nii.gz")


def test_unknown_landmark_name():
    with pytest.raises(InputError, match="unknown landmark 'GSN-x'"):
        derive_landmarks(_pubic_phantom(), LABELS, ["GSN-x"], "phantom")


def test_landmark_file_round_trip_and_errors(tmp_path, demo_ct):
    ct, _ = demo_ct
    path = tmp_path / "lm.csv"
    save_landmarks(path, {"A": np.array([1.0, 2.0, 3.0]), "B": np.array([-1.5, 120.0, 150.0])})
    got = load_landmarks(path, ["B", "A"])
    assert list(got) == ["B", "A"] and np.allclose(got["A"], [1, 2, 3])
    with pytest.raises(InputError, match="missing landmark\\(s\\): C"):
        load_landmarks(path, ["A", "C"])
    with pytest.raises(InputError, match="landmark A at .* lies outside the volume"):
        load_landmarks(path, ["A"], ct)
