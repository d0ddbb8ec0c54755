"""The end of a sweep: gather its runs into tidy tables and say what happened to each."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from lossbench.results import SUMMARY, read_summary

log = logging.getLogger("lossbench")


class SweepCallback(Callback):
    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self.started = time.time()

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        runs = sorted(p.parent for p in sweep_dir.glob(f"**/{SUMMARY}"))
        # A run whose summary predates this invocation was found completed and skipped.
        fresh = [r for r in runs if (r / SUMMARY).stat().st_mtime >= self.started]
        skipped = len(runs) - len(fresh)
        failed = [(r, s) for r in runs if (s := read_summary(r)) is None or s.get("status") in ("failed", "running", None)]
        from lossbench.collect import collect

        collect(sweep_dir)
        log.info(f"sweep: {len(runs)} runs in {sweep_dir}; {len(fresh)} ran, {skipped} skipped "
                 f"(already completed with the same config); collected into {sweep_dir}/summary.parquet")
        if failed:
            for run_dir, summary in failed:
                why = summary.get("error") if summary else "no readable summary.json"
                log.error(f"failed: {run_dir.relative_to(sweep_dir)}: {why}")
            log.error(f"{len(failed)} of {len(runs)} runs failed")
            sys.exit(1)
