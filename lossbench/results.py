"""What a run writes into its directory, each file atomically (temp file + rename), so a crash
leaves the previous complete version, never half a file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd

SUMMARY = "summary.json"
METRICS = "metrics.parquet"
CALIBRATION = "calibration.parquet"
STEPS = "steps.parquet"
PER_CLASS = "per_class.parquet"


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call write(tmp_path) for a temp file beside `path`, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp name ends in the target's suffix: writers such as matplotlib infer the format from it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, allow_nan=True)
            f.write("\n")

    atomic_write(path, write)


def write_table(path: Path, records: list[dict]) -> None:
    atomic_write(path, lambda tmp: pd.DataFrame.from_records(records).to_parquet(tmp, index=False))


def read_summary(run_dir: Path) -> Optional[dict[str, Any]]:
    """The run's summary, or None if there is none or it cannot be read."""
    try:
        return json.loads((run_dir / SUMMARY).read_text())
    except (OSError, ValueError):
        return None


class RunFiles:
    """The files of one run directory, rewritten as the run goes so a dead run loses at most the
    epoch it was in."""

    def __init__(self, run_dir: Path, identity: dict[str, Any]):
        self.run_dir = run_dir
        self.identity = identity  # loss, dataset, data_source, seed: on every table row
        self.metrics: list[dict] = []
        self.steps: list[dict] = []
        self.per_class: list[dict] = []

    def add_epoch(self, rows: list[dict], calibration: list[dict], steps: list[dict],
                  per_class: list[dict] = ()) -> None:
        self.metrics += [{**self.identity, **row} for row in rows]
        write_table(self.run_dir / METRICS, self.metrics)
        if calibration:
            write_table(self.run_dir / CALIBRATION, [{**self.identity, **row} for row in calibration])
        if steps:
            self.steps += [{**self.identity, **row} for row in steps]
            write_table(self.run_dir / STEPS, self.steps)
        if per_class:
            self.per_class += [{**self.identity, **row} for row in per_class]
            write_table(self.run_dir / PER_CLASS, self.per_class)

    def final_test_metrics(self) -> dict[str, float]:
        """test_<metric> of the last completed epoch: a fixed budget, nothing selected on test."""
        tests = [row for row in self.metrics if row["split"] == "test"]
        if not tests:
            return {}
        skip = set(self.identity) | {"epoch", "split", "epoch_time_s", "samples_per_s"}
        return {f"test_{key}": value for key, value in tests[-1].items() if key not in skip}

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.run_dir / SUMMARY, summary)
