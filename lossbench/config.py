"""The configuration schema: structured configs that Hydra type-checks before the app runs.

Types are checked by Hydra while it merges overrides (`trainer.epochs=abc` never reaches us);
`validate` checks the values that types cannot express, before any data is loaded.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
from dataclasses import dataclass, field
from enum import Enum
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Optional

import numpy as np
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from lossbench.errors import ConfigError
from lossbench.losses import LOSSES, LossParams, Task, head_width, loss_params
from lossbench.training.recipe_checks import recipe_problems

# conf/loss/<name>.yaml lists `/loss_schema/<name>@_here_` in its defaults: the loss's typed knobs.
LOSS_SCHEMA_GROUP = "loss_schema"
# conf/dataset/<name>.yaml lists `/dataset_schema/<name>@_here_`: the dataset's typed knobs.
DATASET_SCHEMA_GROUP = "dataset_schema"


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


class TrainMetrics(str, Enum):
    running = "running"
    full = "full"


class NoiseKind(str, Enum):
    symmetric = "symmetric"
    asymmetric = "asymmetric"


class LossScaling(str, Enum):
    none = "none"
    dynamic = "dynamic"


class Augment(str, Enum):
    crop = "crop"
    flip = "flip"


class Init(str, Enum):
    default = "default"
    kaiming_uniform = "kaiming_uniform"
    xavier_uniform = "xavier_uniform"


@dataclass
class DatasetConfig:
    """What every dataset has: its name and the conditions a loss is compared under. Each dataset
    adds its own knobs in a subclass beside its loader (lossbench/data/<module>.py), the schema its
    conf/dataset/<name>.yaml names (`/dataset_schema/<name>@_here_`): a key it lacks is refused."""

    name: str = "mnist"
    # conditions (lossbench/data/conditions.py), applied to the training split only
    classes: Optional[list[int]] = None
    imbalance_ratio: float = 1.0
    label_noise: float = 0.0
    noise_kind: NoiseKind = NoiseKind.symmetric
    # also seeds the conditions' random draws, so every run of a sweep sees the same data
    seed: int = 0
    # Validation split carved from the training split after the conditions (lossbench/data/split.py);
    # 0: none. split_seed re-draws the train/test split lossbench draws itself and the val split.
    val_fraction: float = 0.1
    split_seed: Optional[int] = None
    # Training batches only, on the device, from the run's generator (lossbench/training/augment.py)
    augment: list[Augment] = field(default_factory=list)
    crop_pad: int = 4


@dataclass
class InitConfig:
    """Weight initialisation per layer kind (biases keep torch's default)."""

    conv: Init = Init.default
    linear: Init = Init.default


@dataclass
class ModelConfig:
    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [256])
    dropout: float = 0.0
    logit_scale: float = 1.0
    # cnn: output channels of its two conv + pool blocks, and their square kernel
    channels: list[int] = field(default_factory=lambda: [6, 16])
    kernel_size: int = 5
    # BatchNorm after every conv and hidden linear layer, before its ReLU
    batch_norm: bool = False
    init: InitConfig = field(default_factory=InitConfig)
    # model=custom: the factory (package.module.factory); its keyword arguments are +model.<name>
    _target_: Optional[str] = None


@dataclass
class OptimConfig:
    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0
    nesterov: bool = False


@dataclass
class SchedulerConfig:
    """The lr schedule (lossbench/training/schedule.py); each conf/scheduler/*.yaml sets its own knobs."""

    name: str = "none"
    warmup_epochs: int = 0
    eta_min: float = 0.0  # cosine
    step_size: int = 1  # step
    milestones: list[int] = field(default_factory=list)  # multistep
    gamma: float = 0.1  # step, multistep
    div_factor: float = 25.0  # onecycle
    final_div_factor: float = 1e4  # onecycle


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
    # Stop once the val primary metric (lossbench/training/selection.py) has not improved for this many epochs
    early_stop_patience: Optional[int] = None
    # The train rows: the epoch's own steps (running) or a second pass over the training split (full)
    train_metrics: TrainMetrics = TrainMetrics.running
    # Clip the total gradient norm to this (torch.nn.utils.clip_grad_norm_); null: no clipping
    grad_clip: Optional[float] = None
    # The validation metric the selected epoch (and early stopping) maximises; null: the task's
    # primary (acc single-label, map multi-label). Imbalanced data: balanced_acc.
    select_on: Optional[str] = None


@dataclass
class MlflowConfig:
    tracking_uri: str = "sqlite:///results/mlflow.db"
    experiment: Optional[str] = None  # None: the preset's name, else lossbench


