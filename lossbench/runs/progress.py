"""Sweep-level progress: runs done of the total, elapsed time and an ETA, one line per finished job.

The tuned sweeper knows the total and sets SweepCallback.progress; the callback's on_job_end
ticks it (jobs that run in this process: the basic and batched launchers). The ETA counts only
the runs that trained: a run found finished and skipped takes no time and says nothing about
the rest.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Optional

from lossbench.runs.results import SUMMARY

FINISHED = ("completed", "diverged")


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def finished_wall_times(sweep_dir: Path) -> list[float]:
    """The wall times of the runs under sweep_dir that already completed or diverged."""
    times = []
    for path in sweep_dir.glob(f"**/{SUMMARY}"):
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if summary.get("status") in FINISHED and isinstance(summary.get("wall_time_s"), (int, float)):
            times.append(float(summary["wall_time_s"]))
    return times


class Progress:
    def __init__(self, total: int, clock=time.monotonic):
        self.total, self.done, self.trained, self.trained_s = total, 0, 0, 0.0
        self.first_s: Optional[float] = None  # the first trained run also loads the data
        self.clock = clock
        self.started = self.last = clock()
        self.started_wall = time.time()  # summary.json mtimes after this: the run trained now
        self._lock = threading.Lock()  # the batched launcher ends its seeds' jobs in threads

    def ran(self, run_dir: Path) -> bool:
        summary = run_dir / SUMMARY
        return summary.is_file() and summary.stat().st_mtime >= self.started_wall

    def job_ended(self, ran: bool) -> str:
        with self._lock:
            now = self.clock()
            self.done += 1
            if ran and self.first_s is None:
                self.first_s = now - self.last
            elif ran:
                self.trained += 1
                self.trained_s += now - self.last
            self.last = now
            return self.line(now)

    def seconds_per_run(self) -> Optional[float]:
        """The mean time of the runs trained after the first (which loads the data and warms up
        the process); the first's alone until there are others."""
        return self.trained_s / self.trained if self.trained else self.first_s

    def line(self, now: float) -> str:
        remaining = max(self.total - self.done, 0)
        per_run = self.seconds_per_run()
        eta = f", ETA {duration(per_run * remaining)}" if per_run is not None and remaining else ""
        return f"progress: {self.done}/{self.total} runs done, elapsed {duration(now - self.started)}{eta}"

    @staticmethod
    def estimate(per_run: Optional[float], runs: int, source: str) -> str:
        if not per_run:
            return ("estimated time: unknown (jobs that run in other processes, as joblib's do, "
                    "are not timed here)")
        return (f"estimated time for the other {runs} runs: about {duration(per_run * runs)} "
                f"({per_run:.1f} s a run, from {source}; the progress lines refine it)")
