"""The condition presets: each states its run count truthfully and runs at smoke size. The loss
lists are overridden with losses every branch has (ce, bce_logits) and the sizes made tiny."""

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_sweep, sweep_grid

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"  # the checkout's YAML, read as text

PRESETS = ("noise", "imbalance", "multi_label_images", "precision")
TINY = ("seed=0", "trainer.epochs=1", "dataset.source=sample")


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_header_states_its_run_count(preset):
    header = (Path(CONF_DIR) / "experiment" / f"{preset}.yaml").read_text()
    stated = int(re.search(r"= (\d+) runs", header).group(1))
    assert stated == math.prod(len(values) for values in sweep_grid(preset).values())


def summaries(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))]


def completed_sweep(preset: str, sweep: Path, *overrides: str) -> list[dict]:
    result = run_sweep(preset, sweep, *TINY, *overrides)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = summaries(sweep)
    assert runs and all(run["status"] == "completed" for run in runs)
    return runs


@pytest.mark.slow
def test_noise_preset_records_the_realised_rate_and_the_memorisation_curve(tmp_path):
    runs = completed_sweep("noise", tmp_path / "sweep", "loss=ce", "noise=symmetric_40,asymmetric_40",
                           "trainer.epochs=2")
    # symmetric: exactly 0.4 of the training split it is drawn in; the 3,600 trained on after the
    # val split is carved (stratified by the noisy labels) keep about that
    assert sorted(run["label_noise_realised"] for run in runs)[1] == pytest.approx(0.4, abs=0.01)
    train = pd.read_parquet(tmp_path / "sweep" / "epochs.parquet").query("split == 'train'")
    assert len(train) == 4 and train[["flipped_acc_noisy", "flipped_acc_true"]].notna().all().all()


@pytest.mark.slow
def test_imbalance_preset_writes_class_balance_metrics_and_per_class_tables(tmp_path):
    runs = completed_sweep("imbalance", tmp_path / "sweep", "loss=ce,bce_logits", "dataset.imbalance_ratio=100")
    assert all(run["train_class_counts"][-1] == 4 and 0 <= run["test_rare_recall"] <= 1 for run in runs)
    per_class = pd.read_parquet(tmp_path / "sweep" / "per_class.parquet")
    assert len(per_class) == 2 * 10 and set(per_class["support"]) == {100}
    assert per_class.groupby("run")["train_count"].sum().tolist() == [889, 889]  # 988, less 99 for val


@pytest.mark.slow
def test_multi_label_images_preset_records_label_frequencies(tmp_path):
    (run,) = completed_sweep("multi_label_images", tmp_path / "sweep", "loss=bce_logits",
                             "dataset.n_train=200", "dataset.n_test=100")
    assert run["dataset"] == "multi_mnist" and len(run["train_positive_rate"]) == 10
    assert 1 <= run["label_cardinality"] <= 4 and math.isfinite(run["test_map"])
    per_label = pd.read_parquet(tmp_path / "sweep" / "per_class.parquet")
    assert per_label["ap"].between(0, 1).all()


@pytest.mark.slow
def test_precision_preset_dynamic_scaling_skips_overflowing_float16_steps_and_lowers_the_scale(tmp_path):
    runs = completed_sweep("precision", tmp_path / "sweep", "loss=ce", "trainer.precision=16",
                           "trainer.loss_scaling=none,dynamic", "model.logit_scale=100", "optim.lr=1e-3")
    by_scaling = {run["config"]["trainer"]["loss_scaling"]: run for run in runs}
    assert by_scaling["none"]["scaler_skipped_steps"] == 0
    assert by_scaling["dynamic"]["scaler_skipped_steps"] > 0
    steps = pd.read_parquet(tmp_path / "sweep" / "steps.parquet")
    dynamic = steps[steps["loss_scale"].notna()]
    assert (dynamic["loss_scale"] < 2.0 ** 16).all()  # GradScaler starts at 2^16 and halved it
    assert (dynamic["nonfinite_grad"] == 0).all()  # the scaler's skips are not divergence