@dataclass
class TensorboardConfig:
    dir: str = "tensorboard"  # a subdirectory of the run directory (refused if outside it)


@dataclass
class LoggerConfig:
    """The trackers a run also logs to; a tracker is on when its entry is set (logger=mlflow)."""

    mlflow: Optional[MlflowConfig] = None
    tensorboard: Optional[TensorboardConfig] = None


class Study(str, Enum):
    """The report's questions (its sections, in page order)."""

    shared = "shared"  # every loss at one shared setting
    tuned = "tuned"  # every loss at its own tuned setting
    noise = "noise"
    imbalance = "imbalance"
    images = "images"  # multi-label images
    binary = "binary"
    # a stress sweep (precision, logit scale, lr): the Stability section, whose settings are
    # stress conditions, never groups the losses are compared in
    stability = "stability"


class View(str, Enum):
    selected = "selected"  # the epoch selected on validation (question.selection_metric)
    last = "last"  # the last epoch: a fixed budget


@dataclass
class QuestionConfig:
    """The question a preset answers, declared before its runs: the report states exactly these
    comparisons (each loss of `comparisons` minus `baseline` on `metric` in `view`, in every
    group of the study), adjusted together, and picks nothing after the fact. Unset (null, [])
    in ad-hoc runs: the report then guesses the study from the runs' settings and compares every
    loss with the task's baseline (lossbench.tasks.TASKS) on its primary metric."""

    study: Optional[Study] = None
    baseline: Optional[str] = None
    metric: Optional[str] = None  # the test metric a verdict reads
    # the epoch of view `selected` maximises trainer.select_on on validation: declare it there
    view: Optional[View] = None
    comparisons: list[str] = field(default_factory=list)  # losses compared with the baseline
    # loss -> a second reference it is also compared with (a stress sweep: bce against its fused
    # form bce_logits where the baseline is neither)
    pairs: dict[str, str] = field(default_factory=dict)
    # smallest difference in `metric` that matters: a CI inside +-this is "equivalent"; null:
    # lossbench.training.metrics.METRICS
    smallest_effect: Optional[float] = None


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    # Each conf/loss/<name>.yaml takes its loss's params dataclass (lossbench/losses/<name>.py) as schema.
    loss: LossParams = field(default_factory=LossParams)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 0
    # Sweeps skip runs that already completed (or diverged) with the same config; resume=false reruns them.
    resume: bool = True
    # Set by experiment presets; names the sweep directory.
    experiment: Optional[str] = None
    # Set by presets that reproduce a published table: results/published/<name>.csv, which the
    # report sets beside the runs (lossbench/report/published.py).
    published: Optional[str] = None
    # Set by experiment presets: the question the sweep answers (the report reads it).
    question: QuestionConfig = field(default_factory=QuestionConfig)


# The one list of keys that never change a result. BOOKKEEPING_KEYS name a run or say what it
# logs to: a finished run is reused whatever they say (lossbench.runs.run). EXECUTION_KEYS add where
# or how a run executes: runs that differ only in these are the same experiment, and the report
# compares them in one group; a run is still redone when one of them changes, since its files
# would differ (the steps log_every writes, the last bits of sums on other threads or devices).
# Every other key (including any added later) counts as changing results. dataset.source is
# here because the data actually used is recorded per run (`data_source`) and compared instead.
# A key may name a whole group (logger).
BOOKKEEPING_KEYS = ("resume", "experiment", "logger")
EXECUTION_KEYS = BOOKKEEPING_KEYS + (
    "published", "dataset.root", "dataset.download", "dataset.source",
    "trainer.device", "trainer.threads", "trainer.log_every",
)


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(name="base_config", node=Config)
    for spec in LOSSES.values():
        store.store(group=LOSS_SCHEMA_GROUP, name=spec.name, node=spec.params)
    from lossbench.data import DATASETS

    for name, info in DATASETS.items():
        store.store(group=DATASET_SCHEMA_GROUP, name=name, node=info.schema)
    # hydra.sweep.dir names a sweep after its preset; oc.select's default applies only to a
    # missing key, not to the schema's null, which would name the directory `None`.
    OmegaConf.register_new_resolver("sweep_name", lambda experiment: experiment or "adhoc", replace=True)
    # A preset sweeping "every loss that fits a task" asks the registry (loss: ${losses_for:multi_label}),
    # so a loss module added later joins it. Hydra's sweeper reads its params resolved, in the
    # process that registered this (python -m lossbench imports it before Hydra starts).
    OmegaConf.register_new_resolver("losses_for", losses_for, replace=True)


