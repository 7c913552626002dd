"""k-fold cross-validation splits of a data set's cases: deterministic, seeded, pure.

The case names are sorted first, so the split depends only on the set of names, ``k`` and the
seed -- not on the order the data set lists them in. Fold sizes differ by at most one.

Example:
    >>> kfold_split(["a", "b", "c", "d", "e"], 2, seed=0)
    [['b', 'c', 'd'], ['a', 'e']]
    >>> fold_cases(["e", "d", "c", "b", "a"], 2, 1, seed=0)  # (training, validation)
    (['b', 'c', 'd'], ['a', 'e'])
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def kfold_split(names: Sequence[str], k: int, seed: int = 0) -> list[list[str]]:
    """Split ``names`` into ``k`` folds (each sorted) after a seeded shuffle."""
    unique = sorted(set(names))
    if len(unique) != len(names):
        raise ValueError("case names must be unique")
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {k}")
    if k > len(unique):
        raise ValueError(f"{k} folds need at least {k} cases, got {len(unique)}")
    order = np.random.default_rng(seed).permutation(len(unique))
    folds: list[list[str]] = [[] for _ in range(k)]
    for position, index in enumerate(order):
        folds[position % k].append(unique[int(index)])
    return [sorted(fold) for fold in folds]


def fold_cases(names: Sequence[str], k: int, fold: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``(training cases, validation cases)`` of fold ``fold`` (0-based): validation is that fold,
    training all the others."""
    folds = kfold_split(names, k, seed)
    if not 0 <= fold < k:
        raise ValueError(f"fold must lie in 0..{k - 1}, got {fold}")
    train = sorted(name for i, f in enumerate(folds) if i != fold for name in f)
    return train, folds[fold]
