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
from lossbench.losses import LOSSES, LossParams, loss_params

# conf/loss/<name>.yaml lists `/loss_schema/<name>@_here_` in its defaults: the loss's typed knobs.
LOSS_SCHEMA_GROUP = "loss_schema"


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


class NoiseKind(str, Enum):
    symmetric = "symmetric"
    asymmetric = "asymmetric"


class LossScaling(str, Enum):
    none = "none"
    dynamic = "dynamic"


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
    # multi_mnist: k digits per image, k uniform in [min_digits, max_digits], on a grid x grid canvas
    n_train: int = 4000
    n_test: int = 1000
    min_digits: int = 1
    max_digits: int = 4
    grid: int = 2
    # conditions (lossbench/data/conditions.py), applied to the training split only
    classes: Optional[list[int]] = None
    imbalance_ratio: float = 1.0
    label_noise: float = 0.0
    noise_kind: NoiseKind = NoiseKind.symmetric
    # also seeds the conditions' random draws, so every run of a sweep sees the same data
    seed: int = 0


@dataclass
class ModelConfig:
    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [256])
    dropout: float = 0.0
    logit_scale: float = 1.0
    # cnn: output channels of its two conv + pool blocks, and their square kernel
    channels: list[int] = field(default_factory=lambda: [6, 16])
    kernel_size: int = 5


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
    loss_scaling: LossScaling = LossScaling.none


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
    # Each conf/loss/<name>.yaml takes its loss's params dataclass (lossbench/losses.py) as schema.
    loss: LossParams = field(default_factory=LossParams)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 0
    # Sweeps skip runs that already completed (or diverged) with the same config; resume=false reruns them.
    resume: bool = True
    # Set by experiment presets; names the sweep directory.
    experiment: Optional[str] = None


# Keys that say where or how a run executes, or what it logs, not what it computes: runs that
# differ only in these are the same experiment, and the report compares them in one group. Every
# other key (including any added later) counts as changing results. dataset.source is here
# because the data actually used is recorded per run (`data_source`) and compared instead; device
# and threads change results only in the last bits of floating-point sums.
EXECUTION_KEYS = (
    "experiment", "resume", "dataset.root", "dataset.download", "dataset.source",
    "trainer.device", "trainer.threads", "trainer.log_every",
)


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(name="base_config", node=Config)
    for spec in LOSSES.values():
        store.store(group=LOSS_SCHEMA_GROUP, name=spec.name, node=spec.params)


def missing_trackers(logger: Any) -> list[str]:
    """The trackers switched on whose package cannot be imported; looked up, never imported."""
    return [name for name, options in logger.items() if options is not None and find_spec(name) is None]


def _accepted(values) -> str:
    return ", ".join(sorted(values))


def _condition_problems(cfg: Any) -> list[str]:
    """The knobs of the conditions a loss is compared under: class subsets, noise, imbalance,
    multi_mnist, cnn, loss scaling."""
    from lossbench.data import DATASETS
    from lossbench.data.conditions import problems as dataset_condition_problems

    d, found = cfg.dataset, dataset_condition_problems(cfg.dataset)
    if d.name == "multi_mnist":
        for key in ("n_train", "n_test", "grid", "min_digits"):
            if getattr(d, key) < 1:
                found.append(f"dataset.{key}={getattr(d, key)!r} must be an integer >= 1")
        if d.max_digits < d.min_digits:
            found.append(f"dataset.max_digits={d.max_digits} must be >= dataset.min_digits={d.min_digits}")
        elif d.max_digits > d.grid ** 2:
            found.append(f"dataset.max_digits={d.max_digits} digits do not fit a {d.grid}x{d.grid} "
                         f"grid ({d.grid ** 2} cells): lower it or raise dataset.grid")
    if cfg.model.name == "cnn":
        if not DATASETS[d.name].images:
            images = sorted(name for name, info in DATASETS.items() if info.images)
            found.append(f"model=cnn needs images; dataset={d.name} holds feature vectors. Use "
                         f"model=mlp, or one of the image datasets: {', '.join(images)}")
        if not cfg.model.channels or any(c < 1 for c in cfg.model.channels) or cfg.model.kernel_size < 1:
            found.append(f"model.channels={list(cfg.model.channels)!r} and model.kernel_size="
                         f"{cfg.model.kernel_size!r} must be widths >= 1 and a size >= 1")
    if cfg.trainer.loss_scaling.name == "dynamic" and cfg.trainer.precision.name == "32":
        found.append("trainer.loss_scaling=dynamic is refused with trainer.precision=32: float32 "
                     "gradients do not underflow, so a GradScaler would only cost syncs. Use it "
                     "with trainer.precision=16 (or bf16)")
    return found


def validate(cfg: Any) -> None:
    """Refuse values the types allow but the run cannot use. Cheap: no data is touched."""
    from lossbench.data import DATASETS, check_source_available, expected_n_classes
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
    dataset = DATASETS[cfg.dataset.name]
    if dataset.task not in spec.tasks:
        raise ConfigError(spec.refusal(cfg.dataset.name, dataset.task))
    problems += loss_params(cfg.loss).problems(expected_n_classes(cfg.dataset))

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
    problems += _condition_problems(cfg)
    problems += [f"logger={name} needs the {name} package, which is not installed: "
                 f'pip install -e ".[{name}]" in a checkout, else pip install {name}'
                 for name in missing_trackers(cfg.logger)]
    if problems:
        raise ConfigError("\n".join(problems))

    from lossbench.device import check_device

    check_device(cfg.trainer.device.name, cfg.trainer.precision.name)
    check_source_available(cfg.dataset)
