"""Datasets as tensors in memory: the trainer batches them by index slicing."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from omegaconf import OmegaConf

from lossbench.losses import Task


@dataclass
class Dataset:
    name: str
    task: Task
    n_classes: int
    x_train: torch.Tensor  # float32 (N, features): images flattened row by row
    y_train: torch.Tensor  # long (N,) class indices, or float32 (N, classes) multi-hot
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str  # full | sample | synthetic: results from different sources are never pooled
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

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    def to(self, device: torch.device) -> "Dataset":
        """A copy on `device`; this one stays as it is (it may be the cached one). The clean
        training labels stay on the host, where the per-epoch memorisation metrics read them."""
        return dataclasses.replace(self, **{
            name: getattr(self, name).to(device)
            for name in ("x_train", "y_train", "x_test", "y_test", "x_val", "y_val") if getattr(self, name) is not None
        })


@dataclass(frozen=True)
class Footprint:
    """What a dataset config will give, known before it loads (lossbench/footprint.py adds the
    model's share and refuses what this machine cannot hold)."""

    n_features: int  # the model's input width: pixels of an image, else features
    image_shape: Optional[tuple[int, int, int]]
    bytes: int  # peak host memory while it loads: its tensors and the loader's temporaries
    sizes: str  # the knobs that set `bytes`, for the refusal


@dataclass(frozen=True)
class DatasetInfo:
    task: Task
    load: Callable[[Any], Dataset]
    # Raises DataError when the configured source cannot be had; must not read the data.
    check: Callable[[Any], None]
    # Images (a CNN can train on them) rather than feature vectors
    images: bool = False
    # Class ids as the files label them; dataset.classes picks from these (None: set by the config)
    class_ids: Optional[tuple[int, ...]] = None
    # The data_source a run would record if it loaded now (resume compares it with the old run's).
    source_now: Callable[[Any], str] = lambda cfg: "synthetic"
    # Its size before it loads; None: known only once loaded (then nothing is refused early).
    footprint: Callable[[Any], Optional[Footprint]] = lambda cfg: None
    # The (C, H, W) of its images as the config fixes them, known before loading (None: known
    # only once loaded); a model too small for them is refused before any data loads.
    shape: Callable[[Any], Optional[tuple[int, int, int]]] = lambda cfg: None


def _registry() -> dict[str, DatasetInfo]:
    from lossbench.data import mnist, multi_mnist, multilabel

    digits = tuple(range(10))
    return {
        "mnist": DatasetInfo(Task.single_label, mnist.load_mnist, mnist.check_mnist, True, digits,
                             mnist.source_mnist, mnist.footprint, lambda cfg: mnist.IMAGE_SHAPE),
        "fashion_mnist": DatasetInfo(Task.single_label, mnist.load_fashion_mnist,
                                     mnist.check_fashion_mnist, True, digits, mnist.source_fashion_mnist,
                                     mnist.footprint, lambda cfg: mnist.IMAGE_SHAPE),
        "multilabel": DatasetInfo(Task.multi_label, multilabel.load, lambda cfg: None,
                                  footprint=multilabel.footprint),
        "multi_mnist": DatasetInfo(Task.multi_label, multi_mnist.load, mnist.check_mnist, True, digits,
                                   mnist.source_mnist, multi_mnist.footprint,
                                   lambda cfg: (1, multi_mnist.CELL * cfg.grid, multi_mnist.CELL * cfg.grid)),
    }


DATASETS = _registry()


def expected_n_classes(dataset_cfg: Any) -> int:
    """The number of classes the config will give, known before any data loads."""
    ids = DATASETS[dataset_cfg.name].class_ids
    if ids is None:
        return dataset_cfg.n_classes
    return len(dataset_cfg.classes) if dataset_cfg.get("classes") else len(ids)


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
