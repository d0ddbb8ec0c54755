"""`dataset=table`: a CSV or Parquet table (pandas), one example per row.

`dataset.target` names the label column: integers or strings, whose sorted distinct values are
the classes (recorded as class_names). A list of 0/1 columns (`dataset.target=[a,b,c]`) makes a
multi-label task. Features are the other columns, or `dataset.features`; they must be numeric
(no silent one-hot: encode categories yourself). Rows with a missing value are refused, or
dropped with `dataset.drop_missing=true` (their count is recorded as dropped_rows)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from lossbench.data import Dataset, DatasetInfo, Peek
from lossbench.data.files import (FileDataConfig, assemble, check_fits, existing_path, file_source, multi_hot,
                                  task_of)
from lossbench.errors import DataError
from lossbench.losses import Task

PARQUET = (".parquet", ".pq")


@dataclass
class TableConfig(FileDataConfig):
    name: str = "table"
    # The label column, or a list of 0/1 columns (multi-label)
    target: Any = None
    # The feature columns (null: every column but the target)
    features: Optional[list[str]] = None
    drop_missing: bool = False


def _multi_label(cfg: Any) -> bool:
    """A list of target columns makes a multi-label task, even a list of one."""
    return not isinstance(cfg.target, (str, int))


def _targets(cfg: Any) -> list[str]:
    if cfg.target is None or (_multi_label(cfg) and len(cfg.target) == 0):
        raise DataError("dataset=table needs dataset.target=COLUMN (or a list of 0/1 columns for multi-label)")
    return [str(t) for t in cfg.target] if _multi_label(cfg) else [str(cfg.target)]


def _columns(path: Path) -> list[str]:
    import pandas as pd

    try:
        if path.suffix.lower() in PARQUET:
            import pyarrow.parquet

            return list(pyarrow.parquet.read_schema(path).names)
        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except Exception as error:  # pandas and pyarrow raise many kinds for a file that is not a table
        raise DataError(f"{path} cannot be read as a {'Parquet' if path.suffix.lower() in PARQUET else 'CSV'} "
                        f"table ({type(error).__name__}: {error})") from None


def _read(path: Path, columns: list[str]):
    import pandas as pd

    try:
        if path.suffix.lower() in PARQUET:
            return pd.read_parquet(path, columns=columns)
        return pd.read_csv(path, usecols=columns)[columns]
    except Exception as error:
        raise DataError(f"{path} cannot be read as a table ({type(error).__name__}: {error})") from None


def _chosen(cfg: Any) -> tuple[Path, list[str], list[str]]:
    """The file, its target columns and its feature columns, checked against its header."""
    path = existing_path(cfg)
    if path.is_dir():
        raise DataError(f"dataset.path={cfg.path} is a folder; dataset=table reads a .csv or .parquet file")
    targets, columns = _targets(cfg), _columns(path)
    missing = [t for t in targets if t not in columns]
    if missing:
        raise DataError(f"dataset.target: {', '.join(missing)} is not a column of {path}; its columns: "
                        f"{', '.join(columns)}")
    if cfg.features is not None:
        features = [str(f) for f in cfg.features]
        unknown = [f for f in features if f not in columns]
        if unknown:
            raise DataError(f"dataset.features: {', '.join(unknown)} is not a column of {path}; its columns: "
                            f"{', '.join(columns)}")
    else:
        features = [c for c in columns if c not in targets]
    both = [f for f in features if f in targets]
    if both:
        raise DataError(f"dataset.features: {', '.join(both)} is the target (dataset.target); a label cannot "
                        f"also be a feature")
    if not features:
        raise DataError(f"{path}: no feature columns besides the target {', '.join(targets)}")
    return path, targets, features


def _complete(frame, cfg: Any, path: Path):
    """The rows without a missing value, and how many were dropped."""
    missing = frame.isna().any(axis=1).to_numpy()
    if missing.any() and not cfg.drop_missing:
        rows = np.flatnonzero(missing)
        raise DataError(f"{path}: {len(rows)} rows have missing values (first data rows, from 0: "
                        f"{', '.join(map(str, rows[:5]))}); fix them, or drop them with dataset.drop_missing=true")
    return frame[~missing], int(missing.sum())


def _labels(frame, targets: list[str], multi_label: bool, path: Path) -> tuple[np.ndarray, list[str]]:
    """Class indices and names (the sorted distinct values), or multi-hot and the column names."""
    if multi_label:
        y = frame[targets].to_numpy()
        for i, column in enumerate(targets):
            multi_hot(y[:, [i]], f"{path}: target column {column}")
        return y.astype(np.float32), targets
    values = frame[targets[0]].to_numpy()
    names, y = np.unique(values.astype(str) if values.dtype.kind == "O" else values, return_inverse=True)
    return y.astype(np.int64), [str(n) for n in names]


def _features(frame, features: list[str], path: Path) -> np.ndarray:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    text = [c for c in features if not (is_numeric_dtype(frame[c]) or is_bool_dtype(frame[c]))]
    if text:
        raise DataError(f"{path}: feature column {text[0]} is not numeric (dtype {frame[text[0]].dtype}"
                        f"{f'; also {len(text) - 1} more' if len(text) > 1 else ''}); encode it as numbers or "
                        "leave it out with dataset.features=[...]")
    return frame[features].to_numpy(dtype=np.float64)


def load(cfg: Any) -> Dataset:
    path, targets, features = _chosen(cfg)
    frame, dropped = _complete(_read(path, features + targets), cfg, path)
    if frame.empty:  # else each column reads as text, and the refusal would blame a feature
        raise DataError(f"{path} holds no data rows" + (f" once the {dropped} with missing values are dropped" if dropped else ""))
    x = _features(frame, features, path)
    y, names = _labels(frame, targets, _multi_label(cfg), path)
    return assemble(cfg, x, y, f"{path} ({len(features)} feature columns)", names,
                    info={"feature_columns": features, "dropped_rows": dropped})


def _bytes_needed(path: Path, n_columns: int) -> int:
    """About what reading the table takes: its rows x columns as float64, twice (the frame and
    the feature matrix). A CSV's row count is bounded by its size (a value takes at least 2 bytes)."""
    if path.suffix.lower() in PARQUET:
        import pyarrow.parquet

        rows = pyarrow.parquet.read_metadata(path).num_rows
    else:
        rows = path.stat().st_size // (2 * max(n_columns, 1))
    return 2 * 8 * rows * n_columns


def peek(cfg: Any) -> Peek:
    """The task, classes and features from the header and the target columns alone."""
    path, targets, features = _chosen(cfg)
    n_bytes = _bytes_needed(path, len(features) + len(targets))
    check_fits(n_bytes, f"dataset.path={cfg.path}")
    size = dict(bytes=n_bytes, sizes=f"{path}: {len(features) + len(targets)} columns as float64")
    frame = _read(path, targets).dropna()
    if _multi_label(cfg):
        return Peek(Task.multi_label, len(targets), len(features), **size)
    return Peek(task_of(frame[targets[0]].to_numpy()), int(frame[targets[0]].nunique()), len(features), **size)


INFO = DatasetInfo(TableConfig, load, lambda cfg: None, peek, source_now=file_source)
