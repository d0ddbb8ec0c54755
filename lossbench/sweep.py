"""The end of a sweep: gather its runs into tidy tables and say what happened to each."""

from __future__ import annotations

import logging
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback

from lossbench.collect import CollectError, collect
from lossbench.results import LOCK, SUMMARY, RunDirBusy, RunDirLock, lock_holder, read_summary, write_json
from lossbench.trackers import prepare_sweep

log = logging.getLogger("lossbench")
# Statuses that mean the run must be looked at; diverged and interrupted are results, and a
# rerun of the sweep picks interrupted ones up again.
FAILED = ("failed", "running")


def require_writable(directory: Path, key: str) -> None:
    """Exit 2 with one line naming the key when `directory` cannot be made or written: Hydra
    would otherwise make it inside its job runner and print a traceback."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=directory).close()
    except OSError as error:
        print(f"error: {key}={directory} cannot be written ({error.strerror or error}); "
              f"choose a writable directory", file=sys.stderr)
        sys.exit(2)


class SweepCallback(Callback):
    # The sweep this process runs and when it began, for whoever ends it early (lossbench.app.cli).
    sweep_dir: Optional[Path] = None
    began: float = 0.0

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        require_writable(Path(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        require_writable(Path(config.hydra.sweep.dir), "hydra.sweep.dir")
        self.started = time.time()
        prepare_sweep(config)
        SweepCallback.sweep_dir, SweepCallback.began = Path(config.hydra.sweep.dir), self.started

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            summary = collect(sweep_dir).summary
        except CollectError as error:  # every job died before writing a summary
            log.error(f"sweep: nothing to collect: {error}")
            sys.exit(1)
        # A run whose summary predates this invocation was found finished and skipped.
        ran = sum((sweep_dir / run / SUMMARY).stat().st_mtime >= self.started for run in summary["run"])
        log.info(f"sweep: {len(summary)} runs in {sweep_dir}; {ran} ran, {len(summary) - ran} "
                 f"skipped (already completed or diverged with the same config); collected into "
                 f"{sweep_dir}/summary.parquet")
        failed = summary[summary["status"].isin(FAILED)]
        reasons = {run: failure_reason(status, error)
                   for run, status, error in zip(failed["run"], failed["status"], failed["error"])}
        # A job refused because another process writes into its run dir records nothing there.
        for lock in sweep_dir.glob(f"**/{LOCK}"):
            holder = lock_holder(lock.parent)
            if holder:
                reasons[lock.parent.relative_to(sweep_dir).as_posix()] = (
                    f"in use by {holder}, so this sweep did not run it (rerun the sweep once it ends)")
        for run, reason in sorted(reasons.items()):
            log.error(f"failed: {run}: {reason}")
        if reasons:
            log.error(f"{len(reasons)} of {len(set(summary['run']) | set(reasons))} runs failed")
            sys.exit(1)


def failure_reason(status: str, error: Any) -> str:
    if isinstance(error, str) and error:
        return error
    # Every exit the process lives through records why; a `running` run without an error was
    # killed outright (SIGKILL, the OOM killer, a power cut).
    return "no final status recorded: the process was killed" if status == "running" else status


def record_killed_workers(sweep_dir: Path, began: float, signal_name: str) -> None:
    """Runs this sweep began that still say `running` with no live process holding their lock:
    their worker was killed under them (joblib SIGKILLs its workers when the sweep stops), so
    this process records them `interrupted` on their behalf. It takes each run's lock first;
    a killed process releases it as soon as it is gone."""
    for path in sorted(sweep_dir.glob(f"**/{SUMMARY}")):
        summary = read_summary(path.parent)
        if path.stat().st_mtime < began or not summary or summary.get("status") != "running":
            continue
        deadline = time.monotonic() + 10
        while True:
            try:
                with RunDirLock(path.parent):
                    summary.update(status="interrupted",
                                   error=f"interrupted by {signal_name}: the launcher ended its worker process",
                                   finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
                    write_json(path, summary)
                break
            except RunDirBusy:
                if time.monotonic() > deadline:  # a live process still runs it: it records its own status
                    break
                time.sleep(0.1)


def end_interrupted_sweep(sweep_dir: Path, began: float, signal_name: str) -> None:
    """A stop signal ended the sweep early: record runs whose worker was killed, collect what
    finished and say how to go on."""
    record_killed_workers(sweep_dir, began, signal_name)
    try:
        collected = collect(sweep_dir)
    except CollectError as error:
        log.warning(f"sweep interrupted; nothing to collect yet ({error})")
    else:
        counts = ", ".join(f"{n} {status}" for status, n in collected.status_counts().items())
        log.warning(f"sweep interrupted: {counts}; collected into {sweep_dir}/summary.parquet")
    log.warning("to resume (finished runs are skipped): python -m lossbench " + shlex.join(sys.argv[1:]))
