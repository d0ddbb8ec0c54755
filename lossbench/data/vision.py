"""`dataset=torchvision dataset.class_name=NAME`: a classification dataset class of torchvision
(MNIST, FashionMNIST, KMNIST, CIFAR10, CIFAR100, ...: any with the `root`/`train`/`download`
signature), its official train and test splits read from `dataset.root`. Nothing is downloaded
unless `dataset.download=true`; missing files are one line saying where torchvision looked.

Images come from the class's `data`/`targets` arrays where it has them (all of the above),
else one sample at a time through its `__getitem__`, once per process."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lossbench.config import DatasetConfig
from lossbench.data import Dataset, DatasetInfo, Peek
from lossbench.data.arrays import Layout, image_layout
from lossbench.data.files import assemble, file_source
from lossbench.errors import DataError
from lossbench.losses import Task


@dataclass
class TorchvisionConfig(DatasetConfig):
    name: str = "torchvision"
    # A class of torchvision.datasets, e.g. CIFAR10, MNIST, FashionMNIST
    class_name: str = "CIFAR10"
    # Where its files are, in torchvision's own layout (e.g. <root>/cifar-10-batches-py)
    root: str = "data"
    download: bool = False


def _class(name: str):
    import torchvision.datasets

    found = getattr(torchvision.datasets, name, None)
    if not isinstance(found, type):
        near = [n for n in dir(torchvision.datasets) if n.lower() == name.lower()]
        raise DataError(f"dataset.class_name={name} is not a dataset class of torchvision.datasets"
                        f"{f'; did you mean {near[0]}?' if near else ''} (e.g. CIFAR10, MNIST, FashionMNIST)")
    return found


@functools.lru_cache(maxsize=2)
def _split(name: str, root: str, train: bool, download: bool):
    """The class's split (constructed once per process: peek, check and load share it)."""
    dataset_class = _class(name)
    try:
        return dataset_class(root, train=train, download=download)
    except TypeError as error:
        raise DataError(f"dataset.class_name={name} does not take root/train/download ({error}); "
                        "dataset=torchvision reads classes that do, e.g. CIFAR10, MNIST") from None
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted. ..."
        how = "pass dataset.download=true on a machine with a network" if not download else "check the network"
        raise DataError(f"dataset=torchvision dataset.class_name={name}: no usable files under "
                        f"{Path(root).resolve()} (torchvision: {str(error).splitlines()[0]}); put them there, "
                        f"point dataset.root at them, or {how}") from None


def _splits(cfg: Any):
    return [_split(cfg.class_name, str(cfg.root), train, cfg.download) for train in (True, False)]


def _arrays(split) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, ...) uint8 and labels (N,) of a split."""
    data, targets = getattr(split, "data", None), getattr(split, "targets", None)
    if data is None or targets is None:
        pairs = [split[i] for i in range(len(split))]
        data, targets = np.stack([np.asarray(image) for image, _ in pairs]), [label for _, label in pairs]
    return np.asarray(data), np.asarray(targets)


def _images(x: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
    shape, channels_last = image_layout(x.shape, Layout.auto, "torchvision images")
    if channels_last:
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x.reshape(len(x), -1)), shape


def load(cfg: Any) -> Dataset:
    train, test = _splits(cfg)
    (x, y), (x_test, y_test) = _arrays(train), _arrays(test)
    x, shape = _images(x)
    x_test, _ = _images(x_test)
    return assemble(cfg, x, y.astype(np.int64), f"torchvision.datasets.{cfg.class_name} in {Path(cfg.root).resolve()}",
                    getattr(train, "classes", None), x_test, y_test.astype(np.int64), image_shape=shape,
                    info={"source_path": str(Path(cfg.root).resolve())})


def peek(cfg: Any) -> Peek:
    train, test = _splits(cfg)
    (x, y), (x_test, _) = _arrays(train), _arrays(test)
    shape = image_layout(x.shape, Layout.auto, "torchvision images")[0]
    n_classes = len(getattr(train, "classes", None) or np.unique(y))
    # held as read, once more while assemble flattens and copies them
    n_bytes = 2 * (x.nbytes + x_test.nbytes)
    return Peek(Task.single_label, n_classes, int(np.prod(x.shape[1:])), shape, bytes=n_bytes,
                sizes=f"torchvision.datasets.{cfg.class_name}: {len(x) + len(x_test):,} images of {x.shape[1:]}")


INFO = DatasetInfo(TorchvisionConfig, load, lambda cfg: None, peek, Task.single_label, images=True,
                   source_now=file_source)
