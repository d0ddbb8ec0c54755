"""A subset of a single-label dataset's classes, relabelled 0..k-1 in the order given: classes
[3, 8] make a binary 3-vs-8 task with 3 as class 0."""

from __future__ import annotations

import dataclasses

import torch

from lossbench.data import Dataset


def select_classes(data: Dataset, classes: list[int]) -> Dataset:
    relabel = torch.full((max(data.n_classes, *classes) + 1,), -1, dtype=torch.long)
    relabel[torch.tensor(classes)] = torch.arange(len(classes))
    kept = {}
    for split in ("train", "test", "val"):  # a dataset's own val split (image folders) too
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if y is not None:
            y = relabel[y]
            kept.update({f"x_{split}": x[y >= 0], f"y_{split}": y[y >= 0]})
    return dataclasses.replace(data, n_classes=len(classes), **kept)
