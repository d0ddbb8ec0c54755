"""What a run writes into its directory, each file atomically (temp file + rename), so a crash
leaves the previous complete version, never half a file; while it trains, its epochs go to its
journal (lossbench.runs.journal)."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lossbench.runs import arrow_columns, journal
from lossbench.errors import UserError
from lossbench.runs.owned import PlantedLink, open_nofollow
from lossbench.training.metrics import TIMINGS
from lossbench.training.selection import select_epoch

if TYPE_CHECKING:  # the report writes DataFrames; a run writes rows and columns, without pandas
    import pandas as pd

SUMMARY = "summary.json"
METRICS = "metrics.parquet"
CALIBRATION = "calibration.parquet"
STEPS = "steps.parquet"
PER_CLASS = "per_class.parquet"
PREDICTIONS = "predictions.parquet"
LOCK = ".lossbench.lock"
LOG = "lossbench.log"  # Hydra's job log (conf/hydra/job_logging/lossbench.yaml, hydra.job.name)
TABLES = (METRICS, CALIBRATION, STEPS, PER_CLASS, PREDICTIONS)
# Written for every finished epoch: a finished run that finished one and lacks them is incomplete.
EVERY_EPOCH = (METRICS, PREDICTIONS)
# The tables whose rows each epoch adds to; the others hold the last epoch's.
APPENDED = (METRICS, STEPS, PER_CLASS)
# Every name lossbench writes at the top of a run dir: checked for planted links before a write.
RUN_FILES = (SUMMARY, *TABLES, LOCK, LOG, *journal.FILES)
# The tables lossbench.collect writes into a sweep directory (named here, for the sweep's link check,
# without importing collect and pandas with it).
EPOCHS = "epochs.parquet"
# The name EPOCHS had before #19: tables collected then (results/reference/data/) still read.
EPOCHS_BEFORE = "runs.parquet"
# Each collected table and the run file it gathers, in the order collect writes them
GATHERS = {"summary.parquet": SUMMARY, EPOCHS: METRICS, "calibration.parquet": CALIBRATION,
           "steps.parquet": STEPS, PER_CLASS: PER_CLASS, PREDICTIONS: PREDICTIONS}
TABLE_FILES = tuple(GATHERS)
# a tuned study's trials and the choice per loss (lossbench.runs.tuning_trials), in its sweep dir
TUNING = "tuning.parquet"

# mkstemp creates 0600 files; a finished file gets what open() would have given it under the
# process's umask (read once: os.umask can only be read by setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call write(tmp_path) for a temp file beside `path`, then move it into place. Follows no
    link at `path` (lossbench.runs.owned): mkstemp's O_EXCL refuses one, and the rename replaces it."""
    if path.is_symlink():
        raise PlantedLink(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp name ends in the target's suffix: writers such as matplotlib infer the format from it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)
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


def arrow_table(records: list[dict] | dict[str, np.ndarray | pa.Array] | pd.DataFrame) -> pa.Table:
    """Rows, columns or a DataFrame as an Arrow table. Rows: a column for every key any row has,
    in first-seen order (null where a row lacks it; pandas reads it back as NaN, as it would a
    DataFrame built from the rows)."""
    if isinstance(records, dict):
        return arrow_columns.table(records)
    if not isinstance(records, list):
        return pa.Table.from_pandas(records, preserve_index=False)
    columns = dict.fromkeys(key for row in records for key in row)
    return arrow_columns.table({key: [row.get(key) for row in records] for key in columns})


def write_table(path: Path, records: list[dict] | dict[str, np.ndarray] | pd.DataFrame) -> None:
    """Rows, columns (or a DataFrame) as a parquet file, atomically. Rows and columns are written
    without pandas (lossbench.runs.arrow_columns): a run rewrites its tables after every epoch, and a
    DataFrame in between cost three times as much, and pandas' import a second of start-up."""
    table = arrow_table(records)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def temp_files(run_dir: Path) -> list[Path]:
    """Temp files atomic_write leaves behind when its process is killed mid-write: only those of
    the run's own files, so a user's `.notes.tmp` stays."""
    names = (SUMMARY, *TABLES, journal.PREDICTIONS_NOW)
    return sorted(path for name in names for path in run_dir.glob(f".{name}.*.tmp*") if not path.is_symlink())


def remove_journal(run_dir: Path) -> None:
    """The run's journal, once its tables are written, or when a new run replaces a killed one's.
    A symlink at its name is not lossbench's and stays (a run refuses to start beside one)."""
    for name in journal.FILES:
        if journal.real_file(run_dir / name):
            (run_dir / name).unlink()


def read_run_table(run_dir: Path, name: str) -> Optional[pa.Table]:
    """A run's table `name` (one of TABLES): from its journal while it has one (it is training,
    or was killed before writing its tables), else its parquet file; None if it has neither.
    Raises if the file is unreadable."""
    if journal.journaled(run_dir):
        if name == PREDICTIONS:
            return journal.read_predictions(run_dir)
        pieces = journal.read_journal(run_dir).get(name)
        if not pieces:
            return None
        return pa.concat_tables(pieces, promote_options="permissive") if name in APPENDED else pieces[-1]
    path = run_dir / name
    return pq.read_table(path) if path.exists() else None


def unreadable_files(run_dir: Path, summary: dict) -> list[str]:
    """Why a run's files do not back up its summary: its journal still there (its tables were never
    written), a table missing (metrics.parquet or predictions.parquet once an epoch finished) or
    unreadable. Reads parquet footers only, not the data."""
    problems = ["its journal is there: its tables were never written"] if journal.journaled(run_dir) else []
    for name in TABLES:
        path = run_dir / name
        if not path.exists():
            if name in EVERY_EPOCH and summary.get("epochs_completed"):
                problems.append(f"{name} is missing")
            continue
        try:
            pq.read_metadata(path)
        except Exception as error:  # noqa: BLE001 - pyarrow raises several kinds on a torn file
            problems.append(f"{name} is unreadable ({type(error).__name__})")
    return problems


class RunDirBusy(UserError):
    """Another live process is writing into this run directory."""

    def __init__(self, run_dir: Path, holder: str):
        super().__init__(
            f"{run_dir} is in use by {holder}: one run writes into a directory at a time. Wait for "
            "it to end, or give this run another directory (hydra.run.dir=... or hydra.sweep.dir=...)")
        self.holder = holder


class RunDirLock:
    """An exclusive lock on a run directory for a run's lifetime: one writer per directory.

    fcntl.flock on `.lossbench.lock`, which holds the owner's pid and host. The kernel drops the
    lock when its process dies however it dies, so a lock file left by a dead process is stale by
    construction and simply taken over. (flock is per host: two machines sharing a directory over
    NFS are not kept apart.)
    """

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK
        self.file = None

    def __enter__(self) -> "RunDirLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Not open(path, "a+"): that follows a link planted at the lock's name, and the truncate
        # below would empty its target.
        file = os.fdopen(open_nofollow(self.path, os.O_RDWR | os.O_CREAT), "r+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "another process"
            file.close()
            raise RunDirBusy(self.path.parent, holder) from None
        file.seek(0)
        file.truncate()
        file.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
        file.flush()
        self.file = file
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()  # closing releases the lock; the file stays, harmless once unlocked


def lock_holder(run_dir: Path) -> Optional[str]:
    """Who holds run_dir's lock right now, or None if no live process does. Only looks: the
    lock file is neither created nor rewritten."""
    try:
        file = os.fdopen(open_nofollow(run_dir / LOCK, os.O_RDONLY))
    except (FileNotFoundError, PlantedLink):
        return None
    with file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return file.read().strip() or "another process"
        fcntl.flock(file, fcntl.LOCK_UN)
        return None


def read_summary(run_dir: Path) -> Optional[dict[str, Any]]:
    """The run's summary, or None if there is none or it cannot be read."""
    try:
        return json.loads((run_dir / SUMMARY).read_text())
    except (OSError, ValueError):
        return None


class RunFiles:
    """The files of one run directory. Each finished epoch goes into the run's journal, so a dead
    run loses at most the epoch it was in; the run's end (`write_tables`) writes its tables."""

    def __init__(self, run_dir: Path, identity: dict[str, Any]):
        self.run_dir = run_dir
        self.identity = identity  # loss, dataset, data_source, seed: on every table row
        self.metrics: list[dict] = []
        self.steps: list[dict] = []
        self.per_class: list[dict] = []
        self.calibration: list[dict] = []
        self.predictions: Optional[dict[str, Any]] = None
        self.journal = journal.Journal(run_dir)
        self.recorded = False  # an epoch (or a run's last steps) was handed over: metrics.parquet is written

    def add_epoch(self, rows: list[dict], calibration: list[dict], steps: list[dict],
                  per_class: list[dict] = (), predictions: Optional[dict[str, np.ndarray]] = None) -> None:
        new = {METRICS: [{**self.identity, **row} for row in rows],
               CALIBRATION: [{**self.identity, **row} for row in calibration],
               STEPS: [{**self.identity, **row} for row in steps],
               PER_CLASS: [{**self.identity, **row} for row in per_class]}
        self.metrics += new[METRICS]
        self.steps += new[STEPS]
        self.per_class += new[PER_CLASS]
        if calibration:
            self.calibration = new[CALIBRATION]
        self.recorded = True
        # metrics always, as a run that ends inside its first epoch has always written an empty table
        self.journal.add_epoch({name: arrow_table(records) for name, records in new.items()
                                if records or name == METRICS})
        if predictions is not None:  # after the journal: a kill between the two leaves them an epoch behind, not ahead
            n = len(predictions["example"])
            self.predictions = {**{key: arrow_columns.repeated(value, n) for key, value in self.identity.items()},
                                **predictions}
            table = arrow_table(self.predictions)
            atomic_write(self.run_dir / journal.PREDICTIONS_NOW, lambda tmp: journal.write_predictions(tmp, table))

    def write_tables(self) -> None:
        """The run's tables from its epochs, then its journal removed: once the run has ended."""
        self.journal.close()
        for name, records in ((METRICS, self.metrics), (CALIBRATION, self.calibration), (STEPS, self.steps),
                              (PER_CLASS, self.per_class), (PREDICTIONS, self.predictions)):
            if records or (name == METRICS and self.recorded):
                write_table(self.run_dir / name, records)
        remove_journal(self.run_dir)

    def final_test_metrics(self) -> dict[str, float]:
        """test_<metric> of the last completed epoch: a fixed budget, nothing selected on test."""
        tests = [row for row in self.metrics if row["split"] == "test"]
        if not tests:
            return {}
        skip = {*self.identity, "epoch", "split", *TIMINGS}
        return {f"test_{key}": value for key, value in tests[-1].items() if key not in skip}

    def selected_epoch(self, metric: Optional[str]) -> Optional[int]:
        """The epoch the val rows select (lossbench.training.selection.select_epoch); None without them."""
        return select_epoch([row[metric] for row in self.metrics if row["split"] == "val"]) if metric else None

    def untrained_epochs(self, through: int) -> list[int]:
        """The epochs up to `through` in which every step was skipped (trainer.on_nonfinite=skip),
        read from the step rows: an epoch's last step is always logged, with the cumulative
        skipped count."""
        last = {row["epoch"]: (row["step"], row["skipped_steps"]) for row in self.steps}
        untrained, before = [], (0, 0)
        for epoch in range(1, through + 1):
            if epoch not in last:
                continue
            (step, skipped), (step_before, skipped_before) = last[epoch], before
            if step > step_before and skipped - skipped_before == step - step_before:
                untrained.append(epoch)
            before = last[epoch]
        return untrained

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.run_dir / SUMMARY, summary)
