import numpy as np
import pytest

from tests.imaging.test_imageset import _set
from xrayfactory.cohort.sheet import folds
from xrayfactory.core.errors import InputError
from xrayfactory.core.rng import rng_for
from xrayfactory.detection.training_sets import (
    available_images,
    training_sets,
    units_to_make,
    with_arms,
)
from xrayfactory.imaging.splits import arm_training_set

SUBJECTS = ["s0", "s1", "s2"]
CONFIG = {
    "cohort": {"source": "demo"},
    "real": {"images_per_subject": 10},
    "drr": {"images_per_subject": 6},
    "synth2d": {"shard_size": 10},
    "synth3d": {"n_volumes": 2},
}


def _detector(sizes, recipes=None) -> dict:
    arms = ["real", "drr", "synth2d"]
    return {"arms": arms, "train_images": 8, "sizes": sizes, "recipes": recipes or {}}


def test_sweep_points_are_arms_at_other_sizes():
    split = folds(SUBJECTS, "kfold", 3)
    has = available_images(CONFIG, split)
    assert has[0] == {
        "real": 20,
        "real_resized": 20,
        "drr": 12,
        "drr_grid": 12,
        "drr_recon": 12,
    }
    assert training_sets(_detector([4, 8, 12]), has) == {
        f"{arm}@{n}": {arm: n}
        for arm in ("real", "drr", "synth2d")
        for n in (4, 12)  # 8 is detector.train_images: the arm itself
    }
    mix = {"real+synth3d": {"real": 2, "synth3d": 12}}
    detector = _detector({"synth2d": [30]}, mix)
    sets = training_sets(detector, has)
    assert sets == {"synth2d@30": {"synth2d": 30}, **mix}  # a recipe may use any arm's images
    assert with_arms(detector, sets) == {
        "real": {"real": 8},
        "drr": {"drr": 8},
        "synth2d": {"synth2d": 8},
        "synth2d@30": {"synth2d": 30},
        **mix,
    }


def test_a_size_a_fold_cannot_give_is_refused_naming_key_arm_and_both_counts():
    split = folds(SUBJECTS, "kfold", 3)
    has = available_images(CONFIG, split)
    with pytest.raises(
        InputError, match="key detector.sizes: asks arm drr for 13 training images, fold 0 has 12"
    ):
        training_sets(_detector([4, 13]), has)
    with pytest.raises(InputError, match="key detector.sizes.real: asks arm real for 21 .* has 20"):
        training_sets(_detector({"real": [21]}), has)
    with pytest.raises(InputError, match="key detector.sizes.synth3d: synth3d is not one of"):
        training_sets(_detector({"synth3d": [4]}), has)
    mix = {"real+drr": {"real": 4, "drr": 31}}
    with pytest.raises(
        InputError,
        match=r"key detector.recipes.real\+drr: asks arm drr for 31 training images, "
        "fold 0 has 12",
    ):
        training_sets(_detector([], mix), has)
    with pytest.raises(InputError, match="key detector.recipes.drr: the name of an arm"):
        training_sets(_detector([], {"drr": {"real": 4}}), has)


def test_deepfluoro_counts_each_training_specimens_x_rays():
    config = {**CONFIG, "cohort": {"source": "deepfluoro"}}
    specimens = ["17-1882", "18-1109", "18-0725", "18-2799", "18-2800", "17-1905"]
    has = available_images(config, folds(specimens, "loso", 0))
    assert has[0]["real"] == 366 - 111 and has[2]["real"] == 366 - 24


def test_sizes_take_nested_subsets_and_leave_the_default_draw_as_it_was():
    """Every size is a prefix of one order per (seed, arm, fold): smaller sets are subsets of
    larger ones, and the default size draws exactly what it drew before sizes existed."""
    s = _set(n=40)
    s.subject = np.array(["a", "b", "c", "d"] * 10)
    train = ["a", "b", "c"]  # 30 images; "d" is the fold's test subject
    sets = {
        n: set(arm_training_set("real", 0, train, s, n, 0, n_default=12)[1]) for n in (5, 12, 30)
    }
    assert sets[5] < sets[12] < sets[30] and len(sets[30]) == 30
    assert not [i for i in sets[30] if i.startswith("d/")]
    pool = np.flatnonzero(s.subject != "d")
    before = np.sort(rng_for(0, "select", "real", 0).choice(pool, size=12, replace=False))
    _, default_ids = arm_training_set("real", 0, train, s, 12, 0)
    assert (
        default_ids
        == [f"{s.subject[i]}/{i // 4}" for i in before]
        == sorted(sets[12], key=lambda i: int(i.split("/")[1]) * 4 + "abcd".index(i[0]))
    )
    with pytest.raises(InputError, match="30 training images .* fewer than the training set = 31"):
        arm_training_set("real", 0, train, s, 31, 0, n_default=12)


def test_generated_arms_make_whole_units_enough_for_their_largest_training_set():
    """synth2d makes shards of `shard_size`, synth3d parts of n_volumes x images_per_subject
    DRRs: as many as the largest set that takes images of the arm needs, at least its own."""
    has = available_images(CONFIG, folds(SUBJECTS, "kfold", 3))
    detector = {**_detector({"synth2d": [25]}, {"real+synth3d": {"real": 2, "synth3d": 13}})}
    sets = with_arms(detector, training_sets(detector, has))  # no count is refused
    config = {**CONFIG, "detector": detector}
    assert units_to_make(config, sets, "synth2d") == 3  # 25 images in shards of 10
    assert units_to_make(config, sets, "synth3d") == 2  # 13 images in parts of 2 x 6
    assert units_to_make(config, with_arms(detector, {}), "synth2d") == 1  # its own 8
