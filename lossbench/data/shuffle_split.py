"""scikit-learn's train_test_split draws, without importing scikit-learn (over a second of every
run's start-up, for a few lines of numpy).

`shuffle_split` returns the (train, test) indices that
`sklearn.model_selection.train_test_split(np.arange(n), test_size=..., stratify=..., random_state=...)`
returns: ShuffleSplit's and StratifiedShuffleSplit's draws from a legacy RandomState, step for
step, so the splits (and every run's data) stay the ones lossbench drew with sklearn.
tests/training/test_numpy_equals_sklearn.py checks the equality.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np


def approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """sklearn.utils.extmath._approximate_mode: how many of n_draws each class gets, in
    proportion to its count, the left-over draws going to the largest remainders (ties drawn)."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    remainder = continuous - floored
    for value in np.sort(np.unique(remainder))[::-1]:
        if need <= 0:
            break
        (tied,) = np.where(remainder == value)
        add_now = min(len(tied), need)
        floored[rng.choice(tied, size=add_now, replace=False)] += 1
        need -= add_now
    return floored.astype(int)


def shuffle_split(n: int, test_size: float | int, random_state: int,
                  stratify: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices of range(n); test_size a fraction in (0, 1) or a count, as sklearn
    takes it. ValueError when the split cannot be made (an empty side; stratified: a class with
    one member, or fewer examples on a side than classes)."""
    n_test = test_size if isinstance(test_size, int) else math.ceil(test_size * n)
    n_train = n - n_test
    if n_test <= 0 or n_train <= 0:
        raise ValueError(f"test_size={test_size} of {n} samples leaves a side empty")
    rng = np.random.RandomState(random_state)
    if stratify is None:
        permutation = rng.permutation(n)
        return permutation[n_test:], permutation[:n_test]
    classes, y_indices, counts = np.unique(stratify, return_inverse=True, return_counts=True)
    if counts.min() < 2:
        raise ValueError(f"classes {classes[counts < 2].tolist()} have a single member; stratifying needs 2")
    if min(n_train, n_test) < len(classes):
        raise ValueError(f"a side of {min(n_train, n_test)} cannot hold one of each of {len(classes)} classes")
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(counts)[:-1])
    n_i = approximate_mode(counts, n_train, rng)
    t_i = approximate_mode(counts - n_i, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for i in range(len(classes)):
        members = class_indices[i].take(rng.permutation(counts[i]), mode="clip")
        train.extend(members[: n_i[i]])
        test.extend(members[n_i[i] : n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)
