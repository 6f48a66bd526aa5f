import numpy as np
import pytest

from tests.imaging.test_imageset import _set
from xrayfactory.cohort.sheet import folds
from xrayfactory.core.errors import InputError
from xrayfactory.imaging.splits import (
    arm_training_set,
    held_out_set,
    image_ids,
    realism_sample,
    training_set,
)


def test_folds_partition_subjects_and_test_never_trains():
    subjects = [f"s{i}" for i in range(5)]
    df = folds(subjects, "kfold", 2)
    seen = []
    for f in (0, 1):
        rows = df[df.fold == f]
        train, test = (
            list(rows[rows.role == "train"].subject),
            list(rows[rows.role == "test"].subject),
        )
        assert not set(train) & set(test) and set(train) | set(test) == set(subjects)
        seen += test
    assert sorted(seen) == subjects
    assert len(folds(subjects, "loso", 0)) == 25


def test_a_chosen_fold_is_that_fold_of_the_scheme():
    subjects = [f"s{i}" for i in range(4)]
    every = folds(subjects, "kfold", 2)
    one = folds(subjects, "kfold", 2, [1])
    assert one.fold.unique().tolist() == [1]
    assert one.values.tolist() == every[every.fold == 1].values.tolist()
    with pytest.raises(InputError, match=r"split.folds: folds \[2\] do not exist; .* 0..1"):
        folds(subjects, "kfold", 2, [0, 2])


def test_training_set_draws_exactly_n_from_training_subjects():
    s = _set(n=10)
    s.subject = np.array(["a", "b"] * 5)
    chosen = training_set(s, ["a"], 4, (0, "x"), "arm real, fold 0")
    assert len(chosen) == 4 and set(chosen.subject) == {"a"}
    again = training_set(s, ["a"], 4, (0, "x"), "arm real, fold 0")
    assert np.array_equal(chosen.images, again.images)
    with pytest.raises(
        InputError,
        match="arm real, fold 0: 5 training images .* fewer than detector.train_images = 6",
    ):
        training_set(s, ["a"], 6, (0, "x"), "arm real, fold 0")


def test_empty_test_fold_is_an_error():
    s = _set(n=4)
    with pytest.raises(InputError, match="fold 1: empty test fold"):
        held_out_set(s, ["nobody"], "fold 1")
    test, ids = held_out_set(s, ["s2"], "fold 0")
    assert ids.tolist() == ["s2/0"] and len(test) == 1


def test_real_realism_sample_is_never_the_feature_networks_training_data():
    """The `real` row of the realism table uses real images the `real` detector (the feature
    network) did not train on; other arms a subset of what their detector trains on. A pool
    that also holds the test subject's images never gives them out."""
    train = ["b", "c"]  # fold 0 of a, b, c (loso) tests a
    s = _set(n=30)
    s.subject = np.array(["a", "b", "c"] * 10)
    trained, ids = arm_training_set("real", 0, train, s, 12, 0)
    assert len(ids) == 12 and set(trained.subject) <= {"b", "c"}
    sample = realism_sample("real", 0, train, s, 8, 12, 0)
    sample_ids = set(image_ids(s.subject)[np.isin(s.images[:, 0, 0], sample.images[:, 0, 0])])
    assert len(sample) == 8 and set(sample.subject) <= {"b", "c"}
    assert not sample_ids & set(ids)  # 20 training-subject images, 12 trained on, 8 left
    assert realism_sample("real", 0, train, s, 9, 12, 0) is None  # too few unseen: not measured
    drr = realism_sample("drr", 0, train, s, 8, 12, 0)
    drr_trained, _ = arm_training_set("drr", 0, train, s, 12, 0)
    assert len(drr) == 8 and set(drr.images[:, 0, 0]) <= set(drr_trained.images[:, 0, 0])


def test_generated_arms_take_their_images_in_generation_order_across_volumes():
    """A generated arm's first n images: every volume's k-th DRR before any (k+1)-th, the same
    for every seed, and unchanged when more parts are made (the pool grows, the prefix stays)."""
    part = _set(n=6)  # part 0: 3 DRRs of each of 2 volumes, volume by volume
    part.subject = np.array(["v0", "v0", "v0", "v1", "v1", "v1"])
    part.attrs["fold"] = 0
    _, ids = arm_training_set("synth3d", 0, [], part, 4, seed=0)
    assert ids == ["v0/0", "v0/1", "v1/0", "v1/1"]
    assert arm_training_set("synth3d", 0, [], part, 4, seed=1)[1] == ids
    two_parts = _set(n=12)  # parts 0 and 1 of each volume, as the workflow concatenates them
    two_parts.subject = np.array(["v0"] * 6 + ["v1"] * 6)
    two_parts.attrs["fold"] = 0
    _, more = arm_training_set("synth3d", 0, [], two_parts, 8, seed=0)
    assert set(ids) < set(more) and sorted(more) == [f"v{v}/{k}" for v in (0, 1) for k in range(4)]
    with pytest.raises(InputError, match="arm synth3d, fold 0: 12 generated images, fewer than "):
        arm_training_set("synth3d", 0, [], two_parts, 13, seed=0)


def test_controls_train_on_their_parent_arms_images():
    """drr_grid and drr_recon take the `drr` detector's image ids, real_resized the `real`
    detector's and synth3d_nolatent synth3d's (each control differs from its parent only in
    what it isolates), also in the realism sample; a pool larger than the training set makes
    the draw matter."""
    train = ["b", "c"]
    s = _set(n=30)
    s.subject = np.array(["a", "b", "c"] * 10)
    for parent, controls in (("drr", ("drr_grid", "drr_recon")), ("real", ("real_resized",))):
        _, ids = arm_training_set(parent, 0, train, s, 12, 3)
        for control in controls:
            assert arm_training_set(control, 0, train, s, 12, 3)[1] == ids
    other_seed = arm_training_set("drr_grid", 0, train, s, 12, 4)[1]
    assert other_seed != arm_training_set("drr_grid", 0, train, s, 12, 3)[1]
    drr = realism_sample("drr", 0, train, s, 8, 12, 3)
    grid = realism_sample("drr_grid", 0, train, s, 8, 12, 3)
    np.testing.assert_array_equal(drr.images, grid.images)
    # synth3d_nolatent: synth3d's volumes and views (its parts), made to order like synth3d
    part = _set(n=12)
    part.subject = np.array(["v0"] * 3 + ["v1"] * 3 + ["v0"] * 3 + ["v1"] * 3)
    part.attrs["fold"] = 0
    _, ids = arm_training_set("synth3d", 0, [], part, 8, seed=0)
    assert arm_training_set("synth3d_nolatent", 0, [], part, 8, seed=2)[1] == ids
    pair = [realism_sample(arm, 0, [], part, 4, 8, 3) for arm in ("synth3d", "synth3d_nolatent")]
    np.testing.assert_array_equal(pair[0].images, pair[1].images)
