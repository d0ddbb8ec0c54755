"""Training-stability signals: divergence stops or skips, steps.parquet carries the signals."""

import dataclasses
import json

import pandas as pd
import pytest
from torch import nn

from lossbench.errors import UserError
from lossbench.losses import LOSSES
from lossbench.runs.results import RunFiles
from lossbench.runs.run import _status_after_skips, execute, usable_cores
from lossbench.training.train import Outcome

from conftest import compose_config, run_sweep, sweep_grid

SIGNALS = {"step", "epoch", "loss_value", "grad_norm", "max_abs_logit", "saturated_frac",
           "nonfinite_loss", "nonfinite_grad", "skipped_steps"}
# float16 sigmoid outputs saturate at logit scale 100, and BCELoss's backward then divides 0 by 0.
STRESS = ["loss=bce", "trainer.precision=16", "model.logit_scale=100", "trainer.epochs=1",
          "dataset.source=sample", "trainer.log_every=10"]


def run(tmp_path, *overrides):
    cfg = compose_config(*overrides)
    summary = execute(cfg, tmp_path, threads=usable_cores(), overrides=list(overrides))
    return summary, pd.read_parquet(tmp_path / "steps.parquet")


def test_steps_parquet_has_the_signal_columns(tmp_path):
    summary, steps = run(tmp_path, "loss=bce_logits", "trainer.epochs=1", "dataset.source=sample", "trainer.log_every=20")
    assert summary["status"] == "completed"
    assert SIGNALS <= set(steps)
    assert steps["step"].tolist() == [20, 40, 57]  # every log_every steps, and each epoch's last (3,600 / 64)
    assert (steps["grad_norm"] > 0).all() and (steps["nonfinite_grad"] == 0).all()


def test_a_nonfinite_gradient_stops_the_run_as_diverged(tmp_path):
    summary, steps = run(tmp_path, *STRESS)
    assert summary["status"] == "diverged"
    assert "non-finite gradient at step 1" in summary["error"]
    assert steps["nonfinite_grad"].iloc[-1] >= 1
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["status"] == "diverged" and on_disk["error"] == summary["error"]


def test_divergence_records_its_first_nonfinite_step_and_kind(tmp_path):
    run(tmp_path, *STRESS)
    summary = json.loads((tmp_path / "summary.json").read_text())
    # BCELoss's float16 backward divides 0 by 0: the gradient goes first, the loss stays finite
    assert (summary["first_nonfinite_step"], summary["first_nonfinite"]) == (1, "gradient")


def test_a_healthy_run_records_no_nonfinite_step(tmp_path):
    run(tmp_path, "loss=bce_logits", "trainer.epochs=1", "dataset.source=sample")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["first_nonfinite_step"] is None and summary["first_nonfinite"] is None
    assert summary["lossbench_commit"] and summary["finished_at"].endswith("+00:00")


def test_resume_skips_a_diverged_run_and_reruns_a_failed_one(tmp_path):
    cfg = compose_config(*STRESS)
    assert execute(cfg, tmp_path, threads=usable_cores(), overrides=[])["status"] == "diverged"
    written = (tmp_path / "summary.json").stat().st_mtime_ns
    assert execute(cfg, tmp_path, threads=usable_cores(), overrides=[])["status"] == "skipped"
    assert (tmp_path / "summary.json").stat().st_mtime_ns == written
    summary = json.loads((tmp_path / "summary.json").read_text())
    (tmp_path / "summary.json").write_text(json.dumps({**summary, "status": "failed"}))
    assert execute(cfg, tmp_path, threads=usable_cores(), overrides=[])["status"] == "diverged"  # ran again


def test_skip_counts_nonfinite_steps_and_a_run_that_skipped_every_step_diverged(tmp_path):
    summary, steps = run(tmp_path, *STRESS, "trainer.on_nonfinite=skip")
    assert summary["skipped_steps"] == steps["skipped_steps"].iloc[-1] == steps["step"].iloc[-1]
    assert summary["skipped_steps"] == steps["nonfinite_grad"].iloc[-1]
    assert summary["status"] == "diverged" and summary["untrained_epochs"] == [1]
    assert f"every one of the {summary['skipped_steps']} steps" in summary["error"]


def step_rows(*epochs: tuple[int, int, int]) -> list[dict]:
    """Logged step rows (epoch, step, cumulative skipped steps)."""
    return [{"epoch": epoch, "step": step, "skipped_steps": skipped} for epoch, step, skipped in epochs]


@pytest.mark.parametrize("rows, through, untrained", [
    (step_rows((1, 5, 0), (1, 10, 0), (2, 20, 10), (3, 30, 12)), 3, [2]),
    (step_rows((1, 10, 10), (2, 20, 20)), 2, [1, 2]),
    (step_rows((1, 10, 9), (2, 20, 18)), 2, []),
    (step_rows((1, 10, 0), (2, 20, 10)), 1, []),  # epoch 2 did not complete
])
def test_untrained_epochs_are_the_epochs_whose_every_step_was_skipped(tmp_path, rows, through, untrained):
    files = RunFiles(tmp_path, {})
    files.steps = rows
    assert files.untrained_epochs(through) == untrained


def test_a_run_that_trained_in_some_epochs_stays_completed_with_a_warning(caplog):
    outcome = Outcome("completed", 3, None, skipped_steps=12)
    assert _status_after_skips(outcome, [2]) == ("completed", None)
    assert "every step of epoch 2" in caplog.text
    assert _status_after_skips(outcome, [1, 2, 3])[0] == "diverged"


