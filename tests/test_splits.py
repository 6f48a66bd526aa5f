import numpy as np
import pandas as pd
import pytest

from tests.test_imageset import _set
from xrayfactory.cohort import folds
from xrayfactory.errors import InputError
from xrayfactory.splits import fold_subjects, held_out_set, training_set


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
