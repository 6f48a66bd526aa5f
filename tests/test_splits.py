import numpy as np
import pandas as pd
import pytest

from tests.test_imageset import _set
from xrayfactory.cohort import folds
from xrayfactory.errors import InputError
from xrayfactory.splits import (
    arm_training_set,
    fold_subjects,
    held_out_set,
    image_ids,
    realism_sample,
    training_set,
)


def test_folds_partition_subjects_and_test_never_trains(tmp_path):
    subjects = [f"s{i}" for i in range(5)]
    df = folds(subjects, "kfold", 2)
    path = tmp_path / "folds.csv"
    df.to_csv(path, index=False)
    seen = []
    for f in (0, 1):
        train, test = fold_subjects(path, f)
        assert not set(train) & set(test) and set(train) | set(test) == set(subjects)
        seen += test
    assert sorted(seen) == subjects
    assert len(folds(subjects, "loso", 0)) == 25


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


def test_missing_fold(tmp_path):
    pd.DataFrame({"fold": [0], "subject": ["a"], "role": ["test"]}).to_csv(
        tmp_path / "f.csv", index=False
    )
    with pytest.raises(InputError, match="fold 3 does not exist"):
        fold_subjects(tmp_path / "f.csv", 3)


def test_real_realism_sample_is_never_the_feature_networks_training_data(tmp_path):
    """The `real` row of the realism table uses real images the `real` detector (the feature
    network) did not train on; other arms a subset of what their detector trains on."""
    path = tmp_path / "folds.csv"
    folds(["a", "b", "c"], "loso", 0).to_csv(path, index=False)  # fold 0 tests a
    s = _set(n=30)
    s.subject = np.array(["a", "b", "c"] * 10)
    trained, ids, subjects = arm_training_set("real", 0, path, s, 12, 0)
    assert subjects == ["b", "c"] and len(ids) == 12 and set(trained.subject) <= {"b", "c"}
    sample = realism_sample("real", 0, path, s, 8, 12, 0)
    sample_ids = set(image_ids(s.subject)[np.isin(s.images[:, 0, 0], sample.images[:, 0, 0])])
    assert len(sample) == 8 and set(sample.subject) <= {"b", "c"}
    assert not sample_ids & set(ids)  # 20 training-subject images, 12 trained on, 8 left
    assert realism_sample("real", 0, path, s, 9, 12, 0) is None  # too few unseen: not measured
    drr = realism_sample("drr", 0, path, s, 8, 12, 0)
    drr_trained, _, _ = arm_training_set("drr", 0, path, s, 12, 0)
    assert len(drr) == 8 and set(drr.images[:, 0, 0]) <= set(drr_trained.images[:, 0, 0])
