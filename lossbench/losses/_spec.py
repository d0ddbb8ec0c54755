"""What every loss module declares: a `LossSpec` (how its criterion is built from its knobs, what
the criterion sees, how targets are encoded, how logits become class probabilities, which tasks
it fits, its formula and its float64 closed form for the probe). The trainer reads specs; it
never branches on names.

Softmax losses treat classes as mutually exclusive (one label per sample); the sigmoid losses
treat each class as an independent Bernoulli (one-vs-rest on single-label data, multi-label as is).
On a two-class single-label task the sigmoid losses train one logit (the Bernoulli form, target =
"is the second class"), the softmax losses two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._params import LossParams


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


def plain(module: Callable[[], nn.Module]) -> Callable[[Any, TrainingLabels], Built]:
    """The build of a criterion without knobs."""
    return lambda params, labels: (module(), {})


def identity(logits: torch.Tensor) -> torch.Tensor:
    return logits


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
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
    reference: str  # where the formula comes from: the paper, or the library that implements it
    # The per-sample (softmax) or per-output (sigmoid) term the reduction averages, in the
    # notation z logits, y target, p probabilities. The docs site lists it.
    formula: str
    # The float64 reference the probe checks the criterion against: the loss at its default knobs
    # (the second argument) in closed form in the probe's margin (`_probe.Margin`), written
    # independently of the criterion.
    exact: Callable[[Any, Any], torch.Tensor]
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
    # How the probe explains each threshold it finds for this loss: (side, kind) -> candidate
    # (cause, m, consequence[, k]), tried in order (lossbench.probe.explain). A finding without
    # one is reported as unexplained, which the probe's tests refuse.
    mechanisms: Mapping[tuple[str, str], list[tuple]] = field(default_factory=dict)
    # Its place in tables and sweeps: the four torch losses first, then the softmax family, then
    # the sigmoid family; a loss that states none comes last, by name.
    order: int = 1000

    def refusal(self, dataset: str, task: Task) -> str:
        """Why this loss cannot train on that task, and what to use instead."""
        from lossbench.losses import LOSSES

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


def softmax(name, summary, params, build, reference, formula, exact, activation=identity,
            **more) -> LossSpec:
    """A softmax-family spec: class indices, softmax probabilities, single-label, mean over N."""
    return LossSpec(name, summary, params, build, activation, Targets.index, Probabilities.softmax,
                    SOFTMAX_TASKS, more.pop("reduction", PER_SAMPLE), reference, formula, exact, **more)


def sigmoid(name, summary, params, build, reference, formula, exact, activation=identity,
            **more) -> LossSpec:
    """A sigmoid-family spec: float 0/1 targets, one Bernoulli per output, mean over N x C."""
    return LossSpec(name, summary, params, build, activation, Targets.float, Probabilities.sigmoid,
                    SIGMOID_TASKS, more.pop("reduction", PER_OUTPUT), reference, formula, exact, **more)


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