@pytest.mark.slow
def test_a_batched_seed_that_skipped_every_step_is_recorded_diverged(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_sweep("smoke", sweep, "hydra/launcher=batched", "loss=bce_logits", "seed=0,1",
                       "trainer.on_nonfinite=skip", "model.logit_scale=3e38", "trainer.threads=1")
    assert result.returncode == 0, result.stdout + result.stderr
    summaries = [json.loads(p.read_text()) for p in sweep.glob("*/summary.json")]
    assert len(summaries) == 2
    assert all(s["status"] == "diverged" and s["untrained_epochs"] == [1] for s in summaries)


def test_bce_with_logits_trains_through_the_same_stress(tmp_path):
    summary, steps = run(tmp_path, *STRESS[1:], "loss=bce_logits")
    assert summary["status"] == "completed" and summary["test_acc"] > 0.8
    assert steps["nonfinite_grad"].iloc[-1] == 0


@pytest.mark.parametrize("preset, dataset, losses, n_runs", [
    ("stability", "mnist", ["ce", "nll", "bce", "bce_logits"], 216),
    ("stability_multi_label", "multilabel", ["bce", "bce_logits"], 108),
    ("stability_smoke", "mnist", ["bce", "bce_logits"], 8),
])
def test_stability_presets_compose(preset, dataset, losses, n_runs):
    cfg = compose_config(f"experiment={preset}")
    assert cfg.experiment == preset and cfg.dataset.name == dataset
    grid = sweep_grid(preset)
    assert grid["loss"] == losses
    assert len(grid.get("seed", ["0"])) * len(grid["trainer.precision"]) * len(grid["model.logit_scale"]) \
        * len(grid.get("optim.lr", ["x"])) * len(losses) == n_runs
    if preset != "stability_smoke":
        assert grid["trainer.precision"] == ["32", "bf16", "16"] and grid["model.logit_scale"] == ["1", "10", "100"]
        assert [float(v) for v in grid["optim.lr"]] == [1e-3, 1e-1] and len(grid["seed"]) >= 3


# torch's own message (aten/src/ATen/autocast_mode.cpp), raised by CUDA autocast; no GPU here.
CUDA_REFUSAL = ("torch.nn.functional.binary_cross_entropy and torch.nn.BCELoss are unsafe to autocast.\n"
                "Many models use a sigmoid layer right before the binary cross entropy layer.")


def test_cuda_autocast_refusing_bce_is_recorded_as_the_runs_result(tmp_path, monkeypatch):
    class RefusedUnderAutocast(nn.BCELoss):
        def forward(self, input, target):
            raise RuntimeError(CUDA_REFUSAL)

    monkeypatch.setitem(LOSSES, "bce", dataclasses.replace(LOSSES["bce"], build=lambda params, labels: (RefusedUnderAutocast(), {})))
    cfg = compose_config("loss=bce", "trainer.precision=16", "trainer.epochs=1", "dataset.source=sample")
    with pytest.raises(UserError, match="autocast refused this loss"):
        execute(cfg, tmp_path, threads=usable_cores(), overrides=[])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and "unsafe to autocast" in summary["error"]


def _observed(scaled: bool, losses: dict, grads: dict, steps: int):
    """StabilityWatch fed `steps` steps of loss 1 and gradient norm 1, except the given steps' values."""
    import torch

    from lossbench.training.train import StabilityWatch

    cpu = torch.device("cpu")
    signals = StabilityWatch(LOSSES["ce"], cpu, torch.amp.GradScaler("cpu", enabled=scaled))
    bad_now = []
    for step in range(1, steps + 1):
        signals.observe(step, torch.tensor(losses.get(step, 1.0)), torch.tensor(grads.get(step, 1.0)))
        bad_now.append(bool(signals.bad_now()))
    return signals, bad_now


def test_nonfinite_steps_are_counted_across_device_windows():
    """Steps are tallied in windows on the device, read only when a row is logged: a run that logs
    rarely still counts every non-finite step and names the first one."""
    import torch

    from lossbench.training.train import StabilityWatch

    nan, inf = float("nan"), float("inf")
    steps = 2 * StabilityWatch.WINDOW + 10
    signals, bad_now = _observed(False, {300: nan, 520: inf}, {300: nan, 400: inf}, steps)
    assert signals.first_nonfinite_step() == 300
    assert (int(signals.bad_loss), int(signals.bad_grad)) == (2, 2)
    assert [i + 1 for i, bad in enumerate(bad_now) if bad] == [300, 400, 520]
    signals.log(steps, 1, torch.tensor(1.0), torch.tensor(1.0), torch.zeros(4, 10))
    row = signals.flush()[0]
    assert (row["nonfinite_loss"], row["nonfinite_grad"], row["scaler_skipped_steps"]) == (2, 2, 0)


def test_under_loss_scaling_a_nonfinite_gradient_alone_is_a_scaler_skip():
    signals, bad_now = _observed(True, {7: float("nan")}, {5: float("inf"), 7: float("inf")}, 10)
    assert signals.first_nonfinite_step() == 7
    assert (int(signals.bad_loss), int(signals.bad_grad), int(signals.scaler_skipped)) == (1, 0, 2)
    assert [i + 1 for i, bad in enumerate(bad_now) if bad] == [7]


def test_the_logged_gradient_norm_is_get_total_norms_bit_for_bit():
    import torch

    from lossbench.training.model import MLP
    from lossbench.training.train import total_norm

    torch.manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        model = MLP(784, [64], 10, 0.0, 1.0).to(dtype)
        model(torch.randn(32, 784, dtype=dtype)).pow(2).sum().backward()
        grads = [p.grad for p in model.parameters()]
        assert torch.equal(total_norm(grads), torch.nn.utils.get_total_norm(grads))
