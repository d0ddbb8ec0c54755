"""A synthetic multi-label set: sklearn's make_multilabel_classification, deterministic from
`dataset.seed` (its train/test split too, unless `dataset.split_seed` re-draws it). Features are
word counts, so they are log1p'd and standardised by the train split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lossbench.config import DatasetConfig
from lossbench.data import Dataset, DatasetInfo, Footprint, Peek
from lossbench.data.split import train_test_state
from lossbench.losses import Task


def footprint(cfg: Any) -> Footprint:
    """A dense float64 (n_samples, n_features) matrix, held about four times over (generated,
    log1p'd, split, standardised), and a (n_features, n_classes) word distribution."""
    features, classes = max(cfg.n_features, 1), max(cfg.n_classes, 1)
    return Footprint(features, None, 8 * (cfg.n_samples * features * 4 + features * classes),
                     f"dataset.n_samples={cfg.n_samples} x dataset.n_features={cfg.n_features} "
                     f"(x n_classes={cfg.n_classes})")


def load(cfg: Any) -> Dataset:
    # Only this dataset imports scikit-learn (over a second): other runs never pay for it
    from sklearn.datasets import make_multilabel_classification
    from sklearn.model_selection import train_test_split

    x, y = make_multilabel_classification(
        n_samples=cfg.n_samples,
        n_features=cfg.n_features,
        n_classes=cfg.n_classes,
        n_labels=cfg.n_labels,
        random_state=cfg.seed,
    )
    x_train, x_test, y_train, y_test = train_test_split(
        np.log1p(x), y, test_size=cfg.test_fraction, random_state=train_test_state(cfg, cfg.seed)
    )
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    return Dataset(
        name="multilabel",
        task=Task.multi_label,
        n_classes=cfg.n_classes,
        x_train=tensor((x_train - mean) / std),
        y_train=tensor(y_train),
        x_test=tensor((x_test - mean) / std),
        y_test=tensor(y_test),
        source="synthetic",
        origin=(
            f"make_multilabel_classification(n_samples={cfg.n_samples}, n_features="
            f"{cfg.n_features}, n_classes={cfg.n_classes}, n_labels={cfg.n_labels}, "
            f"random_state={cfg.seed})"
        ),
    )


@dataclass
class MultilabelConfig(DatasetConfig):
    name: str = "multilabel"
    n_samples: int = 5000
    n_features: int = 64
    n_classes: int = 10
    # Mean number of positive labels per sample (Poisson); samples may have none
    n_labels: int = 3
    test_fraction: float = 0.2


def peek(cfg: Any) -> Peek:
    return Peek(Task.multi_label, cfg.n_classes, cfg.n_features)


INFO = DatasetInfo(MultilabelConfig, load, lambda cfg: None, peek, Task.multi_label, footprint=footprint)
