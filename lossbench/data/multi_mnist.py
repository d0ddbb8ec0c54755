"""Multi-label images composed from MNIST digits: each image is a grid x grid canvas of 28x28
cells (2x2: 56x56) with k digits in k distinct cells, k uniform in [min_digits, max_digits]; its
label is the multi-hot of the digit classes present (two 3s make one positive label). Training
images use only training digits, test images only test digits, so no digit crosses the split.
The digits come from full MNIST when its files are under dataset.root, else from the shipped
sample (see lossbench/data/mnist.py). Deterministic from dataset.seed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lossbench.data import Dataset, DatasetInfo, Footprint, Peek
from lossbench.data.mnist import DIGITS, MNIST, MnistConfig, check_mnist, image_tensors, read_arrays, source_mnist
from lossbench.losses import Task

CELL = 28
TRAIN_STREAM, TEST_STREAM = 0, 1


def compose(digits: np.ndarray, labels: np.ndarray, n_images: int, min_digits: int, max_digits: int,
            grid: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, grid*28, grid*28) uint8 and multi-hot labels (n, 10) float32, from digits
    (m, 784) uint8 with their labels (m,)."""
    k = rng.integers(min_digits, max_digits + 1, size=n_images)
    # A random order of the cells per image: its first k cells get a digit.
    cells = np.argsort(rng.random((n_images, grid * grid)), axis=1)
    picks = rng.integers(0, len(digits), size=(n_images, max_digits))
    canvas = np.zeros((n_images, grid * grid, CELL * CELL), dtype=np.uint8)
    multi_hot = np.zeros((n_images, 10), dtype=np.float32)
    for slot in range(max_digits):
        filled = np.flatnonzero(slot < k)
        canvas[filled, cells[filled, slot]] = digits[picks[filled, slot]]
        multi_hot[filled, labels[picks[filled, slot]]] = 1.0
    # (n, row, col, y, x) -> (n, row, y, col, x): the cells side by side, pixel rows joined
    images = canvas.reshape(n_images, grid, grid, CELL, CELL).transpose(0, 1, 3, 2, 4)
    return images.reshape(n_images, grid * CELL, grid * CELL), multi_hot


def footprint(cfg: Any) -> Footprint:
    """Per image: the uint8 canvas, its transposed copy and the float32 tensor (6 bytes a pixel),
    and compose's float64 cell order and int64 picks."""
    side = cfg.grid * CELL
    per_image = 6 * side * side + 16 * cfg.grid ** 2 + 8 * cfg.max_digits + 4 * 10
    return Footprint(side * side, (1, side, side), (cfg.n_train + cfg.n_test) * per_image,
                     f"dataset.n_train={cfg.n_train} + dataset.n_test={cfg.n_test} images of "
                     f"{side}x{side} (dataset.grid={cfg.grid})")


def load(cfg: Any) -> Dataset:
    (x_train, y_train, x_test, y_test), source, origin = read_arrays(MNIST, cfg)
    shape = dict(min_digits=cfg.min_digits, max_digits=cfg.max_digits, grid=cfg.grid)
    train_images, train_labels = compose(
        x_train, y_train, cfg.n_train, rng=np.random.default_rng([cfg.seed, TRAIN_STREAM]), **shape)
    test_images, test_labels = compose(
        x_test, y_test, cfg.n_test, rng=np.random.default_rng([cfg.seed, TEST_STREAM]), **shape)
    side = cfg.grid * CELL
    x_train, x_test, stats = image_tensors(train_images.reshape(cfg.n_train, -1),
                                           test_images.reshape(cfg.n_test, -1), origin)
    return Dataset(
        name="multi_mnist",
        task=Task.multi_label,
        n_classes=10,
        x_train=x_train,
        y_train=torch.from_numpy(train_labels),
        x_test=x_test,
        y_test=torch.from_numpy(test_labels),
        source=source,
        origin=(f"{cfg.min_digits}-{cfg.max_digits} digits on a {side}x{side} canvas, composed from "
                f"{origin}"),
        image_shape=(1, side, side),
        pixel_stats=stats,
        info={"test_label_cardinality": float(test_labels.sum(axis=1, dtype=np.float64).mean())},
    )


@dataclass
class MultiMnistConfig(MnistConfig):
    name: str = "multi_mnist"
    # Images composed for each split
    n_train: int = 4000
    n_test: int = 1000
    # k digits per image, k uniform in [min_digits, max_digits], on a grid x grid canvas
    min_digits: int = 1
    max_digits: int = 4
    grid: int = 2


def peek(cfg: Any) -> Peek:
    side = max(cfg.grid, 1) * CELL
    return Peek(Task.multi_label, 10, side * side, (1, side, side))


INFO = DatasetInfo(MultiMnistConfig, load, check_mnist, peek, Task.multi_label, True, DIGITS, source_mnist,
                   footprint)
