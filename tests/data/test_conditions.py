"""The conditions a loss is compared under: label noise with APL's exact counts, the long-tailed
profile, class subsets, and the refusal of bad condition knobs before any data loads."""

import numpy as np
import pytest
import torch

from lossbench.config import validate
from lossbench.data import load_dataset
from lossbench.data import imbalance, noise
from lossbench.errors import UserError

from conftest import compose_config, run_cli

# Uneven classes, so a per-class count cannot pass by accident of a global one.
CLASS_SIZES = [50, 41, 30, 25, 17, 12, 9, 7, 5, 3]
LABELS = np.repeat(np.arange(10), CLASS_SIZES)


def sample(*overrides):
    """The sample under conditions, without a val split: the whole training split is theirs."""
    return load_dataset(compose_config("dataset.source=sample", "dataset.val_fraction=0", *overrides).dataset)


@pytest.mark.parametrize("eta", [0.2, 0.45, 0.8])
def test_symmetric_noise_moves_exactly_round_eta_n_c_labels_of_each_class_to_other_classes(eta):
    noisy = noise.symmetric(LABELS, 10, eta, np.random.default_rng(0))
    for c, n_c in enumerate(CLASS_SIZES):
        moved = noisy[LABELS == c] != c
        assert moved.sum() == int(eta * n_c + 0.5)  # round half up: 0.45 * 30 = 13.5 -> 14
    assert set(np.unique(noisy)) <= set(range(10))


def test_symmetric_noise_draws_the_new_class_uniformly_among_the_others():
    labels = np.zeros(90_000, dtype=np.int64)
    noisy = noise.symmetric(labels, 10, 0.9, np.random.default_rng(0))
    counts = np.bincount(noisy, minlength=10)
    assert counts[0] == 9_000
    assert np.all(np.abs(counts[1:] - 9_000) < 4 * np.sqrt(9_000))


def test_asymmetric_noise_flips_only_mapped_classes_to_their_targets_with_probability_eta():
    labels = np.repeat(np.arange(10), 2_000)
    noisy = noise.asymmetric(labels, noise.ASYMMETRIC_MAPS["mnist"], 0.4, np.random.default_rng(0))
    moved = noisy != labels
    assert set(np.unique(labels[moved])) == {2, 3, 5, 6, 7}
    for source, target in {7: 1, 2: 7, 5: 6, 6: 5, 3: 8}.items():
        flipped = noisy[labels == source] != source
        assert set(noisy[labels == source][flipped]) == {target}
        assert abs(flipped.mean() - 0.4) < 4 * np.sqrt(0.24 / 2_000)


def test_multi_label_noise_flips_each_bit_with_probability_eta():
    labels = (np.random.default_rng(1).random((2_000, 10)) < 0.3).astype(np.float32)
    noisy = noise.multi_label(labels, 0.2, np.random.default_rng(0))
    assert set(np.unique(noisy)) == {0.0, 1.0}
    assert abs((noisy != labels).mean() - 0.2) < 4 * np.sqrt(0.16 / labels.size)


def test_noise_touches_training_labels_only_and_is_deterministic_from_the_dataset_seed():
    clean = sample()
    noisy = sample("dataset.label_noise=0.4")
    # a new in-process cache key, the same data (no IDX files there: the sample)
    again = sample("dataset.label_noise=0.4", "dataset.seed=0", "dataset.root=no-idx-files-here")
    other_seed = sample("dataset.label_noise=0.4", "dataset.seed=1")
    assert torch.equal(noisy.y_test, clean.y_test) and torch.equal(noisy.x_train, clean.x_train)
    assert torch.equal(noisy.y_train_clean, clean.y_train)
    assert torch.equal(again.y_train, noisy.y_train)
    assert not torch.equal(other_seed.y_train, noisy.y_train)
    # 400 training digits per class in the sample: exactly 160 flipped in each
    assert noisy.info["label_noise_realised"] == 0.4
    assert clean.y_train_clean is None and "label_noise_realised" not in clean.info


def test_imbalance_profile_counts_follow_cui_et_al():
    assert imbalance.profile(400, 10, 100) == [400, 239, 143, 86, 51, 30, 18, 11, 6, 4]
    assert imbalance.profile(400, 10, 1) == [400] * 10
    assert imbalance.profile(5000, 2, 10) == [5000, 500]


