"""The validation protocol's run side: a val split carved from the training split (stratified,
disjoint, fixed by the dataset seed, re-drawn by split_seed), val rows every epoch, temperature
scaling fitted on the val logits, equal-mass and classwise ECE, early stopping on the val
metric, and per-example test predictions that agree with the metrics."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.calibration import calibration_curve

import lossbench.data
from lossbench.training import metrics
from lossbench.config import validate
from lossbench.data import load_dataset
from lossbench.errors import DataError, UserError
from lossbench.losses import LOSSES
from lossbench.training.temperature import fit_temperature, val_nll

from conftest import SMALL, compose_config, run_cli
from idx_files import write_mnist_idx


def fresh(*overrides):
    """A dataset loaded anew (not the process's cached last one)."""
    lossbench.data._last.clear()
    return load_dataset(compose_config(*overrides).dataset)


def rows_of(x: torch.Tensor) -> set[bytes]:
    return {row.tobytes() for row in x.numpy()}


# --- the split ------------------------------------------------------------------------------


def test_val_split_is_stratified_and_disjoint_from_train_and_test():
    data = fresh("dataset.source=sample")
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (3600, 400, 1000)
    assert torch.equal(torch.bincount(data.y_val), torch.full((10,), 40))  # 500 per class, 10% each
    assert torch.equal(torch.bincount(data.y_train), torch.full((10,), 360))
    val = rows_of(data.x_val)
    assert len(val) == 400 and not val & rows_of(data.x_train) and not val & rows_of(data.x_test)


def test_val_split_is_fixed_by_the_dataset_seed_and_redrawn_by_split_seed():
    data = fresh("dataset.source=sample")
    assert torch.equal(data.x_val, fresh("dataset.source=sample").x_val)
    assert not torch.equal(data.x_val, fresh("dataset.source=sample", "dataset.seed=1").x_val)
    redrawn = fresh("dataset.source=sample", "dataset.split_seed=1")
    assert not torch.equal(data.x_val, redrawn.x_val)
    assert not torch.equal(data.x_test, redrawn.x_test)  # the sample's test split is re-drawn too
    assert torch.equal(torch.bincount(redrawn.y_test), torch.full((10,), 100))  # still stratified
    assert torch.equal(redrawn.x_val, fresh("dataset.source=sample", "dataset.split_seed=1").x_val)


def test_split_seed_keeps_the_official_test_split_of_full_data(tmp_path):
    write_mnist_idx(tmp_path, gz=False)
    fixed = fresh("dataset.source=full", f"dataset.root={tmp_path}")
    redrawn = fresh("dataset.source=full", f"dataset.root={tmp_path}", "dataset.split_seed=1")
    assert torch.equal(fixed.x_test, redrawn.x_test)
    assert not torch.equal(fixed.x_val, redrawn.x_val)


def test_val_split_has_the_noisy_training_labels():
    """Carved after the conditions: each val image keeps the (noisy) label it had in the pool."""
    pool = fresh("dataset.source=sample", "dataset.label_noise=0.4", "dataset.val_fraction=0")
    data = fresh("dataset.source=sample", "dataset.label_noise=0.4")
    noisy = {row.tobytes(): int(y) for row, y in zip(pool.x_train.numpy(), pool.y_train)}
    clean = {row.tobytes(): int(y) for row, y in zip(pool.x_train.numpy(), pool.y_train_clean)}
    keys = [row.tobytes() for row in data.x_val.numpy()]
    assert [noisy[k] for k in keys] == data.y_val.tolist()
    flipped = np.mean([noisy[k] != clean[k] for k in keys])
    assert 0.3 < flipped < 0.5
    assert len(data.y_train_clean) == len(data.y_train) == 3600


def test_multi_label_val_split_is_random_and_disjoint():
    data = fresh("dataset=multilabel", "loss=bce_logits")
    assert (len(data.x_train), len(data.x_val)) == (3600, 400)
    assert data.y_val.shape == (400, 10)
    assert not rows_of(data.x_val) & rows_of(data.x_train)


def test_a_class_too_rare_to_stratify_is_a_data_error():
    with pytest.raises(DataError, match="dataset.val_fraction=0.1 cannot split"):
        fresh("dataset.source=sample", "dataset.imbalance_ratio=400")  # the last class keeps 1 example


def test_rare_recall_counts_the_rare_classes_a_small_split_holds():
    """Classes 1 and 2 are rare; this split has no example of class 2: its recall is not a 0."""
    probs = np.eye(3)[[0, 1, 0]]  # predicts 0, 1, 0
    values = metrics.class_balance(probs, np.array([0, 1, 1]), rare=np.array([1, 2]))
    assert values["rare_recall"] == pytest.approx(0.5)
    assert np.isnan(metrics.class_balance(probs, np.array([0, 0, 0]), rare=np.array([1, 2]))["rare_recall"])


@pytest.mark.parametrize("overrides, message", [
    (["dataset.val_fraction=1"], "dataset.val_fraction=1.0 must be in [0, 1)"),
    (["dataset.val_fraction=-0.1"], "dataset.val_fraction=-0.1 must be in [0, 1)"),
    (["dataset.split_seed=-1"], "dataset.split_seed=-1 is not accepted"),
    (["trainer.early_stop_patience=0"], "trainer.early_stop_patience=0 must be an integer >= 1"),
    (["trainer.early_stop_patience=2", "dataset.val_fraction=0"], "holds out no validation split"),
    (["trainer.select_on=balanced_acc", "dataset.val_fraction=0"],
     "trainer.select_on=balanced_acc selects the epoch on the validation split, and dataset.val_fraction=0 holds out none"),
])
def test_bad_split_and_early_stopping_values_are_refused(overrides, message):
    with pytest.raises(UserError) as caught:
        validate(compose_config(*overrides))
    assert message in str(caught.value)


@pytest.mark.parametrize("overrides", [["trainer.select_on=balanced_acc"], ["experiment=imbalance"],
                                       ["experiment=apl_mnist"]])
def test_selection_and_the_presets_validate_with_their_validation_split(overrides):
    validate(compose_config("dataset.source=sample", *overrides))


# --- calibration ----------------------------------------------------------------------------


def test_temperature_scaling_recovers_a_known_temperature():
    """Labels drawn from softmax(z), logits handed over as 3z: the fitted T is about 3, and it
    lowers the NLL it was fitted on."""
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 10, generator=generator, dtype=torch.float64) * 2
    labels = torch.multinomial(torch.softmax(z, dim=1), 1, generator=generator).flatten()
    spec = LOSSES["ce"]
    temperature = fit_temperature(spec, 3 * z, labels)
    assert temperature == pytest.approx(3, rel=0.05)
    assert val_nll(spec, 3 * z, labels, temperature) < val_nll(spec, 3 * z, labels, 1.0) - 0.1


