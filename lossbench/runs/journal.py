"""A run's finished epochs while it trains: appended to one file instead of five parquet tables
rewritten whole after every epoch (which cost a sweep of small runs more than its evaluation).

`.lossbench.journal` takes each epoch's new rows (metrics, steps, per-class) and its calibration
table, as Arrow IPC streams, each framed by its length, the epoch closed by an end frame, in one
append (opened in place, O_APPEND | O_NOFOLLOW). The per-example predictions (the views `last` and
`selected`, new every epoch) are `.lossbench.predictions`, an Arrow IPC file replaced atomically
after the append. A run that ends in any way the process lives through writes its parquet tables
and removes both (lossbench.runs.results.RunFiles); one killed outright (SIGKILL, the OOM killer),
or whose tables could not be written, leaves them, and every reader of a run's tables
(`read_run_table`) reads them instead: its epochs up to the last closed one, so a kill loses at
most the epoch in flight, as the rewritten tables did.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Optional

import pyarrow as pa

from lossbench.runs.owned import open_nofollow

JOURNAL = ".lossbench.journal"
PREDICTIONS_NOW = ".lossbench.predictions"
FILES = (JOURNAL, PREDICTIONS_NOW)
_END = "end of epoch"
_LENGTH = struct.Struct("<Q")


def _stream(table: pa.Table, name: str) -> bytes:
    table = table.replace_schema_metadata({"table": name})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data = sink.getvalue().to_pybytes()
    return _LENGTH.pack(len(data)) + data


class Journal:
    """The appending end of a run's journal; opened (created) at the first epoch."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.fd: Optional[int] = None

    def add_epoch(self, tables: dict[str, pa.Table]) -> None:
        """One epoch's tables, by run file name, appended as one write and closed by an end frame."""
        data = b"".join(_stream(table, name) for name, table in tables.items()) + _stream(pa.table({}), _END)
        if self.fd is None:
            self.fd = open_nofollow(self.run_dir / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def journaled(run_dir: Path) -> bool:
    """Whether run_dir holds a journal: its run is training, or died before writing its tables. A
    symlink at a journal's name is not one (it is never read, and must not hide the tables)."""
    return any(real_file(run_dir / name) for name in FILES)


def read_journal(run_dir: Path) -> dict[str, list[pa.Table]]:
    """Each run file's tables from the journal's closed epochs, in order; a torn last epoch (the
    process died writing it) is left out."""
    tables: dict[str, list[pa.Table]] = {}
    data = _read(run_dir / JOURNAL) or b""
    position, epoch = 0, {}
    while position + _LENGTH.size <= len(data):
        (length,) = _LENGTH.unpack_from(data, position)
        start, position = position + _LENGTH.size, position + _LENGTH.size + length
        if position > len(data):
            break
        table = pa.ipc.open_stream(pa.py_buffer(data[start:position])).read_all()
        name = table.schema.metadata[b"table"].decode()
        if name == _END:
            for run_file, piece in epoch.items():
                tables.setdefault(run_file, []).append(piece)
            epoch = {}
        else:
            epoch[name] = table.replace_schema_metadata(None)
    return tables


def read_predictions(run_dir: Path) -> Optional[pa.Table]:
    """The predictions of the run's last finished epoch, None before its first."""
    data = _read(run_dir / PREDICTIONS_NOW)
    return None if data is None else pa.ipc.open_file(pa.py_buffer(data)).read_all()


def real_file(path: Path) -> bool:
    """A journal file lossbench wrote: there, and not a symlink planted at its name."""
    return path.exists() and not path.is_symlink()


def _read(path: Path) -> Optional[bytes]:
    return path.read_bytes() if real_file(path) else None


def write_predictions(path: Path, table: pa.Table) -> None:
    """`table` as an Arrow IPC file at `path` (a temp path: the caller renames it into place)."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
