"""experiments/reference.py: its plan names every study the report compares and refuses a step
it does not have (the study itself takes an hour; it is not run here)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lossbench.training.device import seed_launcher

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "reference.py"


def load():
    spec = importlib.util.spec_from_file_location("reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_plan_covers_every_study_and_full_fashion_only_with_its_files():
    reference = load()
    names = [s.name for s in reference.steps(None)]
    assert names == ["compare_losses", "compare_losses_multi_label", "tuned_single_label", "noise",
                     "imbalance", "multi_label_images", "binary", "stability",
                     "stability_multi_label", "precision"]
    stress = [s.name for s in reference.steps(None) if s.stress]
    assert stress == ["stability", "stability_multi_label", "precision"]
    [fashion] = [s for s in reference.steps("/data/fmnist") if s.name == "fashion_full"]
    assert "dataset=fashion_mnist" in fashion.overrides and "dataset.source=full" in fashion.overrides
    assert any(o.startswith("dataset.root=") and o.endswith("fmnist") for o in fashion.overrides)


def test_an_unknown_step_is_refused_with_the_steps_it_has(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--only", "noise", "nosie",
                           "--out", str(tmp_path / "out"), "--sweeps", str(tmp_path / "sweeps")],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--only nosie: no such step; the steps are compare_losses" in done.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "sweeps").exists()


def test_a_seed_count_under_one_is_refused(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--study-seeds", "0", "--only", "binary",
                           "--out", str(tmp_path / "out"), "--sweeps", str(tmp_path / "sweeps")],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--study-seeds 0: needs at least 1 seed" in done.stderr
    assert not (tmp_path / "sweeps").exists()


def test_a_failing_step_stops_with_one_line_not_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--only", "binary", "--override",
                           "loss=nosuchloss", "--out", str(tmp_path / "out"),
                           "--sweeps", str(tmp_path / "sweeps")],
                          capture_output=True, text=True, cwd=ROOT, timeout=240)
    assert done.returncode == 1 and "CalledProcessError" not in done.stderr
    # the default launcher is the device's: batched on CUDA, basic here on the CPU
    assert f"binary ({seed_launcher()}, seed=range(5)): failed with exit code" in done.stderr
    assert "resumes where it stopped" in done.stderr
    assert "nosuchloss" in done.stdout + done.stderr  # the sweep's own message says what was wrong
    assert not (tmp_path / "out" / "report.md").exists()


@pytest.mark.slow
def test_the_apl_script_runs_its_preset_keeps_the_tables_and_reports_versus_published(tmp_path):
    out, sweep = tmp_path / "apl", tmp_path / "sweep"
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "apl_mnist.py"), "--override",
                           "trainer.epochs=1", "seed=0", "loss=ce,gce", "trainer.threads=1",
                           "--out", str(out), "--sweep", str(sweep)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = pd.read_parquet(out / "data" / "summary.parquet")
    assert len(summary) == 6 and set(summary["cfg.dataset.label_noise"]) == {0.0, 0.4, 0.8}
    # the committed predictions keep only which test example each run got right
    assert list(pd.read_parquet(out / "data" / "predictions.parquet").columns) == [
        "run", "view", "example", "correct"]
    published = (out / "appendix" / "published.md").read_text()
    assert "| ce | symmetric 0.4 | sample | 1 |" in published
    assert "published mean ± std" in published