def test_imbalanced_training_set_keeps_the_profile_and_a_balanced_test_set():
    balanced = sample()
    data = sample("dataset.imbalance_ratio=10")
    counts = np.bincount(data.y_train.numpy(), minlength=10).tolist()
    assert counts == imbalance.profile(400, 10, 10) == data.info["train_class_counts"]
    assert np.bincount(data.y_test.numpy()).tolist() == [100] * 10
    assert torch.equal(data.x_test, balanced.x_test)
    # every kept example is one of the balanced set's, with its label
    rows = {tuple(x[:400].tolist()): int(y) for x, y in zip(balanced.x_train, balanced.y_train)}
    assert all(rows[tuple(x[:400].tolist())] == int(y) for x, y in zip(data.x_train, data.y_train))


def test_class_subset_relabels_in_the_given_order():
    full = sample()
    data = sample("dataset.classes=[8,3]")
    assert data.n_classes == 2 and data.info["class_ids"] == [8, 3]
    assert torch.equal(data.x_test, full.x_test[(full.y_test == 8) | (full.y_test == 3)])
    assert torch.equal(data.y_test, (full.y_test[(full.y_test == 8) | (full.y_test == 3)] == 3).long())
    assert len(data.y_train) == 800


def test_asymmetric_noise_under_a_class_subset_uses_the_map_among_those_classes():
    data = sample("dataset.classes=[5,6,0]", "noise=asymmetric_40")
    moved = data.y_train != data.y_train_clean
    # 5 <-> 6 are classes 0 <-> 1 here; class 0 (digit 0) is not in the map
    assert set(data.y_train_clean[moved].tolist()) == {0, 1}
    assert torch.equal(data.y_train[moved], 1 - data.y_train_clean[moved])


@pytest.mark.parametrize("overrides, message", [
    (["dataset.label_noise=1.0"], "dataset.label_noise=1.0 must be in [0, 1)"),
    (["dataset.label_noise=-0.1"], "dataset.label_noise=-0.1"),
    (["dataset.imbalance_ratio=0.5"], "dataset.imbalance_ratio=0.5 must be >= 1"),
    (["dataset.classes=[3,3]"], "repeated classes [3]"),
    (["dataset.classes=[3,11]"], "unknown classes [11]"),
    (["dataset.classes=[3]"], "fewer than 2 classes"),
    (["dataset=multilabel", "loss=bce_logits", "dataset.classes=[1,2]"], "single-label dataset"),
    (["dataset=multilabel", "loss=bce_logits", "dataset.imbalance_ratio=10"], "single-label dataset"),
    (["dataset=multilabel", "loss=bce_logits", "noise=asymmetric_40"], "no class map for dataset=multilabel"),
    (["dataset.classes=[0,1]", "noise=asymmetric_40"], "flips nothing among dataset.classes=[0, 1]"),
    (["dataset=multi_mnist", "loss=bce_logits", "dataset.max_digits=5"], "do not fit a 2x2 grid"),
    (["dataset=multi_mnist", "loss=bce_logits", "dataset.min_digits=3", "dataset.max_digits=2"],
     "dataset.max_digits=2 must be >= dataset.min_digits=3"),
    (["dataset=multi_mnist", "loss=bce_logits", "dataset.n_train=0"], "dataset.n_train=0"),
    (["dataset=multilabel", "loss=bce_logits", "model=cnn"], "model=cnn needs images; dataset=multilabel"),
    (["model=cnn", "model.channels=[0,16]"], "model.channels=[0, 16]"),
    (["trainer.loss_scaling=dynamic"], "trainer.loss_scaling=dynamic is refused with trainer.precision=32"),
])
def test_bad_condition_knobs_are_refused_with_a_message(overrides, message):
    with pytest.raises(UserError) as caught:
        validate(compose_config(*overrides))
    assert message in str(caught.value)


def test_cli_refuses_a_bad_noise_rate_before_touching_data(tmp_path):
    result = run_cli("dataset.label_noise=1.5", "dataset.classes=[1,1]", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output
    assert "dataset.label_noise=1.5" in output and "repeated classes [1]" in output
    assert not (tmp_path / "data").exists()
