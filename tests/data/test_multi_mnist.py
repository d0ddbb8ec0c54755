"""multi_mnist: composed from real MNIST digits, labels are exactly the digits drawn, and no
digit crosses from the training pool into the test images."""

import numpy as np
import torch

from lossbench.data import load_dataset
from lossbench.data.mnist import MNIST, read_arrays
from lossbench.data.multi_mnist import CELL, compose

from conftest import compose_config


def cells(images: np.ndarray, grid: int) -> np.ndarray:
    """(n, grid*28, grid*28) -> (n, grid*grid, 784), cells in row-major order."""
    n = len(images)
    return images.reshape(n, grid, CELL, grid, CELL).transpose(0, 1, 3, 2, 4).reshape(n, grid * grid, -1)


def pools():
    cfg = compose_config("dataset=multi_mnist", "dataset.source=sample").dataset
    (x_train, y_train, x_test, y_test), _, _ = read_arrays(MNIST, cfg)
    return x_train, y_train, x_test, y_test


def test_labels_are_the_multi_hot_of_the_digits_in_the_cells_and_k_is_in_range():
    x_train, y_train, _, _ = pools()
    label_of = {row.tobytes(): int(y) for row, y in zip(x_train, y_train)}
    images, labels = compose(x_train, y_train, 300, 2, 3, 2, np.random.default_rng(0))
    assert images.shape == (300, 56, 56) and labels.shape == (300, 10)
    for image_cells, multi_hot in zip(cells(images, 2), labels):
        filled = [c for c in image_cells if c.any()]
        assert 2 <= len(filled) <= 3
        expected = np.zeros(10, dtype=np.float32)
        expected[[label_of[c.tobytes()] for c in filled]] = 1
        assert np.array_equal(multi_hot, expected)


def test_train_images_use_only_training_digits_and_test_images_only_test_digits():
    x_train, _, x_test, _ = pools()
    train_digits = {row.tobytes() for row in x_train}
    test_digits = {row.tobytes() for row in x_test}
    assert not train_digits & test_digits
    data = load_dataset(compose_config("dataset=multi_mnist", "dataset.source=sample",
                                       "dataset.n_train=600", "dataset.n_test=300").dataset)
    # back to bytes: the blank pixel is the training minimum, a full 255 its maximum
    low, high = float(data.x_train.min()), float(data.x_train.max())
    for x, own, other in ((data.x_train, train_digits, test_digits), (data.x_test, test_digits, train_digits)):
        pixels = ((x.numpy() - low) / (high - low) * 255).round().astype(np.uint8).reshape(-1, 56, 56)
        used = {c.tobytes() for c in cells(pixels, 2).reshape(-1, CELL * CELL) if c.any()}
        assert used and used <= own and not used & other


def test_loaded_set_is_deterministic_carries_its_image_shape_and_records_label_frequency():
    overrides = ("dataset=multi_mnist", "dataset.source=sample", "dataset.n_train=400", "dataset.n_test=100",
                 "dataset.val_fraction=0")
    data = load_dataset(compose_config(*overrides).dataset)
    assert data.image_shape == (1, 56, 56) and data.x_train.shape == (400, 56 * 56)
    assert data.y_train.shape == (400, 10) and data.y_train.dtype == torch.float32
    assert data.y_train.sum(dim=1).min() >= 1 and data.y_train.sum(dim=1).max() <= 4
    assert data.info["train_positive_rate"] == data.y_train.double().mean(dim=0).numpy().round(6).tolist()
    assert abs(data.info["label_cardinality"] - float(data.y_train.sum(dim=1).double().mean())) < 1e-12
    other = load_dataset(compose_config(*overrides, "dataset.seed=1").dataset)
    again = load_dataset(compose_config(*overrides).dataset)
    assert torch.equal(again.x_train, data.x_train) and torch.equal(again.y_test, data.y_test)
    assert not torch.equal(other.x_train, data.x_train)


def test_a_fixed_k_on_a_3x3_grid_gives_84x84_images_with_k_filled_cells():
    x_train, y_train, _, _ = pools()
    images, _ = compose(x_train, y_train, 50, 5, 5, 3, np.random.default_rng(0))
    assert images.shape == (50, 84, 84)
    assert ((cells(images, 3).any(axis=2)).sum(axis=1) == 5).all()