def losses_for(task: str) -> str:
    """Every registry loss that fits `task`, in the registry's order, as a sweep value: `bce,bce_logits,...`."""
    if task not in Task.__members__:
        raise ValueError(f"losses_for:{task}: {task!r} is not a task; accepted: {_accepted(Task.__members__)}")
    return ",".join(name for name, spec in LOSSES.items() if Task(task) in spec.tasks)


def missing_trackers(logger: Any) -> list[str]:
    """The trackers switched on whose package cannot be imported; looked up, never imported."""
    return [name for name, options in logger.items() if options is not None and find_spec(name) is None]


def _accepted(values) -> str:
    return ", ".join(sorted(values))


def _condition_problems(cfg: Any) -> list[str]:
    """The knobs of the conditions a loss is compared under: class subsets, noise, imbalance,
    multi_mnist, cnn, loss scaling."""
    from lossbench.data import DATASETS, peek
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
        if peek(d).image_shape is None:
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


def _validation_problems(cfg: Any, own_val: bool) -> list[str]:
    """The validation split and what needs it (early stopping, trainer.select_on). `own_val`:
    the files bring one (an image folder's DIR/val), whatever dataset.val_fraction says."""
    found, fraction, patience = [], cfg.dataset.val_fraction, cfg.trainer.early_stop_patience
    if not 0 <= fraction < 1:
        found.append(f"dataset.val_fraction={fraction!r} must be in [0, 1): the share of the training "
                     "split held out for validation (0: none)")
    none_held_out = fraction == 0 and not own_val
    if patience is not None:
        if patience < 1:
            found.append(f"trainer.early_stop_patience={patience} must be an integer >= 1 (or null: "
                         "train every epoch)")
        elif none_held_out:
            found.append(f"trainer.early_stop_patience={patience} stops on the validation metric, and "
                         "dataset.val_fraction=0 holds out no validation split: set dataset.val_fraction "
                         "> 0 (e.g. 0.1), or trainer.early_stop_patience=null")
    if cfg.trainer.select_on is not None and none_held_out:
        found.append(f"trainer.select_on={cfg.trainer.select_on} selects the epoch on the validation split, "
                     "and dataset.val_fraction=0 holds out none, so no epoch would be selected: set "
                     "dataset.val_fraction > 0 (e.g. 0.1), or trainer.select_on=null")
    return found


def unknown_keys(cfg: Any) -> list[str]:
    """Keys the schema does not have. Hydra's `+key=value` adds a key with struct mode switched
    off (that is what `+` means), so a typo such as `+trainer.epoch=3` reaches the app; here it is
    refused, with the nearest keys the schema has."""
    problems: list[str] = []
    # model=custom passes its extra keys (+model.<name>=value) to the factory it names
    factory_arguments = cfg.model.get("name") == "custom"

    def walk(node: DictConfig, schema: DictConfig, prefix: str, own: dict[str, DictConfig]) -> None:
        for key in node.keys():
            path = f"{prefix}{key}"
            if key not in schema:
                if not (path.startswith("model.") and factory_arguments):
                    near = difflib.get_close_matches(str(key), [str(k) for k in schema.keys()], n=1)
                    hint = f"did you mean {prefix}{near[0]}? " if near else ""
                    problems.append(f"{path} is not a key of the config; {hint}accepted in "
                                    f"{prefix.rstrip('.') or 'the top level'}: {_accepted(map(str, schema.keys()))}")
                continue
            inner = own.get(key, schema[key])
            # a dict-typed field (question.pairs) takes any key: only dataclasses are walked
            if (isinstance(node[key], DictConfig) and isinstance(inner, DictConfig)
                    and OmegaConf.get_type(inner) is not dict):
                walk(node[key], inner, f"{path}.", {})

    from lossbench.data import DATASETS

    own = {}  # the top-level groups whose schema depends on the choice
    if cfg.loss.name in LOSSES:  # each loss has its own knobs: its params dataclass is the schema
        own["loss"] = _schema(LOSSES[cfg.loss.name].params)
    if cfg.dataset.name in DATASETS:  # and each dataset its own: its schema dataclass
        own["dataset"] = _schema(DATASETS[cfg.dataset.name].schema)
    walk(cfg, _schema(Config), "", own)
    return problems


@functools.cache
def _schema(dataclass_type: type) -> DictConfig:
    """A dataclass as OmegaConf's structured config, built once per process (the whole schema
    costs tens of ms, and every run and every job a sweeper checks walks it); read-only, as every
    later check shares it."""
    schema = OmegaConf.structured(dataclass_type)
    OmegaConf.set_readonly(schema, True)
    return schema


