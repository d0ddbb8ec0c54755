"""The end of a sweep: gather its runs into tidy tables and say what happened to each."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from lossbench.collect import CollectError, collect
from lossbench.results import SUMMARY
from lossbench.trackers import prepare_sweep

log = logging.getLogger("lossbench")
# Statuses that mean the run must be looked at; diverged and interrupted are results, and a
# rerun of the sweep picks interrupted ones up again.
FAILED = ("failed", "running")


class SweepCallback(Callback):
    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self.started = time.time()
        prepare_sweep(config)

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
        for run, error in zip(failed["run"], failed["error"]):
            log.error(f"failed: {run}: {error}")
        if len(failed):
            log.error(f"{len(failed)} of {len(summary)} runs failed")
            sys.exit(1)