def test_equal_mass_ece_on_a_hand_computed_case():
    """Two bins. Equal mass: {0.55, 0.6} (confidence 0.575, accuracy 0.5) and {0.9, 0.95}
    (0.925, 1.0): ECE = 0.5 * 0.075 + 0.5 * 0.075 = 0.075. Equal width puts all four in (0.5, 1]:
    confidence 0.75, accuracy 0.75, ECE 0."""
    confidence, correct = np.array([0.55, 0.6, 0.9, 0.95]), np.array([0, 1, 1, 1])
    equal_mass = metrics.reliability_table(confidence, correct, metrics.equal_mass_edges(confidence, 2))
    equal_width = metrics.reliability_table(confidence, correct, metrics.equal_width_edges(2))
    assert metrics.expected_calibration_error(equal_mass) == pytest.approx(0.075)
    assert [row["count"] for row in equal_mass] == [2, 2]
    assert metrics.expected_calibration_error(equal_width) == pytest.approx(0.0)


def test_classwise_ece_on_a_hand_computed_case():
    """Class 0: p = (0.8, 0.3), both labelled 0: |1 - 0.8| / 2 + |1 - 0.3| / 2 = 0.45; class 1:
    p = (0.2, 0.7), neither labelled 1: 0.2 / 2 + 0.7 / 2 = 0.45. Mean 0.45."""
    probs = np.array([[0.8, 0.2], [0.3, 0.7]])
    assert metrics.classwise_ece(probs, np.array([0, 0])) == pytest.approx(0.45)



