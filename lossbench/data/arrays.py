"""`dataset=arrays`: arrays in a `.npz` (numpy) or a `.pt` (a dict of tensors, read with
torch.load(weights_only=True)), with keys `x` and `y`, and optionally `x_test` and `y_test`.

`y` is (N,) integer labels or (N, K) 0/1 multi-hot. Integer labels are classes as a table's are:
their sorted distinct values in `y`, renumbered 0..K-1 and recorded as class_names (labels
{7, 8, 9} make 3 classes named "7", "8", "9", not 10 with 7 empty). `x` is (N, F) feature
vectors or images:
- (N, H, W): one channel;
- (N, A, B, C) with `dataset.layout=auto`: channels last (NHWC) when the last axis is 1, 3 or 4 and
  the second is not; channels first (NCHW) when the second is 1, 3 or 4 and the last is not.
  Anything else (say (N, 3, 32, 3)) is ambiguous and refused: set dataset.layout=nchw or nhwc.
uint8 images are held as pixels and standardised per channel per batch; float images and vectors
are standardised once, by the training split."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import numpy as np

from lossbench.data import Dataset, DatasetInfo, Peek
from lossbench.data.files import (FileDataConfig, assemble, check_fits, existing_path, file_source, multi_hot,
                                  single_label)
from lossbench.errors import DataError
from lossbench.losses import Task

KEYS = ("x", "y", "x_test", "y_test")
CHANNELS = (1, 3, 4)


class Layout(str, Enum):
    auto = "auto"
    nchw = "nchw"
    nhwc = "nhwc"


@dataclass
class ArraysConfig(FileDataConfig):
    name: str = "arrays"
    # How 4-d images lay out their axes: auto infers it (see lossbench/data/arrays.py), or say it
    layout: Layout = Layout.auto


def _npz_shapes(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each array's shape and dtype from its .npy header inside the zip, without reading it."""
    shapes = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            with archive.open(member) as stream:
                version = np.lib.format.read_magic(stream)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(stream)
                shapes[member.removesuffix(".npy")] = (shape, dtype)
    return shapes


def _read(path: Path, keys=KEYS) -> dict[str, np.ndarray]:
    """The arrays of `keys` present in the file, as numpy."""
    try:
        if path.suffix == ".pt":
            import torch

            stored = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            if not isinstance(stored, dict):
                raise DataError(f"{path} holds a {type(stored).__name__}; dataset=arrays reads a dict of "
                                f"tensors with keys {', '.join(KEYS)}")
            return {k: np.asarray(stored[k]) for k in keys if k in stored}
        with np.load(path, allow_pickle=False) as stored:
            return {k: stored[k] for k in keys if k in stored.files}
    except DataError:
        raise
    except Exception as error:  # numpy, zipfile and torch raise many kinds for a foreign file
        raise DataError(f"{path} cannot be read as .npz or .pt arrays ({type(error).__name__}: {error})") from None


def _path(cfg: Any) -> Path:
    path = existing_path(cfg)
    if path.suffix not in (".npz", ".pt"):
        raise DataError(f"dataset.path={cfg.path}: dataset=arrays reads a .npz or .pt file")
    return path


def image_layout(shape: tuple[int, ...], layout: Layout, where: str) -> tuple[tuple[int, int, int] | None, bool]:
    """(C, H, W) of images stored in `shape` (N first), None for vectors (N, F); and whether the
    channels are the last axis."""
    if len(shape) == 2:
        return None, False
    if len(shape) == 3:
        return (1, *shape[1:]), False
    if len(shape) != 4:
        raise DataError(f"{where}: x has shape {tuple(shape)}; give (N, F) vectors or (N, H, W), (N, H, W, C), "
                        "(N, C, H, W) images")
    if layout == Layout.auto:
        last, second = shape[3] in CHANNELS, shape[1] in CHANNELS
        if last == second:
            raise DataError(f"{where}: x of shape {tuple(shape)} could be channels first or last; set "
                            "dataset.layout=nchw or dataset.layout=nhwc")
        layout = Layout.nhwc if last else Layout.nchw
    if layout == Layout.nhwc:
        return (shape[3], shape[1], shape[2]), True
    return tuple(shape[1:]), False


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    if y.ndim == 1:
        return single_label(y, where)
    if y.ndim == 2:
        return multi_hot(y, where)
    raise DataError(f"{where}: y has shape {y.shape}; give (N,) class indices or (N, K) multi-hot")


