"""The end of a sweep: gather its runs into tidy tables and say what happened to each."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from lossbench.collect import TABLE_FILES, CollectError, collect
from lossbench.errors import WRITE_FAILED_EXIT, write_failure
from lossbench.owned import PlantedLink, refuse_planted_links
from lossbench.progress import Progress
from lossbench.results import LOCK, RUN_FILES, SUMMARY, lock_holder
from lossbench.trackers import prepare_sweep
from lossbench.run import STOP_SIGNALS, Interrupted

log = logging.getLogger("lossbench")
# Statuses that mean the run must be looked at; diverged and interrupted are results, and a
# rerun of the sweep picks interrupted ones up again.
FAILED = ("failed", "running")


# More than Hydra's .hydra/*.yaml files, written before lossbench can catch anything.
PROBE_BYTES = 16 * 1024


def require_writable(directory: Path, key: str) -> None:
    """Exit with one line naming the key when `directory` cannot be made or written, or holds no
    room for a few files (file size limit, full disk, quota): Hydra would otherwise fail inside
    its job runner with a traceback. Exit 2 for a path the user can fix, WRITE_FAILED_EXIT
    for the machine."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory) as probe:
            probe.write(bytes(PROBE_BYTES))
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        failure = write_failure(error)
        if failure:
            print(f"error: {key}={directory}: {failure}", file=sys.stderr)
            sys.exit(WRITE_FAILED_EXIT)
        print(f"error: {key}={directory} cannot be written ({error.strerror or error}); "
              f"choose a writable directory", file=sys.stderr)
        sys.exit(2)


from lossbench.collect import TABLE_FILES, CollectError, collect
from lossbench.errors import WRITE_FAILED_EXIT, write_failure
from lossbench.owned import PlantedLink, refuse_planted_links
from lossbench.progress import Progress
from lossbench.results import LOCK, RUN_FILES, SUMMARY, lock_holder


class SweepCallback(Callback):
    # The sweep this process runs, for whoever ends it early (lossbench.app.cli).
    sweep_dir: Optional[Path] = None
    # Set by a sweeper that knows its run count (the tuned sweeper): a line per finished job.
    progress: Optional[Progress] = None

    def __init__(self, report: bool = False) -> None:
        # true (experiment=which_loss): the sweep ends by writing DIR/report and printing its answer
        self.report = report

    def on_job_end(self, config: Any, job_return: Any = None, **kwargs: Any) -> None:
        if SweepCallback.progress is not None:
            run_dir = Path(config.hydra.runtime.output_dir)
            log.info(SweepCallback.progress.job_ended(SweepCallback.progress.ran(run_dir)))

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        require_writable(Path(config.hydra.run.dir), "hydra.run.dir")
        require_no_links(Path(config.hydra.run.dir), "hydra.run.dir", recursive=False)

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        if OmegaConf.select(config, "hydra.sweeper.dry_run", default=False):
            return  # the sweeper lists the runs and ends: nothing is written
        shared = shared_run_dir(config)
        if shared:
            print(f"error: {shared}", file=sys.stderr)
            sys.exit(2)
        require_writable(Path(config.hydra.sweep.dir), "hydra.sweep.dir")
        require_no_links(Path(config.hydra.sweep.dir), "hydra.sweep.dir", recursive=True)
        self.started = time.time()
        prepare_sweep(config)
        SweepCallback.sweep_dir = Path(config.hydra.sweep.dir)
        # SIGTERM (a scheduler's preemption) and SIGHUP end the sweep the way Ctrl-C does. A job
        # running in this process swaps in its own handler while it runs (lossbench.run.StopFlag).
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                signal.signal(signum, raise_interrupted)

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
        if self.report:
            write_report(sweep_dir)
        for run, reason in sorted(reasons.items()):
            log.error(f"failed: {run}: {reason}")
        if reasons:
            log.error(f"{len(reasons)} of {len(set(summary['run']) | set(reasons))} runs failed")
            sys.exit(1)


def write_report(sweep_dir: Path) -> None:
    """DIR/report, and its first section (the recommendation, when the study has one) printed."""
    from lossbench.report import ReportInputError, generate

    try:
        path = generate([sweep_dir], say=log.info)
    except ReportInputError as error:
        log.error(f"report: {error}")
        return
    first = path.read_text().split("\n## ")[1]  # the text of the first section, title first
    log.info("report: %s\n## %s", path, first.strip())


def raise_interrupted(signum, frame) -> None:
    raise Interrupted(signum)


def failure_reason(status: str, error: Any) -> str:
    if isinstance(error, str) and error:
        return error
    # Every exit the process lives through records why; a `running` run without an error was
    # killed outright (SIGKILL, the OOM killer, a power cut).
    return "no final status recorded: the process was killed" if status == "running" else status


def end_interrupted_sweep(sweep_dir: Path) -> None:
    """A stop signal ended the sweep early: collect what finished and say how to go on."""
    try:
        collected = collect(sweep_dir)
    except CollectError as error:
        log.warning(f"sweep interrupted; nothing to collect yet ({error})")
    else:
        counts = ", ".join(f"{n} {status}" for status, n in collected.status_counts().items())
        log.warning(f"sweep interrupted: {counts}; collected into {sweep_dir}/summary.parquet")
    log.warning("to resume (finished runs are skipped): python -m lossbench " + shlex.join(sys.argv[1:]))
