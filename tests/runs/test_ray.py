"""hydra/launcher=ray_local on a real local Ray instance that the sweep starts (2 CPUs, no
dashboard): a sweep completes, a rerun skips what finished, a Ray worker killed mid-run leaves
its run `running` and the rerun trains it again, and collect and report read the result as they
read any sweep's."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import SMALL, run_cli
from lossbench.runs.journal import JOURNAL

pytest.importorskip("ray", reason="Ray is not installed (pip install 'lossbench[ray]')")
pytest.importorskip("hydra_plugins.hydra_ray_launcher",
                    reason="hydra-ray-launcher is not installed (pip install 'lossbench[ray]')")

pytestmark = [pytest.mark.ray, pytest.mark.slow]

RAY = ("hydra/launcher=ray_local", "hydra.launcher.ray.init.num_cpus=2", *SMALL)


def statuses(sweep: Path) -> dict[str, str]:
    return {path.parent.name: json.loads(path.read_text())["status"] for path in sweep.glob("*/summary.json")}


def test_a_ray_sweep_completes_a_rerun_skips_it_and_collect_and_report_read_it(tmp_path):
    sweep = tmp_path / "sweep"
    command = ("-m", "experiment=smoke", *RAY, f"hydra.sweep.dir={sweep}")
    first = run_cli(*command, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "4 ran, 0 skipped" in first.stdout + first.stderr
    assert set(statuses(sweep).values()) == {"completed"} and len(statuses(sweep)) == 4
    # Each job trains with the one core Ray reserved for it, not with both of the machine's.
    assert {json.loads(p.read_text())["threads"] for p in sweep.glob("*/summary.json")} == {1}

    again = run_cli(*command, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 ran, 4 skipped" in again.stdout + again.stderr

    (sweep / "summary.parquet").unlink()
    collected = subprocess.run([sys.executable, "-m", "lossbench.collect", str(sweep)],
                               capture_output=True, text=True)
    assert collected.returncode == 0, collected.stderr
    assert sorted(pd.read_parquet(sweep / "summary.parquet")["status"]) == ["completed"] * 4
    report = subprocess.run([sys.executable, "-m", "lossbench.report", str(sweep)],
                            capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    assert (sweep / "report" / "report.md").stat().st_size > 0


LONG_RUN = "model.hidden=[32],trainer.epochs=30,trainer.threads=1"


def kill_the_worker_mid_run(command: tuple[str, ...], run_dir: Path, cwd: Path) -> tuple[int, str, int]:
    """Start the sweep, SIGKILL the Ray worker training run_dir once an epoch has finished, and
    return the sweep's exit code, its output and the killed pid."""
    process = subprocess.Popen([sys.executable, "-m", "lossbench", *command], cwd=cwd,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONHASHSEED": "0"})
    try:
        deadline = time.monotonic() + 180
        while not (run_dir / JOURNAL).exists():  # the run's first epoch is written
            assert process.poll() is None, f"the sweep ended before the run finished an epoch: {process.stdout.read()}"
            assert time.monotonic() < deadline, "the run never finished an epoch"
            time.sleep(0.2)
        # The run's lock names the process that holds it: the Ray worker running the job.
        pid = int((run_dir / ".lossbench.lock").read_text().split()[1])
        assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"), "not a Ray worker"
        os.kill(pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, output, pid


def test_a_ray_worker_killed_mid_run_leaves_it_running_and_the_rerun_trains_it(tmp_path):
    sweep = tmp_path / "sweep"
    # No retries: Ray would otherwise start the killed job again at once (its default, 3 times).
    command = ("-m", "trainer.epochs=1,30", "trainer.threads=1", *RAY, "hydra.launcher.ray.remote.max_retries=0",
               f"hydra.sweep.dir={sweep}")
    returncode, output, _ = kill_the_worker_mid_run(command, sweep / LONG_RUN, tmp_path)
    assert returncode != 0 and "WorkerCrashedError" in output, output
    assert json.loads((sweep / LONG_RUN / "summary.json").read_text())["status"] == "running"

    resumed = run_cli(*command, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "1 ran, 1 skipped" in resumed.stdout + resumed.stderr
    assert set(statuses(sweep).values()) == {"completed"}
    assert sorted(pd.read_parquet(sweep / "summary.parquet")["epochs_completed"]) == [1, 30]


def test_ray_retries_a_killed_workers_job_in_another_worker_that_takes_over_its_run_dir(tmp_path):
    sweep = tmp_path / "sweep"
    command = ("-m", "trainer.epochs=30", "trainer.threads=1", *RAY, f"hydra.sweep.dir={sweep}")
    returncode, output, killed = kill_the_worker_mid_run(command, sweep / LONG_RUN, tmp_path)
    assert returncode == 0, output
    summary = json.loads((sweep / LONG_RUN / "summary.json").read_text())
    assert (summary["status"], summary["epochs_completed"]) == ("completed", 30)
    assert int((sweep / LONG_RUN / ".lossbench.lock").read_text().split()[1]) != killed