def _softmax_rows(rng, n: int, c: int, on_edges: bool) -> np.ndarray:
    z = rng.normal(size=(n, c)) * rng.uniform(0.1, 20)
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return np.round(probs * 15) / 15 if on_edges else probs  # on_edges: many values on bin edges


@pytest.mark.parametrize("seed", range(6))
def test_classwise_ece_binned_at_once_is_the_per_class_definition_to_the_bit(seed):
    """All classes binned in one pass give, bit for bit, the mean of each class's own
    reliability table's ECE (the definition), with empty bins and values on the edges."""
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(1, 2000)), int(rng.integers(2, 12))
    probs, labels = _softmax_rows(rng, n, c, on_edges=seed % 2 == 0), rng.integers(0, c, n)
    edges = metrics.equal_width_edges()
    per_class = [metrics.expected_calibration_error(metrics.reliability_table(probs[:, k], labels == k, edges))
                 for k in range(c)]
    assert metrics.classwise_ece(probs, labels) == float(np.mean(per_class))


@pytest.mark.parametrize("seed", range(4))
def test_the_scaled_metrics_trio_is_single_labels_to_the_bit(seed):
    rng = np.random.default_rng(seed)
    probs = _softmax_rows(rng, 500, 10, on_edges=seed % 2 == 0).astype(np.float32)
    labels = rng.integers(0, 10, 500)
    values, _ = metrics.single_label(probs, labels)
    assert metrics.nll_ece_brier(probs, labels) == (values["nll"], values["ece"], values["brier"])
    probs[0, 0] = np.nan
    assert all(np.isnan(metrics.nll_ece_brier(probs, labels)))

@pytest.mark.parametrize("scheme, strategy", [("equal_width", "uniform"), ("equal_mass", "quantile")])
def test_reliability_bins_are_sklearns_calibration_curve(scheme, strategy):
    rng = np.random.default_rng(0)
    confidence = rng.dirichlet(np.full(10, 0.3), size=1000).max(axis=1)
    correct = rng.random(1000) < confidence
    table = [row for row in metrics.calibration_tables(confidence, correct) if row["scheme"] == scheme]
    assert sum(row["count"] for row in table) == 1000
    nonempty = [row for row in table if row["count"]]
    accuracy, mean_confidence = calibration_curve(correct, confidence, n_bins=15, strategy=strategy)
    np.testing.assert_allclose([row["accuracy"] for row in nonempty], accuracy)
    np.testing.assert_allclose([row["confidence"] for row in nonempty], mean_confidence)


