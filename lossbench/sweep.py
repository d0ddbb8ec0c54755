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

from lossbench.collect import CollectError, collect
from lossbench.errors import WRITE_FAILED_EXIT, write_failure
from lossbench.launchers import missing_launcher
from lossbench.results import LOCK, SUMMARY, lock_holder
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


BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def shared_run_dir(config: Any) -> Optional[str]:
    """Two jobs of a basic sweep that would write one run dir (a value listed twice, or values of
    a key left out of run dir names), as one line; None when every job has its own. Expanded as
    BasicSweeper expands them, named as Hydra names them."""
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    sweeper, names = config.hydra.sweeper, config.hydra.job.config.override_dirname
    by_dirname = OmegaConf.to_container(config.hydra.sweep)["subdir"] == "${hydra.job.override_dirname}"
    if sweeper.get("_target_") != BASIC_SWEEPER or not by_dirname:
        return None
    parser = OverridesParser.create()
    arguments = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
    jobs = BasicSweeper.split_arguments(parser.parse_overrides(arguments + list(config.hydra.overrides.task)), None)[0]
    seen: dict[str, list[str]] = {}
    for job in jobs:
        name = get_overrides_dirname(parser.parse_overrides(job), list(names.exclude_keys), names.item_sep,
                                     names.kv_sep)
        if name in seen:
            return (f"two jobs of this sweep would write one run dir, {name or 'the sweep dir itself'}: "
                    f"{shlex.join(seen[name])} and {shlex.join(job)}. List each value once (keys left out "
                    f"of run dir names: {', '.join(names.exclude_keys)})")
        seen[name] = job
    return None


class SweepCallback(Callback):
    # The sweep this process runs, for whoever ends it early (lossbench.app.cli).
    sweep_dir: Optional[Path] = None

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        require_writable(Path(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        shared = shared_run_dir(config) or missing_launcher(config.hydra.launcher)
        if shared:
            print(f"error: {shared}", file=sys.stderr)
            sys.exit(2)
        require_writable(Path(config.hydra.sweep.dir), "hydra.sweep.dir")
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
        for run, reason in sorted(reasons.items()):
            log.error(f"failed: {run}: {reason}")
        if reasons:
            log.error(f"{len(reasons)} of {len(set(summary['run']) | set(reasons))} runs failed")
            sys.exit(1)


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
