"""Every command stops the same way on a stop signal: exit 128 + the signal's number, one line, no
traceback, a final status in every run it touched and the command that resumes a sweep.

The signal is sent where the claim needs it, not after a guessed delay: by the test once a run's
file appears, or by the command to itself from a wrapped function (a test-side wrapper, started
with `python -c`; the code under test is the installed lossbench, unchanged)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from lossbench.runs.journal import JOURNAL
from lossbench.runs.results import SUMMARY
from lossbench.signals import STOP_SIGNALS, StopFlag, install, raise_interrupted

TINY_RUN = ("trainer.threads=1", "dataset.source=sample", "model.hidden=[8]")
FINAL = {"completed", "diverged", "failed", "interrupted"}

# Runs MODULE as `python -m MODULE ARGS` would, after wrapping OWNER's NAME (a dotted path) so that its CALL-th call
# first sends SIGNAL to this very process (Python runs the handler before the wrapped call's next line).
SIGNAL_AT_CALL = """
import importlib, os, runpy, signal, sys
owner = importlib.import_module({owner!r})
*path, name = {name!r}.split(".")
for part in path:
    owner = getattr(owner, part)
original, calls = getattr(owner, name), []
def wrapped(*args, **kwargs):
    calls.append(1)
    if len(calls) == {call}:
        os.kill(os.getpid(), signal.{signal})
    return original(*args, **kwargs)
setattr(owner, name, wrapped)
sys.argv = [{module!r}, *{args!r}]
runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
"""


def signalled(tmp_path: Path, module: str, args: list[str], at: str, call: int = 1,
              signum: signal.Signals = signal.SIGINT) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS`, sent `signum` at the CALL-th call of `at` ("package.module:function")."""
    owner, name = at.split(":")
    script = SIGNAL_AT_CALL.format(owner=owner, name=name, call=call, signal=signum.name, module=module, args=args)
    return subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)


def signalled_once(tmp_path: Path, args: list[str], ready: Callable[[], bool],
                   signum: signal.Signals) -> subprocess.CompletedProcess:
    """`python -m lossbench ARGS`, sent `signum` (to its own process only) as soon as ready()."""
    process = subprocess.Popen([sys.executable, "-m", "lossbench", *args], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not ready():
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.01)
    process.send_signal(signum)
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def statuses(sweep: Path) -> dict[str, str]:
    """Each run dir's summary.json status, by its path relative to the sweep dir."""
    return {path.parent.relative_to(sweep).as_posix(): json.loads(path.read_text())["status"]
            for path in sweep.glob(f"**/{SUMMARY}")}


def assert_stopped(result: subprocess.CompletedProcess, signum: signal.Signals) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 128 + signum, output
    assert "Traceback" not in output and "terminate called" not in output, output
    return output


@pytest.mark.parametrize("module, args", [
    ("lossbench.probe", ["--out", "probe", "--zmax", "10"]),
    ("lossbench.collect", ["."]),
    ("lossbench.report", ["."]),
    ("lossbench", ["hydra.run.dir=run"]),
])
def test_ctrl_c_in_any_command_exits_130_with_one_line_and_no_traceback(tmp_path, module, args):
    result = signalled(tmp_path, module, args, at="argparse:ArgumentParser.parse_args")
    output = assert_stopped(result, signal.SIGINT)
    assert f"{module}: stopped by SIGINT" in output