# Knobs become float32 tensors (the lr inside the optimizer, the logit scale): beyond this they are inf.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def non_finite_values(cfg: Any) -> list[str]:
    """Every knob holding inf or nan, or a number float32 turns into inf: such a run cannot mean
    anything (lr=inf 'diverges' at step 1)."""
    found: list[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for item in value:
                walk(item, path)
        elif isinstance(value, float) and not abs(value) <= FLOAT32_MAX:
            found.append(f"{path}={value!r} is not accepted: it must be a finite number "
                         f"(at most {FLOAT32_MAX:.3g} in magnitude, float32's largest)")

    walk(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), "")
    return found


# numpy's legacy seeding (np.random.seed, sklearn's random_state) takes 0..2**32-1.
SEED_RANGE = range(0, 2**32)


def multilabel_problems(d: Any) -> list[str]:
    """What make_multilabel_classification and the train/test split cannot do. Its label count
    is drawn from Poisson(n_labels) until it is <= n_classes: with n_labels >= n_classes that
    rejection loop can run for ever. Its size is lossbench/training/footprint.py's."""
    problems = []
    if d.n_classes >= 2 and d.n_labels >= d.n_classes:
        problems.append(
            f"dataset.n_labels={d.n_labels} must be less than dataset.n_classes={d.n_classes}: it "
            "is the mean number of labels per sample, drawn from a Poisson until it is at most "
            "n_classes"
        )
    if d.n_samples >= 1 and 0 < d.test_fraction < 1:
        n_test = math.ceil(d.n_samples * d.test_fraction)
        if n_test < 1 or d.n_samples - n_test < 1:
            problems.append(
                f"dataset.n_samples={d.n_samples} with dataset.test_fraction={d.test_fraction} "
                f"leaves {d.n_samples - n_test} training and {n_test} test samples; both need >= 1"
            )
    return problems


def root_problems(d: Any) -> list[str]:
    """A data root that exists must be a folder this process can list; else the IDX files in it
    would be silently missed (and source=auto would fall back to the sample)."""
    if "root" not in d or d.get("source") == Source.sample or not Path(d.root).exists():
        return []
    root = Path(d.root)
    if not root.is_dir():
        return [f"dataset.root={d.root} is a file, not a folder: point it at the folder holding the IDX files"]
    if not os.access(root, os.R_OK | os.X_OK):
        return [f"dataset.root={d.root} cannot be read by this user (permissions); fix them or "
                "point dataset.root elsewhere"]
    return []


def question_problems(question: Any) -> list[str]:
    """A declared question names registered losses and metrics."""
    from lossbench.tasks import DECLARABLE

    found = []
    named = [("comparisons", c) for c in question.comparisons]
    named += [(f"pairs.{loss}", name) for loss, reference in question.pairs.items()
              for name in (loss, reference)]
    for key, loss in ([("baseline", question.baseline)] if question.baseline else []) + named:
        if loss not in LOSSES:
            found.append(f"question.{key}: {loss!r} is not a loss; accepted: {_accepted(LOSSES)}")
    if question.baseline in question.comparisons:
        found.append(f"question.comparisons lists the baseline {question.baseline!r}: a loss "
                     "is not compared with itself")
    if question.metric is not None and question.metric not in DECLARABLE:
        found.append(f"question.metric={question.metric!r} is not a metric; accepted: "
                     f"{_accepted(DECLARABLE)}")
    if question.smallest_effect is not None and not question.smallest_effect > 0:
        found.append(f"question.smallest_effect={question.smallest_effect!r} must be > 0 (or null)")
    return found


def select_on_problems(metric: Optional[str], task: str) -> list[str]:
    """trainer.select_on names a higher-is-better validation metric of the task."""
    from lossbench.tasks import selectable

    accepted = selectable(task)
    if metric is None or metric in accepted:
        return []
    return [f"trainer.select_on={metric!r} is not a validation metric a {task} run can be "
            f"selected on; accepted: {_accepted(accepted)} (or null: the task's primary)"]


