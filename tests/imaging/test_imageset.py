import numpy as np
import pytest

from xrayfactory.core.errors import InputError
from xrayfactory.imaging.imageset import ImageSet, concatenate, read_imageset, write_imageset


def _set(n=3, size=8, names=("A", "B")) -> ImageSet:
    rng = np.random.default_rng(0)
    return ImageSet(
        images=rng.random((n, size, size), dtype=np.float32),
        landmarks=rng.random((n, len(names), 2)).astype(np.float32) * size,
        visible=rng.random((n, len(names))) > 0.5,
        projection=rng.random((n, 3, 4)),
        subject=np.array([f"s{i}" for i in range(n)]),
        view=rng.random((n, 6)).astype(np.float32),
        attrs={
            "arm": "drr",
            "landmark_names": list(names),
            "pixel_spacing_mm": 1.5,
            "proxy": False,
        },
    )


def test_round_trip(tmp_path):
    s = _set()
    write_imageset(tmp_path / "a.h5", s)
    r = read_imageset(tmp_path / "a.h5")
    for name in ("images", "landmarks", "visible", "projection", "view"):
        assert np.allclose(getattr(r, name), getattr(s, name))
    assert r.subject.tolist() == ["s0", "s1", "s2"]
    assert r.attrs["landmark_names"] == ["A", "B"] and r.attrs["arm"] == "drr"
    assert r.attrs["generator_version"]


def test_mismatched_shapes_are_refused(tmp_path):
    s = _set()
    s.visible = s.visible[:2]
    with pytest.raises(
        InputError, match=r"bad.h5: dataset visible has shape \(2, 2\), expected \(3, 2\)"
    ):
        write_imageset(tmp_path / "bad.h5", s)
    assert not (tmp_path / "bad.h5").exists()


def test_concatenate_checks_compatibility():
    with pytest.raises(InputError, match="disagree on image size"):
        concatenate([_set(size=8), _set(size=16)], "arm drr")
    with pytest.raises(InputError, match="disagree on landmark names"):
        concatenate([_set(), _set(names=("A", "C"))], "arm drr")
    other_arm, other_spacing = _set(), _set()
    other_arm.attrs["arm"] = "real"
    other_spacing.attrs["pixel_spacing_mm"] = 3.0
    with pytest.raises(InputError, match="shards disagree on arm: real vs drr"):
        concatenate([_set(), other_arm], "arm drr")
    with pytest.raises(InputError, match="shards disagree on pixel spacing: 3.0 vs 1.5"):
        concatenate([_set(), other_spacing], "arm drr")
    assert len(concatenate([_set(n=2), _set(n=3)], "x")) == 5


def test_not_an_imageset(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"nope")
    with pytest.raises(InputError, match="x.h5: not a readable HDF5 file"):
        read_imageset(tmp_path / "x.h5")
