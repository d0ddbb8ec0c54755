"""Resume trusts files, not only summary.json; one writer per run directory; a killed sweep,
rerun, gives the tables a clean sweep gives."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from lossbench.runs.results import FILE_MODE, LOCK, RunDirBusy, RunDirLock, write_json
from lossbench.runs.run import already_finished, comparable_config, execute
from lossbench.training.metrics import TIMINGS

from conftest import SMALL, compose_config, run_cli, run_sweep

CE_0 = "loss=ce,model.hidden=[32],seed=0"
CE_1 = "loss=ce,model.hidden=[32],seed=1"
BCE_0 = "loss=bce_logits,model.hidden=[32],seed=0"
# What a rerun may change: when and how fast it ran.
TIMING = ["wall_time_s", "finished_at", "mean_epoch_time_s", "mean_eval_time_s", *TIMINGS]


def test_resume_reruns_completed_runs_whose_tables_are_missing_or_torn(smoke_sweep, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(smoke_sweep.dir, sweep)
    (sweep / CE_0 / "metrics.parquet").unlink()
    torn = sweep / CE_1 / "calibration.parquet"
    torn.write_bytes(torn.read_bytes()[:100])
    (sweep / BCE_0 / "predictions.parquet").unlink()
    result = run_sweep("smoke", sweep)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 ran, 1 skipped" in result.stdout
    assert f"rerunning {sweep / CE_0}: metrics.parquet is missing" in result.stdout
    assert f"rerunning {sweep / CE_1}: calibration.parquet is unreadable" in result.stdout
    assert f"rerunning {sweep / BCE_0}: predictions.parquet is missing" in result.stdout
    assert len(pd.read_parquet(sweep / CE_1 / "calibration.parquet")) == 30  # equal-width and equal-mass bins
    assert len(pd.read_parquet(sweep / BCE_0 / "predictions.parquet")) == 2000  # views last and selected


def finished_run(run_dir, cfg, source: str) -> None:
    """A run dir as a completed run leaves it, with real (tiny) tables."""
    run_dir.mkdir(parents=True)
    write_json(run_dir / "summary.json", {"status": "completed", "config": comparable_config(cfg),
                                          "data_source": source, "epochs_completed": 1})
    pd.DataFrame({"epoch": [1]}).to_parquet(run_dir / "metrics.parquet")
    pd.DataFrame({"example": [0]}).to_parquet(run_dir / "predictions.parquet")


def test_resume_compares_the_data_a_run_would_load_now(tmp_path, capsys):
    root = tmp_path / "data"
    cfg = compose_config(f"dataset.root={root}")  # source=auto: the sample until the files appear
    finished_run(tmp_path / "run", cfg, "sample")
    assert already_finished(tmp_path / "run", comparable_config(cfg), cfg.dataset)
    (root / "MNIST" / "raw").mkdir(parents=True)
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (root / "MNIST" / "raw" / stem).touch()
    assert not already_finished(tmp_path / "run", comparable_config(cfg), cfg.dataset)
    assert "it trained on the sample data, a run now loads the full data" in capsys.readouterr().out


def test_temp_files_of_a_killed_writer_are_removed_when_the_dir_is_next_used(tmp_path):
    cfg = compose_config("dataset.source=sample")
    run_dir = tmp_path / "run"
    finished_run(run_dir, cfg, "sample")
    leftover = run_dir / ".metrics.parquet.k3j2h.tmp.parquet"
    leftover.write_bytes(b"half a file")
    assert execute(cfg, run_dir, threads=1, overrides=[])["status"] == "skipped"
    assert not leftover.exists()


def test_files_get_the_permissions_the_umask_gives(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    write_json(tmp_path / "x.json", {})
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == FILE_MODE == 0o666 & ~umask


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    with RunDirLock(run_dir):
        result = run_cli("dataset.source=sample", "trainer.epochs=1", *SMALL, f"hydra.run.dir={run_dir}",
                         cwd=tmp_path)
        with pytest.raises(RunDirBusy):  # in-process too: flock locks per open file
            RunDirLock(run_dir).__enter__()
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert f"is in use by pid {os.getpid()} on host" in output and "Traceback" not in output
    assert not (run_dir / "summary.json").exists()  # the refused writer wrote nothing
    again = run_cli("dataset.source=sample", "trainer.epochs=1", *SMALL, f"hydra.run.dir={run_dir}",
                    cwd=tmp_path)  # the lock file stays behind, unlocked: taken over
    assert again.returncode == 0, again.stderr
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


def test_a_lock_left_by_a_killed_process_is_stale_and_taken_over(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import pathlib, sys, time; from lossbench.runs.results import RunDirLock; "
        f"lock = RunDirLock(pathlib.Path({str(tmp_path)!r})).__enter__(); print('locked', flush=True); "
        "time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(RunDirBusy, match=f"pid {holder.pid}"):
        RunDirLock(tmp_path).__enter__()
    holder.kill()
    holder.wait()
    assert (tmp_path / LOCK).read_text().startswith(f"pid {holder.pid}")
    with RunDirLock(tmp_path):
        assert (tmp_path / LOCK).read_text().startswith(f"pid {os.getpid()}")


@pytest.mark.slow
def test_a_busy_run_dir_is_a_failed_job_not_a_crashed_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    with RunDirLock(sweep / CE_0):
        result = run_sweep("smoke", sweep)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output
    assert f"is in use by pid {os.getpid()}" in output
    done = {p.parent.name for p in sweep.glob("*/summary.json")}
    assert done == {CE_1, BCE_0, "loss=bce_logits,model.hidden=[32],seed=1"}


def tables(sweep) -> dict[str, pd.DataFrame]:
    summary = pd.read_parquet(sweep / "summary.parquet")
    runs = pd.read_parquet(sweep / "epochs.parquet")
    keep = [c for c in summary.columns if c not in TIMING and not c.startswith("cfg.hydra")]
    return {
        "summary": summary[keep].sort_values("run").reset_index(drop=True),
        "runs": runs.drop(columns=[c for c in TIMING if c in runs]).sort_values(["run", "epoch", "split"])
        .reset_index(drop=True),
    }


@pytest.mark.slow
def test_a_sweep_killed_at_a_random_moment_then_rerun_equals_a_clean_sweep(smoke_sweep, tmp_path):
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "lossbench", "-m", "experiment=smoke", *SMALL, f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    victim = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    # Somewhere between start-up and the last run: the seed fixes the moment for reproducibility.
    time.sleep(random.Random(7).uniform(3.0, 12.0))
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert not list(sweep.glob("*/.*.tmp*"))
    ours, clean = tables(sweep), tables(smoke_sweep.dir)
    for name in ours:
        pd.testing.assert_frame_equal(ours[name], clean[name], check_like=True)
