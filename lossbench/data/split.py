"""The splits lossbench draws itself: the validation split carved from every dataset's training
split, and the train/test split of data that comes without one (the MNIST sample, multilabel).

The val split is carved after the conditions (lossbench/data/conditions.py), so it has the
training split's distribution: long-tailed under `dataset.imbalance_ratio`, with noisy labels under
`dataset.label_noise` (the realistic setting: a practitioner's validation labels are as noisy as
their training labels). Single-label: stratified by the labels trained on; multi-label: random.
Its draw comes from `dataset.seed` and `dataset.split_seed`, so every run of a sweep sees the
same split, and a study can vary it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np
import torch

from lossbench.data import Dataset
from lossbench.data.shuffle_split import shuffle_split
from lossbench.errors import DataError
from lossbench.losses import Task

TEST_STREAM, VAL_STREAM = 3, 4  # after the conditions' streams (1, 2)


def _random_state(entropy: list[int]) -> int:
    """An int for a RandomState (what sklearn's splits took; no numpy Generator), drawn from `entropy` as
    the conditions draw theirs (np.random.default_rng([seed, stream]))."""
    return int(np.random.default_rng(entropy).integers(2**32))


def train_test_state(cfg: Any, fixed: int) -> int:
    """random_state of a train/test split lossbench draws itself: `fixed`, the split every run
    had before split_seed existed, unless `dataset.split_seed` asks for another draw."""
    return fixed if cfg.split_seed is None else _random_state([cfg.split_seed, TEST_STREAM])


def _val_state(cfg: Any) -> int:
    extra: list[int] = [] if cfg.split_seed is None else [cfg.split_seed]
    return _random_state([cfg.seed, VAL_STREAM, *extra])


def _take(tensor: Optional[torch.Tensor], index: np.ndarray) -> Optional[torch.Tensor]:
    return None if tensor is None else tensor[torch.from_numpy(index)]


def carve_val(data: Dataset, cfg: Any) -> Dataset:
    """`dataset.val_fraction` of the training split moved into x_val/y_val (a no-op at 0, and for
    data that came with its own validation split)."""
    if cfg.val_fraction == 0 or data.x_val is not None:
        return data
    labels = data.y_train.numpy()
    stratify = labels if data.task == Task.single_label else None
    try:
        train, val = shuffle_split(len(labels), cfg.val_fraction, _val_state(cfg), stratify)
    except ValueError as error:  # too few examples for the fraction, or a class too rare to stratify
        raise DataError(f"dataset.val_fraction={cfg.val_fraction} cannot split the {len(labels)} training "
                        f"examples{' stratified by class' if stratify is not None else ''} ({error}); "
                        "change dataset.val_fraction (0: no val split) or the conditions") from None
    train, val = np.sort(train), np.sort(val)  # keep the data's own order within each split
    return dataclasses.replace(
        data, x_train=_take(data.x_train, train), y_train=_take(data.y_train, train),
        y_train_clean=_take(data.y_train_clean, train),
        x_val=_take(data.x_train, val),
        y_val=_take(data.y_train, val))
