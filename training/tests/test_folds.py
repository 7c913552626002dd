"""k-fold splits: deterministic, seeded, a partition with balanced folds, order-independent."""

from __future__ import annotations

import pytest

from medsegai_training.folds import fold_cases, kfold_split

NAMES = [f"case_{i:03d}" for i in range(11)]


def test_folds_partition_the_cases_in_balanced_sorted_folds():
    folds = kfold_split(NAMES, 5, seed=0)
    assert len(folds) == 5 and sorted(sum(folds, [])) == NAMES
    assert sorted(len(f) for f in folds) == [2, 2, 2, 2, 3]
    assert all(f == sorted(f) for f in folds)


def test_the_split_depends_only_on_the_names_k_and_the_seed():
    assert kfold_split(NAMES, 5, seed=0) == kfold_split(list(reversed(NAMES)), 5, seed=0)
    assert kfold_split(NAMES, 5, seed=0) != kfold_split(NAMES, 5, seed=1)
    assert kfold_split(NAMES, 3, seed=7) == kfold_split(NAMES, 3, seed=7)


def test_each_fold_validates_once_and_trains_on_the_rest():
    seen = []
    for fold in range(4):
        train, validation = fold_cases(NAMES, 4, fold, seed=2)
        assert not set(train) & set(validation) and sorted(train + validation) == NAMES
        seen += validation
    assert sorted(seen) == NAMES


@pytest.mark.parametrize("names,k,fold,message", [
    (NAMES, 1, 0, "at least 2 folds"), (NAMES[:3], 4, 0, "4 folds need at least 4 cases"),
    (NAMES, 5, 5, r"fold must lie in 0\.\.4"), (["a", "a", "b"], 2, 0, "unique")])
def test_impossible_splits_are_refused(names, k, fold, message):
    with pytest.raises(ValueError, match=message):
        fold_cases(names, k, fold)
