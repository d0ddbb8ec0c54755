"""A subset of a single-label dataset's classes, relabelled 0..k-1 in the order given: classes
[3, 8] make a binary 3-vs-8 task with 3 as class 0."""

from __future__ import annotations

import dataclasses

import torch

from lossbench.data import Dataset


def select_classes(data: Dataset, classes: list[int]) -> Dataset:
    relabel = torch.full((int(max(data.y_train.max(), data.y_test.max())) + 1,), -1, dtype=torch.long)
    relabel[torch.tensor(classes)] = torch.arange(len(classes))
    train, test = relabel[data.y_train], relabel[data.y_test]
    return dataclasses.replace(
        data,
        n_classes=len(classes),
        x_train=data.x_train[train >= 0], y_train=train[train >= 0],
        x_test=data.x_test[test >= 0], y_test=test[test >= 0],
    )
