"""The configuration schema: structured configs that Hydra type-checks before the app runs.

Types are checked by Hydra while it merges overrides (`trainer.epochs=abc` never reaches us);
`validate` checks the values that types cannot express, before any data is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from importlib.util import find_spec
from typing import Any, Optional

from hydra.core.config_store import ConfigStore

from lossbench.errors import ConfigError


class Source(str, Enum):
    auto = "auto"
    full = "full"
    sample = "sample"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


# Member names are what users type (trainer.precision=16); an override like `16` arrives as an
# int, which OmegaConf looks up by value, so the numeric members carry int values.
Precision = Enum("Precision", [("32", 32), ("bf16", "bf16"), ("16", 16)])


class OnNonfinite(str, Enum):
    stop = "stop"
    skip = "skip"


@dataclass
class DatasetConfig:
    name: str = "mnist"
    # MNIST family
    root: str = "data"
    source: Source = Source.auto
    download: bool = False
    # synthetic multi-label set (sklearn.datasets.make_multilabel_classification)
    n_samples: int = 5000
    n_features: int = 64
    n_classes: int = 10
    n_labels: int = 3
    test_fraction: float = 0.2
    seed: int = 0


@dataclass
class LossConfig:
    name: str = "ce"


@dataclass
class ModelConfig:
    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [256])
    dropout: float = 0.0
    logit_scale: float = 1.0


@dataclass
class OptimConfig:
    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0


@dataclass
class TrainerConfig:
    epochs: int = 10
    batch_size: int = 64
    device: Device = Device.auto
    threads: Optional[int] = None
    precision: Precision = Precision["32"]
    log_every: int = 50
    on_nonfinite: OnNonfinite = OnNonfinite.stop


@dataclass
class MlflowConfig:
    tracking_uri: str = "sqlite:///results/mlflow.db"
    experiment: Optional[str] = None  # None: the preset's name, else lossbench


@dataclass
class TensorboardConfig:
    dir: str = "tensorboard"  # inside the run directory


@dataclass
class LoggerConfig:
    """The trackers a run also logs to; a tracker is on when its entry is set (logger=mlflow)."""

    mlflow: Optional[MlflowConfig] = None
    tensorboard: Optional[TensorboardConfig] = None


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 0
    # Sweeps skip runs that already completed (or diverged) with the same config; resume=false reruns them.
    resume: bool = True
    # Set by experiment presets; names the sweep directory.
    experiment: Optional[str] = None


def register_configs() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)


def missing_trackers(logger: Any) -> list[str]:
    """The trackers switched on whose package cannot be imported; looked up, never imported."""
    return [name for name, options in logger.items() if options is not None and find_spec(name) is None]


def _accepted(values) -> str:
    return ", ".join(sorted(values))


def validate(cfg: Any) -> None:
    """Refuse values the types allow but the run cannot use. Cheap: no data is touched."""
    from lossbench.data import DATASETS, check_source_available
    from lossbench.losses import LOSSES
    from lossbench.model import MODELS
    from lossbench.optim import OPTIMIZERS

    problems: list[str] = []
    if cfg.loss.name not in LOSSES:
        problems.append(f"loss.name={cfg.loss.name!r} is not a loss; accepted: {_accepted(LOSSES)}")
    if cfg.dataset.name not in DATASETS:
        problems.append(
            f"dataset.name={cfg.dataset.name!r} is not a dataset; accepted: {_accepted(DATASETS)}"
        )
    if cfg.model.name not in MODELS:
        problems.append(f"model.name={cfg.model.name!r} is not a model; accepted: {_accepted(MODELS)}")
    if cfg.optim.name not in OPTIMIZERS:
        problems.append(
            f"optim.name={cfg.optim.name!r} is not an optimizer; accepted: {_accepted(OPTIMIZERS)}"
        )
    if problems:
        raise ConfigError("\n".join(problems))

    spec = LOSSES[cfg.loss.name]
    task = DATASETS[cfg.dataset.name].task
    if task not in spec.tasks:
        raise ConfigError(spec.refusal(cfg.dataset.name, task))

    def positive(key: str, value, kind: str = "a number > 0") -> None:
        if not value > 0:
            problems.append(f"{key}={value!r} is not accepted: it must be {kind}")

    positive("optim.lr", cfg.optim.lr)
    positive("trainer.epochs", cfg.trainer.epochs, "an integer >= 1")
    positive("trainer.batch_size", cfg.trainer.batch_size, "an integer >= 1")
    positive("trainer.log_every", cfg.trainer.log_every, "an integer >= 1")
    positive("model.logit_scale", cfg.model.logit_scale)
    if cfg.trainer.threads is not None:
        positive("trainer.threads", cfg.trainer.threads, "an integer >= 1 (or null: all cores)")
    if cfg.optim.weight_decay < 0:
        problems.append(f"optim.weight_decay={cfg.optim.weight_decay!r} must be >= 0")
    if not 0 <= cfg.optim.momentum < 1:
        problems.append(f"optim.momentum={cfg.optim.momentum!r} must be in [0, 1)")
    if not 0 <= cfg.model.dropout < 1:
        problems.append(f"model.dropout={cfg.model.dropout!r} must be in [0, 1)")
    if not cfg.model.hidden or any(width < 1 for width in cfg.model.hidden):
        problems.append(
            f"model.hidden={list(cfg.model.hidden)!r} is not accepted: give one or more layer "
            "widths >= 1, e.g. model.hidden=[256] or model.hidden=[512,256]"
        )
    d = cfg.dataset
    if d.name == "multilabel":
        positive("dataset.n_samples", d.n_samples, "an integer >= 1")
        positive("dataset.n_features", d.n_features, "an integer >= 1")
        positive("dataset.n_classes", d.n_classes, "an integer >= 2")
        positive("dataset.n_labels", d.n_labels, "an integer >= 1")
        if d.n_classes < 2:
            problems.append(f"dataset.n_classes={d.n_classes} must be >= 2")
        if not 0 < d.test_fraction < 1:
            problems.append(f"dataset.test_fraction={d.test_fraction!r} must be in (0, 1)")
    problems += [f"logger={name} needs the {name} package, which is not installed: "
                 f'pip install -e ".[{name}]" in a checkout, else pip install {name}'
                 for name in missing_trackers(cfg.logger)]
    if problems:
        raise ConfigError("\n".join(problems))

    from lossbench.device import check_device

    check_device(cfg.trainer.device.name, cfg.trainer.precision.name)
    check_source_available(cfg.dataset)