# --- runs -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def early_stopped(tmp_path_factory):
    """A run stopped by early stopping (patience 1 of 10 epochs) on the MNIST sample."""
    cwd = tmp_path_factory.mktemp("early")
    result = run_cli("dataset.source=sample", *SMALL, "trainer.epochs=10", "trainer.early_stop_patience=1",
                     "hydra.run.dir=run", cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return cwd / "run"


@pytest.fixture(scope="module")
def multi_label_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("multi")
    result = run_cli("dataset=multilabel", "loss=bce_logits", *SMALL, "trainer.epochs=2", "hydra.run.dir=run",
                     cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return cwd / "run"


def test_early_stopping_stops_when_val_acc_has_not_improved_and_records_it(early_stopped):
    summary = json.loads((early_stopped / "summary.json").read_text())
    metrics_table = pd.read_parquet(early_stopped / "metrics.parquet")
    assert summary["status"] == "completed" and summary["stopped_early"] is True
    assert summary["error"] is None
    epochs = summary["epochs_completed"]
    assert epochs < 10 and metrics_table["epoch"].max() == epochs
    val = metrics_table[metrics_table["split"] == "val"].set_index("epoch")["acc"]
    assert summary["selected_epoch"] == epochs - 1  # patience 1: the last epoch did not improve
    assert val[epochs] <= val[epochs - 1] and val[epochs - 1] == val.max()
    assert "stopped early after epoch" in (early_stopped / "lossbench.log").read_text()


def test_every_epoch_has_train_val_and_test_rows_with_the_tests_metric_columns(early_stopped):
    table = pd.read_parquet(early_stopped / "metrics.parquet")
    assert (table.groupby("epoch")["split"].apply(list) == pd.Series([["train", "val", "test"]] * len(
        table["epoch"].unique()), index=sorted(table["epoch"].unique()))).all()
    val, test = table[table["split"] == "val"], table[table["split"] == "test"]
    metric_columns = ["acc", "nll", "ece", "brier", "ece_adaptive", "ece_classwise", "balanced_acc", "rare_recall"]
    assert val[metric_columns].notna().all().all() and test[metric_columns].notna().all().all()
    assert test["temperature"].gt(0).all() and val["temperature"].isna().all()
    assert (test["nll_ts"] <= test["nll"] + 0.05).all()  # fitted on val, so not guaranteed on test
    summary = json.loads((early_stopped / "summary.json").read_text())
    assert summary["n_val"] == 400 and summary["n_train"] == 3600


def test_calibration_table_has_both_binnings_with_counts(early_stopped):
    table = pd.read_parquet(early_stopped / "calibration.parquet")
    assert table.groupby("scheme")["count"].sum().to_dict() == {"equal_mass": 1000, "equal_width": 1000}
    assert (table.groupby("scheme")["bin"].count() == 15).all()


def test_predictions_agree_with_the_test_metrics_at_the_last_and_the_selected_epoch(early_stopped):
    predictions = pd.read_parquet(early_stopped / "predictions.parquet")
    summary = json.loads((early_stopped / "summary.json").read_text())
    table = pd.read_parquet(early_stopped / "metrics.parquet")
    test_acc = table[table["split"] == "test"].set_index("epoch")["acc"]
    views = {view: rows for view, rows in predictions.groupby("view")}
    assert set(views) == {"last", "selected"}
    last, selected = views["last"], views["selected"]
    assert (last["epoch"] == summary["epochs_completed"]).all() and (selected["epoch"] == summary["selected_epoch"]).all()
    assert last["example"].tolist() == list(range(1000)) == selected["example"].tolist()
    assert last["correct"].mean() == pytest.approx(test_acc[summary["epochs_completed"]])
    assert selected["correct"].mean() == pytest.approx(test_acc[summary["selected_epoch"]])
    assert last["label"].tolist() == fresh("dataset.source=sample").y_test.tolist()
    probabilities = last[[f"p_{k}" for k in range(10)]]
    assert (probabilities.dtypes == np.float16).all()
    assert (probabilities.to_numpy().argmax(axis=1) == last["predicted"]).mean() > 0.99  # float16 ties aside


def test_multi_label_runs_have_val_rows_and_predictions_but_no_temperature(multi_label_run):
    table = pd.read_parquet(multi_label_run / "metrics.parquet")
    assert set(table["split"]) == {"train", "val", "test"}
    assert "temperature" not in table.columns and "ece_adaptive" not in table.columns
    summary = json.loads((multi_label_run / "summary.json").read_text())
    val_map = table[table["split"] == "val"]["map"].tolist()
    assert summary["selected_epoch"] == 1 + int(np.argmax(val_map))
    predictions = pd.read_parquet(multi_label_run / "predictions.parquet")
    last = predictions[predictions["view"] == "last"]
    subset_acc = table[(table["split"] == "test") & (table["epoch"] == 2)]["subset_acc"].item()
    assert last["correct"].mean() == pytest.approx(subset_acc)  # correct: every label right
    assert "label" not in predictions.columns


def test_collect_gathers_predictions_with_a_run_column(smoke_sweep):
    predictions = pd.read_parquet(smoke_sweep.dir / "predictions.parquet")
    summary = pd.read_parquet(smoke_sweep.dir / "summary.parquet")
    assert set(predictions["run"]) == set(summary["run"])
    assert predictions.groupby(["run", "view"]).size().eq(1000).all()
    assert set(predictions["view"]) == {"last", "selected"}
