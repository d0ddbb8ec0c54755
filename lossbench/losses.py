"""Each loss is a spec: its typed knobs (a structured config, the schema of `conf/loss/<name>.yaml`),
how its criterion is built from them, what the criterion sees, how targets are encoded, how logits
become class probabilities, and which tasks it fits. The trainer reads specs; it never branches on
names.

The four torch losses (z = logits of one sample, y its target):
- ce:         CrossEntropyLoss(z, c)            = -z_c + logsumexp(z)
- nll:        NLLLoss(log_softmax(z), c)        = the same number, the log-softmax moved outside
- bce:        BCELoss(sigmoid(z), y)            = -sum_i [y_i log p_i + (1-y_i) log(1-p_i)] / n,
              with each log clamped at -100 by torch, so saturated sigmoids cap the loss at 100
              and zero the gradient
- bce_logits: BCEWithLogitsLoss(z, y)           = the same formula computed from z with
              log-sum-exp (softplus), exact where sigmoid saturates
The rest of the family is in `lossbench.criteria`, each with its formula and source.
Softmax losses treat classes as mutually exclusive (one label per sample); the sigmoid losses
treat each class as an independent Bernoulli (one-vs-rest on single-label data, multi-label as is).
On a two-class single-label task the sigmoid losses train one logit (the Bernoulli form, target =
"is the second class"), the softmax losses two.

Adding a loss: a params dataclass, one `LossSpec` in `LOSSES` and one `conf/loss/<name>.yaml`;
then `python -m lossbench.docs_gen` writes its entry in the docs site's loss catalogue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, make_dataclass, replace
from enum import Enum
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lossbench import criteria
from lossbench.errors import DataError


class Task(str, Enum):
    single_label = "single_label"
    multi_label = "multi_label"


# The loss every other loss is compared against on a task when no question declares a baseline
# (ad-hoc sweeps): the torch loss made for it.
BASELINE = {Task.single_label: "ce", Task.multi_label: "bce_logits"}


class Targets(str, Enum):
    """How a batch's labels are handed to the criterion."""

    index = "index"  # long class indices, shape (N,)
    float = "float"  # float 0/1 of the logits' shape: one-hot (single-label) or multi-hot


class Probabilities(str, Enum):
    """How logits become per-class probabilities for metrics and predictions."""

    softmax = "softmax"  # one distribution over mutually exclusive classes
    sigmoid = "sigmoid"  # one independent Bernoulli per class


# --- knobs: one structured config per loss (Hydra type-checks overrides against it) ----------


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _in(key: str, value: float, low: float, high: float, text: str) -> list[str]:
    ok = _number(value) and low <= value <= high
    return [] if ok else [f"{key}={value!r} is not accepted: it must be {text}"]