def validate(cfg: Any) -> None:
    """Refuse values the types allow but the run cannot use. Cheap: no data is touched."""
    from lossbench.data import DATASETS, check_source_available, expected_n_classes, peek
    from lossbench.training.footprint import size_problems
    from lossbench.training.model import image_size_problems, name_problems
    from lossbench.training.optim import OPTIMIZERS
    from lossbench.runs.owned import subdir_problem
    from lossbench.training.recipe_checks import crop_problems
    from lossbench.runs.results import RUN_FILES

    # Unknown keys and non-finite values first: every other check would misread them.
    problems = unknown_keys(cfg) or non_finite_values(cfg)
    if problems:
        raise ConfigError("\n".join(problems))
    if cfg.loss.name not in LOSSES:
        problems.append(f"loss.name={cfg.loss.name!r} is not a loss; accepted: {_accepted(LOSSES)}")
    if cfg.dataset.name not in DATASETS:
        problems.append(
            f"dataset.name={cfg.dataset.name!r} is not a dataset; accepted: {_accepted(DATASETS)}"
        )
    if cfg.dataset.name in DATASETS:
        problems += name_problems(cfg.model, DATASETS[cfg.dataset.name].images)
    if cfg.optim.name not in OPTIMIZERS:
        problems.append(
            f"optim.name={cfg.optim.name!r} is not an optimizer; accepted: {_accepted(OPTIMIZERS)}"
        )
    if problems:
        raise ConfigError("\n".join(problems))

    spec = LOSSES[cfg.loss.name]
    shape = peek(cfg.dataset)  # file data: a cheap read of its header or labels
    if shape.task not in spec.tasks:
        raise ConfigError(spec.refusal(cfg.dataset.name, shape.task))
    problems += image_size_problems(cfg.model, shape.image_shape)
    problems += crop_problems(cfg.dataset, shape.image_shape)
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
        positive("trainer.threads", cfg.trainer.threads,
                 "an integer >= 1 (or null: the cores this process may run on)")
        # torch's thread pool crashes the process (SIGSEGV) when asked for 100,000 threads.
        if cfg.trainer.threads > (os.cpu_count() or 1):
            problems.append(f"trainer.threads={cfg.trainer.threads} is more than this machine's "
                            f"{os.cpu_count()} cores; give at most that (or null: the cores this process may run on)")
    if cfg.optim.weight_decay < 0:
        problems.append(f"optim.weight_decay={cfg.optim.weight_decay!r} must be >= 0")
    if not 0 <= cfg.optim.momentum < 1:
        problems.append(f"optim.momentum={cfg.optim.momentum!r} must be in [0, 1)")
    if not 0 <= cfg.model.dropout < 1:
        problems.append(f"model.dropout={cfg.model.dropout!r} must be in [0, 1)")
    seeds = [("seed", cfg.seed), ("dataset.seed", cfg.dataset.seed)]
    seeds += [("dataset.split_seed", cfg.dataset.split_seed)] if cfg.dataset.split_seed is not None else []
    for key, seed in seeds:
        if seed not in SEED_RANGE:
            problems.append(f"{key}={seed} is not accepted: seeds must be in 0..{SEED_RANGE.stop - 1}")
    d = cfg.dataset
    if not cfg.model.hidden or any(width < 1 for width in cfg.model.hidden):
        problems.append(
            f"model.hidden={list(cfg.model.hidden)!r} is not accepted: give one or more layer "
            "widths >= 1, e.g. model.hidden=[256] or model.hidden=[512,256]"
        )
    problems += root_problems(d)
    if d.name == "multilabel":
        positive("dataset.n_samples", d.n_samples, "an integer >= 1")
        positive("dataset.n_features", d.n_features, "an integer >= 1")
        positive("dataset.n_classes", d.n_classes, "an integer >= 2")
        positive("dataset.n_labels", d.n_labels, "an integer >= 1")
        if d.n_classes < 2:
            problems.append(f"dataset.n_classes={d.n_classes} must be >= 2")
        problems += multilabel_problems(d)
    if "test_fraction" in d and not 0 < d.test_fraction < 1:
        problems.append(f"dataset.test_fraction={d.test_fraction!r} must be in (0, 1)")
    problems += _condition_problems(cfg) + _validation_problems(cfg, shape.own_val) + recipe_problems(cfg)
    problems += question_problems(cfg.question) + select_on_problems(cfg.trainer.select_on, shape.task.value)
    problems += [f"logger={name} needs the {name} package, which is not installed: "
                 f'pip install -e ".[{name}]" in a checkout, else pip install {name}'
                 for name in missing_trackers(cfg.logger)]
    if cfg.logger.tensorboard is not None:
        problems += filter(None, [subdir_problem("logger.tensorboard.dir", cfg.logger.tensorboard.dir, RUN_FILES)])
    # Sizes last: they build the model (on the meta device) from the values checked above.
    problems = problems or size_problems(cfg, head_width(spec, shape.task, expected_n_classes(d)))
    if problems:
        raise ConfigError("\n".join(problems))

    from lossbench.training.device import check_device

    check_device(cfg.trainer.device.name, cfg.trainer.precision.name)
    check_source_available(cfg.dataset)
