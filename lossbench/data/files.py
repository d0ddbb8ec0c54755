"""What the datasets read from a user's files share: their schema base, the refusals every kind
makes, the test split carved where the files have none, standardisation, and the facts a run
records about its data (shape, class names, source path, content hash).

A kind's module (table.py, arrays.py, image_folder.py, vision.py) reads its files into numpy
arrays and hands them to `assemble`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from lossbench.config import DatasetConfig
from lossbench.training.footprint import memory_bytes
from lossbench.data import Dataset
from lossbench.data.pixels import pixel_stats
from lossbench.data.split import train_test_state
from lossbench.errors import DataError
from lossbench.losses import Task

# The data_source of every run on user files: they never pool with the built-in sets
SOURCE = "files"


@dataclass
class FileDataConfig(DatasetConfig):
    # The file or folder to read (required)
    path: Optional[str] = None
    # Held out for testing when the files have no test split: stratified by class (single-label)
    # or random (multi-label), drawn from `seed` (split_seed re-draws it)
    test_fraction: float = 0.2


def existing_path(cfg: Any) -> Path:
    """dataset.path, refused when unset or missing."""
    if not cfg.path:
        raise DataError(f"dataset={cfg.name} needs dataset.path=FILE_OR_FOLDER (the data to read)")
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise DataError(f"dataset.path={cfg.path} does not exist")
    return path


def check_test_fraction(cfg: Any) -> None:
    if not 0 < cfg.test_fraction < 1:
        raise DataError(f"dataset.test_fraction={cfg.test_fraction!r} must be in (0, 1)")


def check_fits(n_bytes: int, what: str) -> None:
    """Refuse data that would not fit in this machine's memory, before reading it."""
    if n_bytes > memory_bytes():
        raise DataError(f"{what} needs about {n_bytes / 2**30:,.1f} GiB in memory; this machine has "
                        f"{memory_bytes() / 2**30:,.1f} GiB")


def some_rows(y: np.ndarray, where: str) -> None:
    if not len(y):
        raise DataError(f"{where}: holds no examples (0 rows)")


def single_label(y: np.ndarray, where: str) -> np.ndarray:
    """Integer class indices (N,) as int64, refusing what is not a class index."""
    some_rows(y, where)
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not np.array_equal(y, np.round(y)):
            raise DataError(f"{where}: labels must be whole class indices 0..K-1; found non-integer values")
    elif y.dtype.kind not in "iub":
        raise DataError(f"{where}: labels must be class indices 0..K-1 (integers); got dtype {y.dtype}")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise DataError(f"{where}: labels out of range: {int(y.min())} is negative; class indices are 0..K-1")
    return y


def multi_hot(y: np.ndarray, where: str) -> np.ndarray:
    """(N, K) 0/1 labels as float32, refusing any other value."""
    some_rows(y, where)
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        label = f", label {col}" if y.shape[1] > 1 else ""  # a table checks one target column at a time
        raise DataError(f"{where}: multi-label targets must be 0/1; row {row}{label} holds {y[row, col].item()}")
    return y.astype(np.float32)


def task_of(y: np.ndarray) -> Task:
    return Task.single_label if y.ndim == 1 else Task.multi_label


def finite(x: np.ndarray, where: str) -> None:
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        rows = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))
        raise DataError(f"{where}: {len(rows)} rows hold NaN or inf features (first rows: "
                        f"{', '.join(map(str, rows[:5]))}); fix or drop them")


def carve_test(x: np.ndarray, y: np.ndarray, cfg: Any) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test): dataset.test_fraction held out for testing."""
    from sklearn.model_selection import train_test_split

    stratify = y if y.ndim == 1 else None
    try:
        train, test = train_test_split(np.arange(len(y)), test_size=cfg.test_fraction, stratify=stratify,
                                       random_state=train_test_state(cfg, cfg.seed))
    except ValueError as error:  # too few examples, or a class too rare to stratify
        raise DataError(f"dataset.test_fraction={cfg.test_fraction} cannot split the {len(y)} examples"
                        f"{' stratified by class' if stratify is not None else ''} ({error})") from None
    train, test = np.sort(train), np.sort(test)
    return x[train], y[train], x[test], y[test]


def _vectors(x_train: np.ndarray, x_test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 features standardised per feature by the training split (a constant feature is
    only centred)."""
    x_train, x_test = x_train.astype(np.float64), x_test.astype(np.float64)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray((a - mean) / std, dtype=np.float32))

    return tensor(x_train), tensor(x_test)


