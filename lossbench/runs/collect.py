"""Gather every run under a directory into tidy tables (docs/reference/results-columns.md).

    python -m lossbench.collect results/sweeps/smoke

finds each run dir (a dir holding `summary.json`) and writes into DIR:
`summary.parquet` (one row per run), `epochs.parquet` (every metrics row), `calibration.parquet`
and, when any run wrote them, `steps.parquet`, `per_class.parquet` and `predictions.parquet`. Each gets a `run` column: the run dir relative to
DIR. A run whose summary.json cannot be read (half-written, killed mid-write) is kept as a
`failed` row with the reason, so it shows up in the report instead of silently vanishing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lossbench.runs.malformed import PREFIX, STATUSES, summary_problem, table_problem
from lossbench.runs.owned import Manifest, PlantedLink
from lossbench.runs.results import (CALIBRATION, EPOCHS, EPOCHS_BEFORE, METRICS, PER_CLASS, PREDICTIONS, STEPS,
                                    SUMMARY, TABLE_FILES, atomic_write, read_run_table)
from lossbench.signals import run_command

REPORT_DIR = "report"  # DIR/report is the report's default output: never a run


@dataclass
class Collected:
    summary: pd.DataFrame
    runs: pd.DataFrame
    calibration: pd.DataFrame
    steps: pd.DataFrame | None  # None when no run logged steps
    per_class: pd.DataFrame | None = None  # None when no run wrote per-class rows
    predictions: pd.DataFrame | None = None  # None when no run wrote per-example predictions

    def status_counts(self) -> dict[str, int]:
        """Runs per status, known statuses first, in a fixed order."""
        counts = self.summary["status"].value_counts()
        order = [s for s in STATUSES if s in counts] + sorted(set(counts.index) - set(STATUSES))
        return {status: int(counts[status]) for status in order}


    def bad_runs(self) -> dict[str, str]:
        """Runs whose files could not be read as results (lossbench.runs.malformed): run -> why."""
        bad = self.summary[self.summary["error"].str.startswith(PREFIX)]
        return dict(zip(bad["run"], bad["error"]))


class CollectError(Exception):
    """Bad input a user can fix (missing dir, no runs, a DIR it cannot write into); the CLI
    prints it and exits 2."""


def find_run_dirs(directory: Path) -> list[Path]:
    """Dirs holding summary.json, sorted. Skips hidden dirs, DIR/report, and a run's own subdirs."""
    found = []
    for root, dirs, files in os.walk(directory):
        here = Path(root)
        if SUMMARY in files:
            found.append(here)
            dirs[:] = []  # a run dir holds no other runs
            continue
        dirs[:] = [
            d for d in dirs
            if not d.startswith(".") and not (here == directory and d == REPORT_DIR)
        ]
    return sorted(found, key=lambda p: p.relative_to(directory).as_posix())


def flatten(config: dict, prefix: str = "cfg.") -> dict:
    """{'optim': {'lr': 0.1}} -> {'cfg.optim.lr': 0.1}; lists become their string form."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        elif isinstance(value, (list, tuple)):
            flat[f"{prefix}{key}"] = str(list(value))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read_summary(run_dir: Path, run: str) -> dict:
    """One summary.parquet row. Unreadable or malformed summary.json -> a `failed` row saying why."""
    try:
        summary = json.loads((run_dir / SUMMARY).read_text())
        if not isinstance(summary, dict):
            raise ValueError(f"expected a JSON object, got {type(summary).__name__}")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return {"run": run, "status": "failed", "error": f"unreadable {SUMMARY}: {e}"}
    if "status" not in summary:
        return {"run": run, "status": "failed", "error": f"{SUMMARY} has no 'status' field"}
    problem = summary_problem(summary)
    if problem:  # none of its fields is trusted: a seed "abc" would form a group of its own
        return {"run": run, "status": "failed", "error": PREFIX + problem}
    row = {"run": run}
    for key, value in summary.items():
        if key in ("config", "overrides") or isinstance(value, dict):
            continue
        row[key] = str(list(value)) if isinstance(value, (list, tuple)) else value
    if isinstance(summary.get("config"), dict):
        row.update(flatten(summary["config"]))
    return row


def read_table(run_dir: Path, name: str, run: str) -> pd.DataFrame | None:
    """A run's table (from its journal if it was killed mid-run: read_run_table) with `run` as
    first column; None if absent. Raises if unreadable."""
    table = read_run_table(run_dir, name)
    if table is None:
        return None
    frame = table.to_pandas()
    frame.insert(0, "run", run)
    return frame


def tidy_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns mixing types (cfg.trainer.precision: 32 | 'bf16') -> strings, so parquet
    can store them. Missing values stay missing."""
    for column in frame.columns:
        if frame[column].dtype != object:
            continue
        kinds = {type(v) for v in frame[column] if v is not None and not pd.isna(v)}
        if len(kinds) > 1:
            frame[column] = frame[column].map(
                lambda v: v if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)
            )
    return frame


def concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame({"run": pd.Series([], dtype="str")})
    return tidy_columns(pd.concat(parts, ignore_index=True))


