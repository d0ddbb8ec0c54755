"""Sweeps: presets compose, the smoke grid runs under each launcher, reruns resume, failures
are listed and make the sweep exit non-zero without stopping the other runs."""

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from lossbench.runs.results import LOCK

from conftest import SMALL, compose_config, run_cli, run_sweep, sweep_grid

# Run directories are named from the job's overrides, sorted by key.
SMOKE_RUNS = {f"loss={loss},model.hidden=[32],seed={seed}" for loss in ("ce", "bce_logits") for seed in (0, 1)}
CE_SEED_1 = "loss=ce,model.hidden=[32],seed=1"


def run_dirs(sweep):
    return {p.parent.name for p in sweep.glob("*/summary.json")}


def statuses(sweep):
    return {d: json.loads((sweep / d / "summary.json").read_text())["status"] for d in run_dirs(sweep)}


@pytest.mark.parametrize("preset, dataset, losses, seeds, epochs", [
    ("smoke", "mnist", ["ce", "bce_logits"], 2, 1),
    ("classic_losses", "mnist", ["ce", "nll", "bce", "bce_logits"], 5, 10),
    ("classic_losses_multi_label", "multilabel", ["bce", "bce_logits"], 5, 20),
])
def test_presets_compose(preset, dataset, losses, seeds, epochs):
    cfg = compose_config(f"experiment={preset}")
    assert (cfg.experiment, cfg.dataset.name, cfg.trainer.epochs) == (preset, dataset, epochs)
    grid = sweep_grid(preset)
    assert grid["loss"] == losses and len(grid["seed"]) == seeds


@pytest.mark.parametrize("launcher, target", [
    ("joblib", "JoblibLauncher"), ("submitit_local", "LocalLauncher"), ("submitit_slurm", "SlurmLauncher"),
    ("ray_local", "RayLauncher"),
])
def test_launchers_resolve(launcher, target):
    from hydra import compose

    from conftest import initialize_config

    with initialize_config():
        cfg = compose("config", overrides=["experiment=smoke", f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)


def test_smoke_grid_with_the_basic_launcher(smoke_sweep):
    sweep, result = smoke_sweep.dir, smoke_sweep.result
    assert run_dirs(sweep) == SMOKE_RUNS  # named from the overrides, not the clock
    assert set(statuses(sweep).values()) == {"completed"}
    summary = pd.read_parquet(sweep / "summary.parquet")
    assert len(summary) == 4 and set(summary["loss"]) == {"ce", "bce_logits"}
    assert "4 ran, 0 skipped" in result.stdout


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_smoke_grid_with_parallel_launchers(tmp_path, launcher):
    result = run_sweep("smoke", tmp_path / "sweep", f"hydra/launcher={launcher}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses(tmp_path / "sweep") == dict.fromkeys(SMOKE_RUNS, "completed")
    threads = {json.loads(p.read_text())["threads"] for p in (tmp_path / "sweep").glob("*/summary.json")}
    # parallel jobs share the cores instead of oversubscribing them: joblib runs one job per
    # core by default, submitit_local starts all four at once
    assert threads == {1}


@pytest.mark.parametrize("remote, threads", [({}, 1), ({"num_cpus": 2}, 2), ({"num_cpus": 0.5}, 1)])
def test_a_ray_job_trains_with_the_cores_ray_reserves_for_it(remote, threads):
    from omegaconf import OmegaConf

    from lossbench.runs.run import default_threads

    launcher = OmegaConf.create({"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher",
                                 "ray": {"init": {"address": None}, "remote": remote}})
    assert default_threads(launcher) == threads


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is a Linux call")
def test_a_run_pinned_to_one_core_defaults_to_one_thread():
    """taskset, a cgroup cpuset or a pinned test worker leave fewer cores than the machine has:
    a thread per missing core would only spin-wait."""
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from lossbench.runs.run import default_threads; print(default_threads(None))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "1"


def test_a_launcher_whose_extra_is_missing_is_refused_naming_the_extra(monkeypatch):
    import importlib.util

    from omegaconf import OmegaConf

    from lossbench.runs.launchers import missing_launcher

    launcher = OmegaConf.create({"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"})
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert "pip install 'lossbench[ray]'" in missing_launcher(launcher)
    assert missing_launcher(OmegaConf.create({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"})) is None


def test_rerunning_a_sweep_reruns_only_the_missing_run(smoke_sweep, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(smoke_sweep.dir, sweep)
    (sweep / CE_SEED_1 / "summary.json").unlink()
    # Everything but .hydra/, Hydra's record of the latest invocation, which it rewrites per job.
    # The lock file names whoever last held the dir: lossbench's bookkeeping, not a result.
    untouched = {p: p.stat().st_mtime_ns for d in SMOKE_RUNS - {CE_SEED_1} for p in (sweep / d).iterdir()
                 if p.is_file() and p.name != LOCK}
    assert {p.name for p in untouched} >= {"summary.json", "metrics.parquet", "calibration.parquet", "lossbench.log"}
    result = run_sweep("smoke", sweep)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 ran, 3 skipped" in result.stdout
    assert statuses(sweep)[CE_SEED_1] == "completed"
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched

    forced = run_sweep("smoke", sweep, "resume=false")
    assert forced.returncode == 0 and "4 ran, 0 skipped" in forced.stdout
    assert run_dirs(sweep) == SMOKE_RUNS  # resume=false stays out of the directory names

    # where the files live is no part of a run's name (a path there would nest the run dirs)
    moved = run_sweep("smoke", sweep, "loss=ce", "seed=0",
                      f"dataset.root={tmp_path / 'elsewhere' / 'data'}")
    assert moved.returncode == 0 and "1 ran" in moved.stdout, moved.stdout + moved.stderr
    assert {p.name for p in sweep.iterdir() if p.is_dir()} == SMOKE_RUNS


def test_a_failed_run_does_not_stop_the_sweep_and_is_listed(tmp_path):
    result = run_cli("-m", "dataset=multilabel", "loss=ce,bce_logits", "trainer.epochs=1",
                     "dataset.n_samples=400", *SMALL, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode != 0
    assert statuses(tmp_path / "sweep") == {
        "dataset.n_samples=400,dataset=multilabel,loss=ce,model.hidden=[32],trainer.epochs=1": "failed",
        "dataset.n_samples=400,dataset=multilabel,loss=bce_logits,model.hidden=[32],trainer.epochs=1": "completed",
    }
    assert "1 of 2 runs failed" in result.stdout + result.stderr
    assert "loss=ce cannot train dataset=multilabel" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("launcher", ["basic", "batched"])
@pytest.mark.parametrize("overrides, shared", [
    (["seed=0,0,1"], "seed=0 trainer.epochs=1 and seed=0 trainer.epochs=1"),
    (["dataset.root=a,b"], "dataset.root=a trainer.epochs=1 and dataset.root=b trainer.epochs=1"),
    # a glob sweep over a config group expands only with Hydra's config loader
    (["loss=glob(ce_smooth*)", "seed=0,0"],
     "loss=ce_smooth seed=0 trainer.epochs=1 and loss=ce_smooth seed=0 trainer.epochs=1"),
])
def test_a_sweep_whose_jobs_share_a_run_dir_is_refused_before_any_runs(tmp_path, launcher, overrides, shared):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", f"hydra/launcher={launcher}", *overrides, "trainer.epochs=1",
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "two jobs of this sweep would write one run dir" in result.stderr and shared in result.stderr
    assert "Traceback" not in result.stderr and "Callback" not in result.stderr and not sweep.exists()
