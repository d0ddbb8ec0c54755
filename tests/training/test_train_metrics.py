"""The train rows (trainer.train_metrics): `running` tallies each example once, at the step that
trained on it, without a second pass; `full` evaluates the whole training split at the epoch's end."""

import dataclasses

import numpy as np
import pytest
import torch

from conftest import compose_config
from lossbench.data import load_dataset
from lossbench.losses import LOSSES, Task, TrainingLabels, head_width, loss_params
from lossbench.training.model import build_model
from lossbench.training.train import Run, RunningTally, train

CPU = torch.device("cpu")


@pytest.mark.parametrize("loss", ["ce", "bce_logits"])
def test_running_accuracy_is_the_mean_of_each_batchs_correctness(loss):
    rng = np.random.default_rng(0)
    tally = RunningTally(LOSSES[loss], Task.single_label, CPU)
    correct, losses, sizes = [], [], []
    for size in (64, 64, 17):
        logits, labels = rng.normal(size=(size, 5)), rng.integers(0, 5, size)
        value = float(rng.random())
        tally.add(torch.tensor(value, dtype=torch.float64), torch.tensor(logits), torch.tensor(labels))
        correct.append(logits.argmax(axis=1) == labels)
        losses.append(value * size)
        sizes.append(size)
    (row,) = tally.rows()
    assert row["acc"] == np.concatenate(correct).mean()
    assert row["loss_value"] == pytest.approx(sum(losses) / sum(sizes), rel=1e-12)


def test_a_stacks_running_tallies_are_each_seeds_own():
    rng = np.random.default_rng(1)
    stacked = RunningTally(LOSSES["ce"], Task.multi_label, CPU, (3,))
    singles = [RunningTally(LOSSES["ce"], Task.multi_label, CPU) for _ in range(3)]
    for _ in range(4):
        logits, labels = torch.tensor(rng.normal(size=(3, 32, 4))), torch.tensor(rng.integers(0, 2, (3, 32, 4)))
        losses = torch.tensor(rng.random(3))
        stacked.add(losses, logits, labels)
        for k, single in enumerate(singles):
            single.add(losses[k], logits[k], labels[k])
    assert stacked.rows() == [single.rows()[0] for single in singles]


class Recorded:
    def __init__(self):
        self.rows = []

    def on_epoch(self, rows, calibration, steps, per_class=(), predictions=None):
        self.rows += rows


def train_rows(train_metrics: str, label_noise: float) -> list[dict]:
    """Two epochs of SGD at learning rate 0 (torch allows it; the config refuses it): the weights
    never move, so every step scores its examples with the weights a full pass uses."""
    cfg = compose_config("dataset.source=sample", "model.hidden=[16]", "trainer.epochs=2",
                         f"trainer.train_metrics={train_metrics}", f"dataset.label_noise={label_noise}")
    data = load_dataset(cfg.dataset)
    data = dataclasses.replace(data, x_train=data.x_train[:600], y_train=data.y_train[:600],
                               y_train_clean=None if data.y_train_clean is None else data.y_train_clean[:600])
    spec = LOSSES["ce"]
    width = head_width(spec, data.task, data.n_classes)
    criterion, _ = spec.build(loss_params(cfg.loss), TrainingLabels(data.y_train, data.n_classes, width))
    torch.manual_seed(0)
    model = build_model(cfg.model, data.n_features, width)
    recorded = Recorded()
    train(Run(model, torch.optim.SGD(model.parameters(), lr=0.0), torch.Generator().manual_seed(0), recorded.on_epoch,
              spec, criterion, data, cfg.trainer, CPU))
    return [row for row in recorded.rows if row["split"] == "train"]


def test_running_train_rows_equal_a_full_pass_when_the_weights_do_not_move():
    running, full = train_rows("running", 0.4), train_rows("full", 0.4)
    assert len(running) == len(full) == 2
    for r, f in zip(running, full):
        assert r["acc"] == f["acc"]
        assert r["loss_value"] == pytest.approx(f["loss_value"], rel=1e-5)
        assert r["flipped_acc_noisy"] == f["flipped_acc_noisy"] and r["flipped_acc_true"] == f["flipped_acc_true"]
        assert "nll" in f and "nll" not in r  # the full pass has every metric, the tally two