def _class_list(key: str, value: Any, n_classes: int, text: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or len(value) != n_classes or not all(
            _number(v) and v >= 0 for v in value) or not any(v > 0 for v in value):
        return [f"{key}={value!r} is not accepted: give {text} as a list of {n_classes} numbers "
                f">= 0 (one per class), e.g. {key}=[{','.join(['1'] * n_classes)}]"]
    return []


@dataclass
class LossParams:
    """What every loss has: its name. Subclasses add the loss's knobs with their defaults."""

    name: str = "ce"

    def problems(self, n_classes: int) -> list[str]:
        """Values the types allow but the loss cannot use (checked before data loads)."""
        return []


def _no_knobs(name: str) -> type[LossParams]:
    """The params of a loss without knobs: its name, as the default that makes it that loss."""
    return make_dataclass(f"{name}_params", [("name", str, field(default=name))], bases=(LossParams,))


@dataclass
class FocalParams(LossParams):
    name: str = "focal"
    gamma: float = 2.0
    alpha: Optional[list[float]] = None

    def problems(self, n_classes: int) -> list[str]:
        found = _in("loss.gamma", self.gamma, 0, math.inf, "a number >= 0 (0 gives plain ce)")
        if self.alpha is not None:
            found += _class_list("loss.alpha", self.alpha, n_classes, "per-class weights")
        return found


@dataclass
class SmoothParams(LossParams):
    name: str = "ce_smooth"
    smoothing: float = 0.1

    def problems(self, n_classes: int) -> list[str]:
        return _in("loss.smoothing", self.smoothing, 0, 1, "in [0, 1] (0 gives plain ce)")


@dataclass
class WeightedParams(LossParams):
    name: str = "ce_weighted"
    # "balanced" (from the training labels) or one weight per class.
    weight: Any = "balanced"

    def problems(self, n_classes: int) -> list[str]:
        if self.weight == "balanced":
            return []
        return _class_list("loss.weight", self.weight, n_classes, "'balanced' or class weights")


@dataclass
class Poly1Params(LossParams):
    name: str = "poly1"
    epsilon: float = 1.0

    def problems(self, n_classes: int) -> list[str]:
        # Leng et al. search epsilon in [-1, ...]: below -1 the loss rewards wrong predictions.
        return _in("loss.epsilon", self.epsilon, -1, math.inf, "a number >= -1")


@dataclass
class MSEParams(LossParams):
    name: str = "mse"
    k: float = 1.0
    m: float = 1.0

    def problems(self, n_classes: int) -> list[str]:
        return (_in("loss.k", self.k, 1e-12, math.inf, "a number > 0")
                + _in("loss.m", self.m, 1e-12, math.inf, "a number > 0"))


@dataclass
class MAEParams(LossParams):
    name: str = "mae"
    # scale (1 - p_y): 2 is sum_k |onehot_k - p_k| (Ghosh et al.); 1 is the Active Passive Loss code's MAE
    scale: float = 2.0

    def problems(self, n_classes: int) -> list[str]:
        return _in("loss.scale", self.scale, 1e-12, math.inf, "a number > 0")


@dataclass
class GCEParams(LossParams):
    name: str = "gce"
    q: float = 0.7

    def problems(self, n_classes: int) -> list[str]:
        return _in("loss.q", self.q, 1e-12, 1, "in (0, 1] (q -> 0 approaches ce, q = 1 is mae / 2)")


@dataclass
class SCEParams(LossParams):
    name: str = "sce"
    alpha: float = 0.01
    beta: float = 1.0
    log_zero: float = -4.0

    def problems(self, n_classes: int) -> list[str]:
        found = _in("loss.alpha", self.alpha, 0, math.inf, "a number >= 0")
        found += _in("loss.beta", self.beta, 0, math.inf, "a number >= 0")
        if _number(self.alpha) and _number(self.beta) and self.alpha == self.beta == 0:
            found.append("loss.alpha=0 and loss.beta=0 leave no loss: set at least one > 0")
        return found + _in("loss.log_zero", self.log_zero, -math.inf, -1e-12, "a number < 0 (log 0 := A)")


@dataclass
class NCERCEParams(SCEParams):
    """The same three knobs as sce (alpha weights NCE instead of CE), the authors' defaults."""

    name: str = "nce_rce"
    alpha: float = 1.0
    beta: float = 10.0
    log_zero: float = math.log(1e-4)


@dataclass
class SigmoidFocalParams(LossParams):
    name: str = "focal_sigmoid"
    alpha: float = 0.25
    gamma: float = 2.0

    def problems(self, n_classes: int) -> list[str]:
        found = _in("loss.gamma", self.gamma, 0, math.inf, "a number >= 0")
        # torchvision's sigmoid_focal_loss raises on any other negative (only -1 means off)
        if not (_number(self.alpha) and (0 <= self.alpha <= 1 or self.alpha == -1)):
            found.append(f"loss.alpha={self.alpha!r} is not accepted: it must be in [0, 1], or "
                         "-1 to switch alpha_t off")
        return found


@dataclass
class PosWeightParams(LossParams):
    name: str = "bce_pos_weight"
    # "balanced" (negatives / positives per class, training labels) or one number for every class.
    pos_weight: Any = "balanced"

    def problems(self, n_classes: int) -> list[str]:
        if self.pos_weight == "balanced" or (_number(self.pos_weight) and self.pos_weight > 0):
            return []
        return [f"loss.pos_weight={self.pos_weight!r} is not accepted: give 'balanced' or a "
                "number > 0"]


@dataclass
class ASLParams(LossParams):
    name: str = "asl"
    gamma_neg: float = 4.0
    gamma_pos: float = 0.0
    clip: float = 0.05

    def problems(self, n_classes: int) -> list[str]:
        return (_in("loss.gamma_neg", self.gamma_neg, 0, math.inf, "a number >= 0")
                + _in("loss.gamma_pos", self.gamma_pos, 0, math.inf, "a number >= 0")
                + _in("loss.clip", self.clip, 0, 0.999, "in [0, 1)"))


def loss_params(loss_cfg: Any) -> LossParams:
    """The loss's knobs as its own params dataclass (config.validate has refused unknown keys)."""
    from omegaconf import OmegaConf

    return LOSSES[loss_cfg.name].params(**OmegaConf.to_container(loss_cfg, resolve=True))


def _format(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def loss_label(params: LossParams) -> str:
    """The loss's identity in results: its name, plus every knob that differs from the default,
    so focal(gamma=1) and focal are two entries of a comparison."""
    default = type(params)()
    changed = [f"{f.name}={_format(getattr(params, f.name))}" for f in fields(params)
               if f.name != "name" and getattr(params, f.name) != getattr(default, f.name)]
    return f"{params.name}({', '.join(changed)})" if changed else params.name


# --- building criteria that need the training data -------------------------------------------


@dataclass(frozen=True)
class TrainingLabels:
    """What a criterion may learn from the training set: its labels (never the test set's)."""

    y: torch.Tensor  # class indices (N,) or multi-hot (N, C)
    n_classes: int
    width: int  # logits per sample the model outputs (1 for the binary sigmoid head)

    def positives(self) -> np.ndarray:
        """Positive training labels per output column, as the targets the criterion sees."""
        y = self.y.cpu().numpy()
        if y.ndim == 2:
            return y.sum(axis=0)
        counts = np.bincount(y, minlength=self.n_classes)
        return counts[1:] if self.width == 1 else counts


Built = tuple[nn.Module, dict[str, Any]]  # the criterion, and the values it derived (recorded)


def _plain(module: Callable[[], nn.Module]) -> Callable[[Any, TrainingLabels], Built]:
    return lambda params, labels: (module(), {})


def _balanced_class_weight(labels: TrainingLabels) -> np.ndarray:
    from sklearn.utils.class_weight import compute_class_weight

    y = labels.y.cpu().numpy()
    missing = sorted(set(range(labels.n_classes)) - set(np.unique(y).tolist()))
    if missing:
        raise DataError(f"loss.weight=balanced: classes {missing} have no training samples, so "
                        "their weight n / (C n_c) is infinite; give loss.weight as a list")
    # sklearn's "balanced" heuristic: n_samples / (n_classes * count of the class)
    return compute_class_weight("balanced", classes=np.arange(labels.n_classes), y=y)


def _ce_weighted(params: WeightedParams, labels: TrainingLabels) -> Built:
    weight = (_balanced_class_weight(labels) if params.weight == "balanced"
              else np.asarray(params.weight, dtype=np.float64))
    module = nn.CrossEntropyLoss(weight=torch.tensor(weight, dtype=torch.float32))
    return module, {"weight": [float(w) for w in weight]}


def _focal(params: FocalParams, labels: TrainingLabels) -> Built:
    alpha = None if params.alpha is None else torch.tensor(params.alpha, dtype=torch.float32)
    return criteria.FocalLoss(params.gamma, alpha), {}


def _pos_weight(params: PosWeightParams, labels: TrainingLabels) -> Built:
    if params.pos_weight == "balanced":
        positives = labels.positives().astype(np.float64)
        n = len(labels.y)
        if (positives == 0).any() or (positives == n).any():
            raise DataError("loss.pos_weight=balanced: an output has no positive (or no negative) "
                            f"training labels (positives per output: {positives.astype(int).tolist()}), "
                            "so negatives / positives is 0 or infinite; give loss.pos_weight=<number>")
        weight = (n - positives) / positives
    else:
        weight = np.full(labels.width, float(params.pos_weight))
    module = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(weight, dtype=torch.float32))
    return module, {"pos_weight": [float(w) for w in weight]}


def _identity(logits: torch.Tensor) -> torch.Tensor:
    return logits


def _log_softmax(logits: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits, dim=1)


SOFTMAX_TASKS = frozenset({Task.single_label})
SIGMOID_TASKS = frozenset({Task.single_label, Task.multi_label})
PER_SAMPLE = "mean over N samples"
PER_OUTPUT = "mean over N x C outputs"


@dataclass(frozen=True)
class LossSpec:
    name: str
    summary: str
    params: type[LossParams]  # the schema of conf/loss/<name>.yaml
    build: Callable[[Any, TrainingLabels], Built]
    # What the criterion is fed: the model's logits pass through this first.
    activation: Callable[[torch.Tensor], torch.Tensor]
    targets: Targets
    probabilities: Probabilities
    tasks: frozenset[Task]
    reduction: str  # sets the effective learning rate: CE averages over N, BCE over N x C
    source: str  # the formula's reference
    # The per-sample (softmax) or per-output (sigmoid) term the reduction averages, in the
    # notation of lossbench.criteria: z logits, y target, p probabilities. The docs site lists it.
    formula: str
    # Multi-label decision rule: a class is predicted when its probability reaches this.
    # Single-label tasks always predict the argmax of the probabilities.
    threshold: float = 0.5
    # The loss's own knob a tuned study searches beside the learning rate, as (key, sweep string);
    # none: only the learning rate is tuned (hydra_plugins/lossbench_tuned_sweeper).
    tuned: tuple[tuple[str, str], ...] = ()
    # False where the loss never trains its outputs as probabilities (mse regresses logits onto
    # one-hot targets; their softmax is a read-out, not a forecast): calibration metrics of such
    # a loss describe the read-out, so the report does not rank it on them.
    probabilistic: bool = True

    def refusal(self, dataset: str, task: Task) -> str:
        """Why this loss cannot train on that task, and what to use instead."""
        fits = ", ".join(sorted(name for name, spec in LOSSES.items() if task in spec.tasks))
        if task == Task.multi_label and self.probabilities == Probabilities.softmax:
            return (
                f"loss={self.name} cannot train dataset={dataset}: it is a multi-label task, and "
                f"softmax cross-entropy assumes exactly one class per sample (raising one class "
                f"lowers all the others), so it cannot express several positives. Use "
                f"loss=bce_logits (independent sigmoid per class); losses that fit "
                f"{task.value}: {fits}"
            )
        return f"loss={self.name} does not fit dataset={dataset} ({task.value}); losses that fit: {fits}"


def _softmax(name, summary, params, build, source, formula, activation=_identity) -> LossSpec:
    return LossSpec(name, summary, params, build, activation, Targets.index, Probabilities.softmax,
                    SOFTMAX_TASKS, PER_SAMPLE, source, formula)


def _sigmoid(name, summary, params, build, source, formula, activation=_identity,
             reduction=PER_OUTPUT) -> LossSpec:
    return LossSpec(name, summary, params, build, activation, Targets.float, Probabilities.sigmoid,
                    SIGMOID_TASKS, reduction, source, formula)


TORCH = "torch.nn"
LOSSES: dict[str, LossSpec] = {
    spec.name: spec
    for spec in [
        _softmax("ce", "CrossEntropyLoss on logits (log_softmax + NLL fused)", _no_knobs("ce"),
                 _plain(nn.CrossEntropyLoss), TORCH, formula="-log p_y = -z_y + logsumexp(z)"),
        _softmax("nll", "NLLLoss on log_softmax(logits)", _no_knobs("nll"), _plain(nn.NLLLoss), TORCH,
                 formula="-log_softmax(z)_y (the same number as ce)", activation=_log_softmax),
        _sigmoid("bce", "BCELoss on sigmoid(logits); one-hot targets on single-label data", _no_knobs("bce"),
                 _plain(nn.BCELoss), TORCH, activation=torch.sigmoid,
                 formula="-[y log p + (1 - y) log(1 - p)], p = sigmoid(z), each log clamped at -100"),
        _sigmoid("bce_logits", "BCEWithLogitsLoss on logits (sigmoid + BCE fused, log-sum-exp)",
                 _no_knobs("bce_logits"), _plain(nn.BCEWithLogitsLoss), TORCH,
                 formula="-[y log p + (1 - y) log(1 - p)] = softplus(z) - y z, p = sigmoid(z)"),
        replace(_softmax("focal", "focal loss -(1-p_y)^gamma log p_y from log_softmax", FocalParams, _focal,
                         "Lin et al. 2017", formula="-alpha_y (1 - p_y)^gamma log p_y"),
                tuned=(("loss.gamma", "1,2"),)),
        replace(_softmax("ce_smooth", "CrossEntropyLoss(label_smoothing=smoothing)", SmoothParams,
                         lambda p, labels: (nn.CrossEntropyLoss(label_smoothing=p.smoothing), {}),
                         "Szegedy et al. 2016; torch.nn",
                         formula="-sum_k [(1 - smoothing) onehot_k + smoothing / C] log p_k"),
                tuned=(("loss.smoothing", "0.05,0.1"),)),
        LossSpec("ce_weighted", "CrossEntropyLoss(weight=w), w balanced from the training labels or given",
                 WeightedParams, _ce_weighted, _identity, Targets.index, Probabilities.softmax,
                 SOFTMAX_TASKS, "weighted mean over N samples (sum w_y l / sum w_y)", "torch.nn; sklearn",
                 "-w_y log p_y"),
        _softmax("poly1", "Poly-1: CE + epsilon (1 - p_y)", Poly1Params,
                 lambda p, labels: (criteria.Poly1CrossEntropy(p.epsilon), {}), "Leng et al. 2022",
                 formula="-log p_y + epsilon (1 - p_y)"),
        _softmax("brier", "squared error between softmax and one-hot (Brier score)", _no_knobs("brier"),
                 _plain(criteria.BrierLoss), "Brier 1950", formula="sum_k (p_k - onehot_k)^2"),
        LossSpec("mse", "squared error between logits and one-hot (k, M rescaling)", MSEParams,
                 lambda p, labels: (criteria.LogitMSELoss(p.k, p.m), {}), _identity, Targets.index,
                 Probabilities.softmax, SOFTMAX_TASKS, PER_OUTPUT, "Hui & Belkin 2021",
                 "1/C [k (z_y - m)^2 + sum_{j != y} z_j^2]", probabilistic=False),
        _softmax("mae", "scale (1 - p_y); scale 2: sum_k |onehot_k - softmax_k|", MAEParams,
                 lambda p, labels: (criteria.MAELoss(p.scale), {}), "Ghosh et al. 2017",
                 formula="scale (1 - p_y)"),
        _softmax("gce", "generalized cross-entropy (1 - p_y^q) / q", GCEParams,
                 lambda p, labels: (criteria.GCELoss(p.q), {}), "Zhang & Sabuncu 2018",
                 formula="(1 - p_y^q) / q"),
        _softmax("sce", "symmetric cross-entropy alpha CE + beta RCE", SCEParams,
                 lambda p, labels: (criteria.SCELoss(p.alpha, p.beta, p.log_zero), {}),
                 "Wang et al. 2019", formula="-alpha log p_y - beta log_zero (1 - p_y)"),
        _softmax("nce_rce", "active passive loss alpha NCE + beta RCE", NCERCEParams,
                 lambda p, labels: (criteria.NCEandRCE(p.alpha, p.beta, p.log_zero), {}),
                 "Ma et al. 2020",
                 formula="alpha log p_y / sum_k log p_k - beta log_zero (1 - p_y)"),
        replace(_sigmoid("focal_sigmoid", "torchvision.ops.sigmoid_focal_loss", SigmoidFocalParams,
                         lambda p, labels: (criteria.SigmoidFocalLoss(p.alpha, p.gamma), {}),
                         "Lin et al. 2017; torchvision",
                         formula="-alpha_t (1 - p_t)^gamma log p_t, p_t = p if y = 1 else 1 - p, "
                         "p = sigmoid(z)"),
                tuned=(("loss.gamma", "1,2"),)),
        _sigmoid("bce_pos_weight", "BCEWithLogitsLoss(pos_weight=p), p balanced from the training labels or given",
                 PosWeightParams, _pos_weight, "torch.nn",
                 "-[pos_weight y log p + (1 - y) log(1 - p)], p = sigmoid(z)",
                 reduction="mean over N x C outputs (positives weighted by pos_weight)"),
        replace(_sigmoid("asl", "asymmetric loss (focusing gamma_neg/gamma_pos, probability shift clip)", ASLParams,
                         lambda p, labels: (criteria.AsymmetricLoss(p.gamma_neg, p.gamma_pos, p.clip), {}),
                         "Ridnik et al. 2021", formula="-[y (1 - p)^gamma_pos log p + (1 - y) "
                         "p_m^gamma_neg log(1 - p_m)], p_m = max(p - clip, 0)"),
                tuned=(("loss.gamma_neg", "2,4"),)),
    ]
}


def head_width(spec: LossSpec, task: Task, n_classes: int) -> int:
    """Logits per sample: one per class, except the sigmoid losses on a two-class single-label
    task, which train the single Bernoulli logit."""
    binary = task == Task.single_label and n_classes == 2
    return 1 if binary and spec.probabilities == Probabilities.sigmoid else n_classes


def encode_targets(spec: LossSpec, labels: torch.Tensor, width: int) -> torch.Tensor:
    """Labels as stored by the dataset (indices or multi-hot) -> what the criterion takes."""
    if spec.targets == Targets.index:
        return labels
    if labels.dim() == 1:
        if width == 1:  # the binary head: the target is "is class 1"
            return labels[:, None].float()
        return F.one_hot(labels, width).float()
    return labels.float()


def probabilities(spec: LossSpec, logits: torch.Tensor, task: Task) -> torch.Tensor:
    """Per-class probabilities the model predicts, as metrics and the reliability table see them.

    Softmax losses: the softmax. Sigmoid losses on multi-label data: the independent sigmoids.
    Sigmoid losses on single-label data: the sigmoids renormalised to sum to 1, so NLL, ECE and
    Brier compare all losses on one kind of object, a distribution over the classes. (The raw
    one-vs-rest sigmoids do not sum to 1 and have no single-label likelihood.) The binary head's
    one logit z is the distribution (1 - sigmoid(z), sigmoid(z)) = softmax(0, z).
    """
    # Low-precision logits are computed on in float32; float64 ones (temperature scaling) stay float64.
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if spec.probabilities == Probabilities.softmax:
        return torch.softmax(logits, dim=1)
    if task == Task.multi_label:
        return torch.sigmoid(logits)
    if logits.shape[1] == 1:
        return torch.softmax(torch.cat([torch.zeros_like(logits), logits], dim=1), dim=1)
    # Normalising in log space keeps a row whose sigmoids all underflow a distribution.
    return torch.softmax(F.logsigmoid(logits), dim=1)
