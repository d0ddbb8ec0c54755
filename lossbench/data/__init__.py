"""Datasets as tensors in memory: the trainer batches them by index slicing."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch
from omegaconf import OmegaConf

from lossbench.losses import Task


@dataclass
class Dataset:
    name: str
    task: Task
    n_classes: int
    x_train: torch.Tensor  # float32 (N, features)
    y_train: torch.Tensor  # long (N,) class indices, or float32 (N, classes) multi-hot
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str  # full | sample | synthetic: results from different sources are never pooled
    origin: str  # where exactly the data came from, for the log and the summary

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    def to(self, device: torch.device) -> "Dataset":
        """A copy on `device`; this one stays as it is (it may be the cached one)."""
        return dataclasses.replace(self, **{
            name: getattr(self, name).to(device) for name in ("x_train", "y_train", "x_test", "y_test")
        })


@dataclass(frozen=True)
class DatasetInfo:
    task: Task
    load: Callable[[Any], Dataset]
    # Raises DataError when the configured source cannot be had; must not read the data.
    check: Callable[[Any], None]
    # The number of classes the config will give, known before any data loads.
    n_classes: Callable[[Any], int]


def _registry() -> dict[str, DatasetInfo]:
    from lossbench.data import mnist, multilabel

    return {
        "mnist": DatasetInfo(Task.single_label, mnist.load_mnist, mnist.check_mnist, mnist.n_classes),
        "fashion_mnist": DatasetInfo(
            Task.single_label, mnist.load_fashion_mnist, mnist.check_fashion_mnist, mnist.n_classes
        ),
        "multilabel": DatasetInfo(Task.multi_label, multilabel.load, lambda cfg: None,
                                  lambda cfg: cfg.n_classes),
    }


DATASETS = _registry()


def check_source_available(dataset_cfg: Any) -> None:
    DATASETS[dataset_cfg.name].check(dataset_cfg)


# The last dataset loaded in this process: a sweep under the basic launcher runs every job in
# one process, and most of its jobs share one dataset config. Training never writes to it.
_last: dict[str, Dataset] = {}


def load_dataset(dataset_cfg: Any) -> Dataset:
    key = OmegaConf.to_yaml(dataset_cfg)
    if key not in _last:
        _last.clear()
        _last[key] = DATASETS[dataset_cfg.name].load(dataset_cfg)
    return _last[key]