def collect(directory: str | os.PathLike, *, write: bool = True) -> Collected:
    """Read every run under `directory` into tables; with write=True also write them into it."""
    directory = Path(directory)
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise CollectError(f"{directory} {what}")
    run_dirs = find_run_dirs(directory)
    if not run_dirs:
        raise CollectError(f"{directory} holds no runs (no {SUMMARY} anywhere under it)")

    rows, metrics, calibration, steps, per_class, predictions = [], [], [], [], [], []
    for run_dir in run_dirs:
        run = run_dir.relative_to(directory).as_posix()
        row = read_summary(run_dir, run)
        tables = {}
        for name in (METRICS, CALIBRATION, STEPS, PER_CLASS, PREDICTIONS):
            try:
                tables[name] = read_table(run_dir, name, run)
            except Exception as e:  # noqa: BLE001 - pyarrow raises many kinds on a torn file
                tables[name] = None
                if row["status"] == "completed":
                    row["status"], row["error"] = "failed", f"unreadable {name}: {e}"
                continue
            problem = None if tables[name] is None else table_problem(name, tables[name])
            if problem:  # its rows would break every table they joined
                tables = dict.fromkeys((METRICS, CALIBRATION, STEPS, PER_CLASS, PREDICTIONS))
                row["status"], row["error"] = "failed", PREFIX + problem
                break
        if row["status"] == "completed" and (tables[METRICS] is None or tables[METRICS].empty):
            row["status"], row["error"] = "failed", "status completed but metrics.parquet is missing or empty"
        rows.append(row)
        for table, parts in zip(tables.values(), (metrics, calibration, steps, per_class, predictions)):
            if table is not None:
                parts.append(table)

    summary = pd.DataFrame(rows)
    plain = [c for c in summary.columns if not c.startswith("cfg.")]
    summary = tidy_columns(summary[plain + sorted(set(summary.columns) - set(plain))].copy())
    if "error" not in summary.columns:
        summary["error"] = None
    summary["error"] = summary["error"].astype("str")
    collected = Collected(
        summary=summary,
        runs=concat(metrics),
        calibration=concat(calibration),
        steps=concat(steps) if steps else None,
        per_class=concat(per_class) if per_class else None,
        predictions=concat(predictions) if predictions else None,
    )
    if write:
        try:
            write_tables(collected, directory)
        except OSError as e:
            raise CollectError(f"cannot write the tables into {directory} ({e.strerror or e}); "
                               "make it writable, or collect a writable copy of it") from None
        except PlantedLink as e:
            raise CollectError(str(e)) from None
    return collected


def outdated(directory: Path, run_dirs: list[Path]) -> str | None:
    """Why DIR's summary.parquet does not describe the runs under it, or None if it does: it is
    missing or unreadable, a run's summary.json changed after it was written, or a run is not in
    it. `run_dirs` are find_run_dirs(directory). Rows of runs no longer on disk are no reason:
    tables copied without their run dirs (results/reference/data) stay as they are."""
    table = directory / "summary.parquet"
    if not table.exists():
        return "has no summary.parquet"
    if not run_dirs:
        return None
    written = table.stat().st_mtime_ns
    newer = sum((run_dir / SUMMARY).stat().st_mtime_ns > written for run_dir in run_dirs)
    if newer:
        return f"has {newer} run {'summary' if newer == 1 else 'summaries'} newer than its summary.parquet"
    try:
        listed = set(pd.read_parquet(table, columns=["run"])["run"])
    except Exception:  # noqa: BLE001 - a torn parquet file raises many kinds
        return "has an unreadable summary.parquet"
    missing = sum(run_dir.relative_to(directory).as_posix() not in listed for run_dir in run_dirs)
    if missing:
        return f"has {missing} {'run' if missing == 1 else 'runs'} missing from its summary.parquet"
    return None


def epochs_table(directory: Path) -> Path:
    """DIR's per-epoch table: epochs.parquet, else the runs.parquet an older collect wrote."""
    old = directory / EPOCHS_BEFORE
    return old if not (directory / EPOCHS).exists() and old.exists() else directory / EPOCHS


def write_tables(collected: Collected, directory: Path) -> list[Path]:
    """Write the tables into DIR, listed in its manifest (lossbench.runs.owned); a table no run has now
    is removed only if an earlier collect listed it there."""
    frames = (collected.summary, collected.runs, collected.calibration, collected.steps,
              collected.per_class, collected.predictions)
    wanted = {name: frame for name, frame in zip(TABLE_FILES, frames) if frame is not None}
    manifest = Manifest(directory, "collect")
    manifest.claim(wanted)
    for name, frame in wanted.items():
        atomic_write(directory / name, lambda tmp, frame=frame: frame.to_parquet(tmp, index=False))
    manifest.release(keep=wanted)
    return [directory / name for name in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lossbench.collect",
        description="Collect every run dir (summary.json) under DIR into parquet tables in DIR.",
    )
    parser.add_argument("dir", metavar="DIR", help="a sweep or results dir holding run dirs")
    args = parser.parse_args(argv)
    try:
        collected = collect(args.dir)
    except CollectError as e:
        print(f"lossbench.collect: error: {e}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{n} {status}" for status, n in collected.status_counts().items())
    print(f"found {len(collected.summary)} runs under {args.dir}: {counts}")
    for run, error in collected.bad_runs().items():
        print(f"bad run {run}: {error.removeprefix(PREFIX)} (listed as failed)")
    names = ["summary.parquet", EPOCHS, "calibration.parquet"]
    names += ["steps.parquet"] if collected.steps is not None else []
    names += [PER_CLASS] if collected.per_class is not None else []
    names += [PREDICTIONS] if collected.predictions is not None else []
    print(f"wrote {', '.join(names)} to {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("lossbench.collect", main))