def test_a_signal_while_a_command_still_imports_exits_with_its_code(tmp_path):
    # sys.argv[0] is "-m" while `python -m lossbench.x` imports the lossbench package.
    script = ("import os, signal, sys, time\nsys.argv[:] = ['-m']\nimport lossbench\n"
              "os.kill(os.getpid(), signal.SIGTERM)\ntime.sleep(60)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 143 and result.stderr == "SIGTERM: stopped before starting\n", result.stderr


def test_a_signal_ignored_at_start_stays_ignored_as_under_nohup():
    before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        install()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is raise_interrupted
        with StopFlag():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_batched_sweep_stopped_while_its_seeds_start_records_every_run(tmp_path, signum):
    sweep = tmp_path / "sweep"
    # Seed 1's run has begun (its summary says running): seed 0 waits for the stack, 2 has not begun.
    result = signalled_once(tmp_path, ["-m", "hydra/launcher=batched", "loss=ce,bce_logits", "seed=0,1,2",
                                       "trainer.epochs=3", *TINY_RUN, f"hydra.sweep.dir={sweep}"],
                            lambda: bool(list(sweep.glob(f"*loss=ce,*seed=1,*/{SUMMARY}"))), signum)
    output = assert_stopped(result, signum)
    on_disk = statuses(sweep)
    assert on_disk and set(on_disk.values()) <= FINAL, on_disk
    assert all(status == "interrupted" for status in on_disk.values()), on_disk  # none had finished
    collected = pd.read_parquet(sweep / "summary.parquet")
    assert dict(zip(collected["run"], collected["status"])) == on_disk
    assert "to resume (finished runs are skipped): python -m lossbench -m hydra/launcher=batched" in output


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "batched"])
def test_a_signal_after_the_last_step_stops_the_sweep_with_130(tmp_path, launcher):
    # One step per epoch, one epoch: the signal comes while the run's only epoch is evaluated.
    sweep = tmp_path / "sweep"
    result = signalled(tmp_path, "lossbench", ["-m", f"hydra/launcher={launcher}", "loss=ce,nll", "seed=0,1",
                                               "trainer.epochs=1", "trainer.batch_size=100000", *TINY_RUN,
                                               f"hydra.sweep.dir={sweep}"],
                       at="lossbench.training.train:epoch_records")
    output = assert_stopped(result, signal.SIGINT)
    assert "stopping after this step" in output
    on_disk = statuses(sweep)
    # The run in progress finished (under batched, the seeds of its group); nothing after it began.
    assert set(on_disk.values()) == {"completed"} and len(on_disk) == (1 if launcher == "basic" else 2), on_disk
    assert "to resume (finished runs are skipped)" in output


@pytest.mark.slow
def test_sigterm_during_a_tuned_comparison_exits_143(tmp_path):
    sweep = tmp_path / "sweep"
    # Two trials of one epoch each, then the comparison: its first epoch is the third call.
    result = signalled(tmp_path, "lossbench", [
        "-m", "experiment=tuned_single_label", "loss=ce,nll", "seed=0,1", "hydra.sweeper.budget=1",
        "hydra.sweeper.space.ce={optim.lr:1e-3}", "hydra.sweeper.space.nll={optim.lr:1e-3}", "trainer.epochs=1",
        *TINY_RUN, f"hydra.sweep.dir={sweep}"], at="lossbench.training.train:epoch_records", call=3, signum=signal.SIGTERM)
    output = assert_stopped(result, signal.SIGTERM)
    on_disk = statuses(sweep)
    assert sorted(run.split("/")[0] for run in on_disk) == ["compare", "tune", "tune"], on_disk
    assert set(on_disk.values()) == {"completed"}
    assert "to resume (finished runs are skipped): python -m lossbench -m experiment=tuned_single_label" in output


@pytest.mark.slow
def test_a_joblib_sweep_stopped_mid_run_records_the_runs_of_its_killed_workers(tmp_path):
    sweep = tmp_path / "sweep"
    # Both runs have begun and one has finished an epoch; the signal goes to the sweep's process
    # only, as a scheduler's preemption would.
    result = signalled_once(tmp_path, ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1",
                                       "trainer.epochs=200", *TINY_RUN, f"hydra.sweep.dir={sweep}"],
                            lambda: len(statuses(sweep)) == 2 and bool(list(sweep.glob(f"*/{JOURNAL}"))),
                            signal.SIGTERM)
    assert_stopped(result, signal.SIGTERM)
    errors = [json.loads(path.read_text())["error"] for path in sweep.glob(f"*/{SUMMARY}")]
    assert errors == ["interrupted by SIGTERM: the launcher ended its worker process"] * 2
    assert set(pd.read_parquet(sweep / "summary.parquet")["status"]) == {"interrupted"}
