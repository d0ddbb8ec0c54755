"""The end of a sweep: gather its runs into tidy tables and say what happened to each."""

from __future__ import annotations

import logging
import os
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from lossbench.errors import WRITE_FAILED_EXIT, write_failure
from lossbench.runs.launchers import missing_launcher
from lossbench.runs.owned import PlantedLink, refuse_planted_links
from lossbench.runs.progress import Progress
from lossbench.runs.results import (LOCK, RUN_FILES, SUMMARY, TABLE_FILES, RunDirBusy, RunDirLock, lock_holder,
                               read_summary, write_json)
from lossbench.runs.trackers import prepare_sweep

log = logging.getLogger("lossbench")
# lossbench.collect is imported where a sweep collects, not at the top: it imports pandas, which a
# single run (whose start-up imports this module for its callback) never needs.
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


# Hydra's, and lossbench's default (hydra/sweeper=lossbench), which makes the same jobs
BASIC_SWEEPERS = ("hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                  "hydra_plugins.lossbench_sweeper.sweeper.ComposeOnceSweeper")


def shared_run_dir(config: Any) -> Optional[str]:
    """Two jobs of a basic sweep that would write one run dir (a value listed twice, or values of
    a key left out of run dir names), as one line; None when every job has its own. Expanded as
    BasicSweeper expands them, named as Hydra names them."""
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    sweeper, names = config.hydra.sweeper, config.hydra.job.config.override_dirname
    by_dirname = OmegaConf.to_container(config.hydra.sweep)["subdir"] == "${hydra.job.override_dirname}"
    if sweeper.get("_target_") not in BASIC_SWEEPERS or not by_dirname:
        return None
    # the config loader expands glob() sweeps (loss=glob(ce*)) from the config groups
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
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


def require_no_links(directory: Path, key: str, recursive: bool) -> None:
    """Exit 2 with one line when a symlink sits where Hydra or lossbench would write: this runs
    before Hydra writes .hydra/*.yaml, the job log and multirun.yaml, which it opens following links."""
    try:
        refuse_planted_links(directory, [*RUN_FILES, *TABLE_FILES], recursive)
    except PlantedLink as error:
        print(f"error: {key}={directory}: {error}", file=sys.stderr)
        sys.exit(2)


class SweepCallback(Callback):
    # The sweep this process runs and when it began, for whoever ends it early (lossbench.app.cli).
    sweep_dir: Optional[Path] = None
    began: float = 0.0
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
        shared = shared_run_dir(config) or missing_launcher(config.hydra.launcher)
        if shared:
            print(f"error: {shared}", file=sys.stderr)
            sys.exit(2)
        require_writable(Path(config.hydra.sweep.dir), "hydra.sweep.dir")
        require_no_links(Path(config.hydra.sweep.dir), "hydra.sweep.dir", recursive=True)
        self.started = time.time()
        prepare_sweep(config)
        SweepCallback.sweep_dir, SweepCallback.began = Path(config.hydra.sweep.dir), self.started

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        from lossbench.runs.collect import CollectError, collect

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
    from lossbench.runs.collect import CollectError, collect

    record_killed_workers(sweep_dir, began, signal_name)
    try:
        collected = collect(sweep_dir)
    except CollectError as error:
        log.warning(f"sweep interrupted; nothing to collect yet ({error})")
    else:
        counts = ", ".join(f"{n} {status}" for status, n in collected.status_counts().items())
        log.warning(f"sweep interrupted: {counts}; collected into {sweep_dir}/summary.parquet")
    log.warning("to resume (finished runs are skipped): python -m lossbench " + shlex.join(sys.argv[1:]))