def content_hash(*arrays: Optional[np.ndarray]) -> str:
    """SHA-256 of the arrays as read (before any split): the same files give the same hash."""
    digest = hashlib.sha256()
    for array in arrays:
        if array is not None:
            digest.update(str((array.dtype.str, array.shape)).encode())
            digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _n_classes(y: np.ndarray, others: dict[str, Optional[np.ndarray]], origin: str,
               class_names: Optional[Sequence[str]]) -> int:
    """The class count the training labels give, refusing one class only and other splits' labels
    that do not fit it."""
    if y.ndim == 2:
        for split, labels in others.items():
            if labels is not None and labels.shape[1:] != y.shape[1:]:
                raise DataError(f"{origin}: {split} labels have {labels.shape[1]} columns, the training "
                                f"labels {y.shape[1]}")
        return y.shape[1]
    present = np.unique(y)
    if len(present) < 2:
        raise DataError(f"{origin}: the training labels hold one class only ({class_name(class_names, present)}); "
                        "a classifier needs two or more")
    for split, labels in others.items():
        if labels is not None and len(labels) and labels.max() > y.max():
            raise DataError(f"{origin}: {split} labels out of range: {int(labels.max())} is above the "
                            f"training labels' largest class {int(y.max())}")
    return int(y.max()) + 1


def _label_tensor(y: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(y.astype(np.int64) if y.ndim == 1 else y)


def assemble(cfg: Any, x: np.ndarray, y: np.ndarray, origin: str, class_names: Optional[Sequence[str]] = None,
             x_test: Optional[np.ndarray] = None, y_test: Optional[np.ndarray] = None,
             x_val: Optional[np.ndarray] = None, y_val: Optional[np.ndarray] = None,
             image_shape: Optional[tuple[int, int, int]] = None, info: Optional[dict] = None) -> Dataset:
    """A Dataset from arrays already checked for their kind: x (N, features) numbers, or uint8
    images flattened channels first with `image_shape`; y class indices (N,) or multi-hot (N, K).
    The test split is carved when there is none."""
    task = task_of(y)
    n_classes = _n_classes(y, {"test": y_test, "val": y_val}, origin, class_names)
    digest = content_hash(x, y, x_test, y_test, x_val, y_val)
    vectors = image_shape is None or x.dtype != np.uint8  # vectors, or float images: standardised once
    if vectors:  # before the test split is carved, so the rows named are the file's
        for part, name in ((x, ""), (x_test, ", x_test"), (x_val, ", x_val")):
            if part is not None:
                finite(part, origin + name)
    if x_test is None:
        check_test_fraction(cfg)
        x, y, x_test, y_test = carve_test(x, y, cfg)
    if vectors:
        x_train_t, x_test_t = _vectors(x, x_test)
        stats = None
    else:
        x_train_t, x_test_t = torch.from_numpy(x), torch.from_numpy(x_test)
        stats = pixel_stats(x_train_t, image_shape[0], origin)
    n_rows = sum(len(a) for a in (x, x_test, x_val) if a is not None)
    facts = {"data_shape": [n_rows, *(image_shape or x.shape[1:])],
             "class_names": list(class_names) if class_names is not None else [str(c) for c in range(n_classes)],
             "source_path": str(Path(cfg.path).expanduser().resolve()) if cfg.get("path") else origin,
             "content_hash": digest, **(info or {})}
    val = {}
    if x_val is not None:
        val = {"x_val": torch.from_numpy(x_val) if stats is not None else _vectors(x, x_val)[1],
               "y_val": _label_tensor(y_val)}
    return Dataset(name=cfg.name, task=task, n_classes=n_classes, x_train=x_train_t, y_train=_label_tensor(y),
                   x_test=x_test_t, y_test=_label_tensor(y_test), source=SOURCE, origin=origin,
                   image_shape=image_shape, info=facts, pixel_stats=stats, **val)


def class_name(names: Optional[Sequence[str]], ids: np.ndarray) -> str:
    return ", ".join(names[i] if names is not None else str(i) for i in ids)


def file_source(cfg: Any) -> str:
    """The data_source of a run on files (DatasetInfo.source_now)."""
    return SOURCE
