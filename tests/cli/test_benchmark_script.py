"""experiments/benchmark.py reads what a run records: its sweep lines split a sweep's wall into
training steps (epoch_time_s), evaluation after each epoch (eval_time_s) and the rest, from each
run's summary.json. Timings are the benchmark's business, never a test's: this checks the
bookkeeping, not a speed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "benchmark.py"


def load():
    spec = importlib.util.spec_from_file_location("benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_splits_a_runs_wall_into_steps_evaluation_and_the_rest():
    benchmark = load()
    wall, (summary,), rss = benchmark.lossbench_cli("trainer.epochs=2", "dataset.source=sample", "trainer.threads=1")
    training, evaluation = benchmark.training_s(summary), benchmark.evaluation_s(summary)
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    assert training > 0 and evaluation > 0 and training + evaluation < wall
    assert rss > 0