def _classes(y: np.ndarray, y_test: Optional[np.ndarray], path: Path) -> tuple[np.ndarray, Optional[np.ndarray], list[str]]:
    """Single-label y (and y_test) renumbered by y's sorted distinct values, and those values as
    class names; a test label y lacks is refused (no class to score it against)."""
    names, y = np.unique(y, return_inverse=True)
    if y_test is not None:
        unseen = np.setdiff1d(y_test, names)
        if len(unseen):
            raise DataError(f"{path}: y_test holds label {int(unseen[0])}, which y does not; y's labels: "
                            f"{', '.join(map(str, names))}")
        y_test = np.searchsorted(names, y_test)
    return y, y_test, [str(n) for n in names]


def _images(x: np.ndarray, channels_last: bool) -> np.ndarray:
    """Images flattened channels first, uint8 kept as pixels, any other type as float32."""
    if channels_last:
        x = x.transpose(0, 3, 1, 2)
    x = x.reshape(len(x), -1)
    return np.ascontiguousarray(x if x.dtype == np.uint8 else x.astype(np.float32))


def load(cfg: Any) -> Dataset:
    path = _path(cfg)
    arrays = _read(path)
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"{path} has no array {key!r}; it holds {', '.join(arrays) or 'none of'} "
                            f"(dataset=arrays reads {', '.join(KEYS)})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: x_test and y_test come together; it holds only one of them")
    labels, inputs = {}, {}
    for x_key, y_key in (("x", "y"), ("x_test", "y_test")):
        if x_key not in arrays:
            continue
        x, y = arrays[x_key], arrays[y_key]
        if len(x) != len(y):
            raise DataError(f"{path}: {x_key} has {len(x)} rows and {y_key} {len(y)}; they must match")
        if x.dtype.kind not in "iufb":
            raise DataError(f"{path}: {x_key} holds {x.dtype}; features must be numbers")
        labels[y_key], inputs[x_key] = _labels(y, f"{path}: {y_key}"), x
    shape, channels_last = image_layout(inputs["x"].shape, cfg.layout, f"{path}")
    if "x_test" in inputs and inputs["x_test"].shape[1:] != inputs["x"].shape[1:]:
        raise DataError(f"{path}: x_test has shape {inputs['x_test'].shape[1:]} per example, x {inputs['x'].shape[1:]}")
    x = {k: (_images(v, channels_last) if shape is not None else v).reshape(len(v), -1) for k, v in inputs.items()}
    y, y_test, names = labels["y"], labels.get("y_test"), None
    if y.ndim == 1:
        y, y_test, names = _classes(y, y_test, path)
    return assemble(cfg, x["x"], y, str(path), names, x_test=x.get("x_test"), y_test=y_test, image_shape=shape)


def peek(cfg: Any) -> Peek:
    """The task, classes and input size from the labels and x's header."""
    path = _path(cfg)
    labels = _read(path, ("y", "y_test"))
    if "y" not in labels:
        raise DataError(f"{path} has no array 'y' (dataset=arrays reads {', '.join(KEYS)})")
    y = _labels(labels["y"], f"{path}: y")
    # (shape, dtype) of x and x_test: a .npz's headers, a .pt's memory-mapped tensors
    shapes = _npz_shapes(path) if path.suffix == ".npz" else {k: (v.shape, v.dtype) for k, v in
                                                               _read(path, ("x", "x_test")).items()}
    if "x" not in shapes:
        raise DataError(f"{path} has no array 'x' (dataset=arrays reads {', '.join(KEYS)})")
    x_shape, dtype = shapes["x"]
    rows = sum(shapes[k][0][0] for k in ("x", "x_test") if k in shapes)
    n_bytes = int(rows * np.prod(x_shape[1:]) * (1 if dtype == np.uint8 else 8) * 2)
    check_fits(n_bytes, f"{path}")
    shape = image_layout(x_shape, cfg.layout, str(path))[0]
    n_features = int(np.prod(x_shape[1:]))
    sizes = f"{rows:,} rows of {n_features:,} values in {path}"
    if y.ndim == 2:
        return Peek(Task.multi_label, y.shape[1], n_features, shape, bytes=n_bytes, sizes=sizes)
    y_test = _labels(labels["y_test"], f"{path}: y_test") if "y_test" in labels else None
    return Peek(Task.single_label, len(_classes(y, y_test, path)[2]), n_features, shape, bytes=n_bytes, sizes=sizes)


INFO = DatasetInfo(ArraysConfig, load, lambda cfg: None, peek, images=True, source_now=file_source)
