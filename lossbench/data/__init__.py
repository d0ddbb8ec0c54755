"""Datasets as tensors in memory: the trainer batches them by index slicing.

May import lossbench.errors, losses (a task's kind), the config schema's dataset types,
training.footprint (a dataset's size) and runs.results.atomic_write (the decoded-data cache);
never the training loop, runs or report/.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from omegaconf import OmegaConf

from lossbench.losses import Task


@dataclass
class Dataset:
    name: str
    task: Task
    n_classes: int
    # (N, features): float32 vectors, or images flattened row by row (channels first). Images may
    # be held as uint8 pixels with `pixel_stats` set: `inputs` makes each batch float on its device.
    x_train: torch.Tensor
    y_train: torch.Tensor  # long (N,) class indices, or float32 (N, classes) multi-hot
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str  # full | sample | synthetic | files: results from different sources are never pooled
    origin: str  # where exactly the data came from, for the log and the summary
    # (channels, height, width) of an image set, so a CNN can unflatten x; None for vector data
    image_shape: Optional[tuple[int, int, int]] = None
    # The training labels before label noise (None when there is none): the memorisation curve
    # scores the model on the flipped examples against both.
    y_train_clean: Optional[torch.Tensor] = None
    # Facts about the data for summary.json: class ids, realised noise rate, label frequencies
    info: dict[str, Any] = field(default_factory=dict)
    # The validation split carved from the training split (lossbench/data/split.py): its labels
    # are the training kind (noisy under label noise). None with dataset.val_fraction=0.
    x_val: Optional[torch.Tensor] = None
    y_val: Optional[torch.Tensor] = None
    # uint8 images: the per-channel (mean, std) of the training pixels scaled to [0, 1], shape
    # (channels, 1) each. Memory holds a quarter of float32; `inputs` standardises a batch.
    pixel_stats: Optional[tuple[torch.Tensor, torch.Tensor]] = None

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    def inputs(self, rows: torch.Tensor) -> torch.Tensor:
        """What the model takes for rows of x: float32, uint8 pixels standardised per channel
        (on the rows' device, one batch at a time)."""
        if self.pixel_stats is None:
            return rows
        mean, std = self.pixel_stats  # (C, 1): rows (..., C*H*W) viewed as (..., C, H*W); a stack of seeds' batches too
        pixels = rows.float().div_(255.0).unflatten(-1, (len(mean), -1))
        return pixels.sub_(mean).div_(std).flatten(-2)

    def to(self, device: torch.device) -> "Dataset":
        """A copy on `device`; this one stays as it is (it may be the cached one). The clean
        training labels stay on the host, where the per-epoch memorisation metrics read them."""
        moved = {name: getattr(self, name).to(device)
                 for name in ("x_train", "y_train", "x_test", "y_test", "x_val", "y_val") if getattr(self, name) is not None}
        if self.pixel_stats is not None:
            moved["pixel_stats"] = tuple(t.to(device) for t in self.pixel_stats)
        return dataclasses.replace(self, **moved)


@dataclass(frozen=True)
class Peek:
    """What validation needs to know about a dataset before it loads: for built-in data it follows
    from the config, for file data from a cheap read (a header, the labels, a folder listing)."""

    task: Task
    n_classes: int
    n_features: int
    image_shape: Optional[tuple[int, int, int]] = None
    # The files bring their own validation split (an image folder's DIR/val)
    own_val: bool = False
    # File data: about the bytes loading it takes, from the same read, and what sets them
    # (peeked_footprint); None: not known before loading
    bytes: Optional[int] = None
    sizes: str = ""


@dataclass(frozen=True)
class Footprint:
    """What a dataset config will give, known before it loads (lossbench/training/footprint.py adds the
    model's share and refuses what this machine cannot hold)."""

    n_features: int  # the model's input width: pixels of an image, else features
    image_shape: Optional[tuple[int, int, int]]
    bytes: int  # peak host memory while it loads: its tensors and the loader's temporaries
    sizes: str  # the knobs that set `bytes`, for the refusal


@dataclass(frozen=True)
class DatasetInfo:
    schema: type  # the structured config of conf/dataset/<name>.yaml (a DatasetConfig subclass)
    load: Callable[[Any], Dataset]
    # Raises DataError when the configured source cannot be had; must not read the data.
    check: Callable[[Any], None]
    peek: Callable[[Any], Peek]
    # The task when the dataset fixes it; None: the files decide (peek reads it)
    task: Optional[Task] = None
    # Can hold images (a CNN can train on them) rather than only feature vectors
    images: bool = False
    # Class ids as the files label them; dataset.classes picks from these (None: 0..n_classes-1)
    class_ids: Optional[tuple[int, ...]] = None
    # The data_source a run would record if it loaded now (resume compares it with the old run's).
    source_now: Callable[[Any], str] = lambda cfg: "synthetic"
    # Its size before it loads; None: known only once loaded (then nothing is refused early).
    # Unless given: what its peek says (file data: the size of the files it read).
    footprint: Callable[[Any], Optional[Footprint]] = lambda cfg: peeked_footprint(cfg)
    # The (C, H, W) of its images as the config fixes them, known before loading (None: known
    # only once loaded); a model too small for them is refused before any data loads.
    shape: Callable[[Any], Optional[tuple[int, int, int]]] = lambda cfg: None


def _registry() -> dict[str, DatasetInfo]:
    from lossbench.data import arrays, image_folder, mnist, multi_mnist, multilabel, table, vision

    return {
        "mnist": mnist.MNIST_INFO,
        "fashion_mnist": mnist.FASHION_MNIST_INFO,
        "multilabel": multilabel.INFO,
        "multi_mnist": multi_mnist.INFO,
        "table": table.INFO,
        "arrays": arrays.INFO,
        "image_folder": image_folder.INFO,
        "torchvision": vision.INFO,
    }


DATASETS = _registry()


# The last peek: validation asks several times per run, and a file's peek reads it.
_peeked: dict[str, Peek] = {}


def peek(dataset_cfg: Any) -> Peek:
    path = Path(str(dataset_cfg.get("path") or ""))
    key = OmegaConf.to_yaml(dataset_cfg) + (str(path.stat().st_mtime_ns) if path.is_file() else "")
    if key not in _peeked:
        _peeked.clear()
        _peeked[key] = DATASETS[dataset_cfg.name].peek(dataset_cfg)
    return _peeked[key]


def peeked_footprint(dataset_cfg: Any) -> Optional[Footprint]:
    """A dataset's footprint from its peek (DatasetInfo.footprint's default): a file dataset's
    size, so footprint.py counts the data with the model as it does for the built-in sets."""
    seen = peek(dataset_cfg)
    return None if seen.bytes is None else Footprint(seen.n_features, seen.image_shape, seen.bytes, seen.sizes)


def expected_n_classes(dataset_cfg: Any) -> int:
    """The number of classes the config will give, known before any data loads."""
    return len(dataset_cfg.classes) if dataset_cfg.get("classes") else peek(dataset_cfg).n_classes


def check_source_available(dataset_cfg: Any) -> None:
    DATASETS[dataset_cfg.name].check(dataset_cfg)


# The last dataset loaded in this process: a sweep under the basic launcher runs every job in
# one process, and most of its jobs share one dataset config. Training never writes to it.
_last: dict[str, Dataset] = {}


def load_dataset(dataset_cfg: Any) -> Dataset:
    key = OmegaConf.to_yaml(dataset_cfg)
    if key not in _last:
        from lossbench.data.conditions import apply_conditions

        _last.clear()
        _last[key] = apply_conditions(DATASETS[dataset_cfg.name].load(dataset_cfg), dataset_cfg)
    return _last[key]


# The last dataset moved to a device, and its copy there: the seeds of a batched group, and a
# sweep's jobs, train on one copy instead of one each.
_moved: list = []


def on_device(data: Dataset, device: torch.device) -> Dataset:
    if not (_moved and _moved[0] is data and _moved[1] == device):
        _moved[:] = [data, device, data.to(device)]
    return _moved[2]
