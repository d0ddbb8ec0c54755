"""Each loss is a spec: what the criterion sees, how targets are encoded, how logits become
class probabilities, and which tasks it fits. The trainer reads specs; it never branches on names.

The maths (z = logits of one sample, y its target):
- ce:         CrossEntropyLoss(z, c)            = -z_c + logsumexp(z)
- nll:        NLLLoss(log_softmax(z), c)        = the same number, the log-softmax moved outside
- bce:        BCELoss(sigmoid(z), y)            = -sum_i [y_i log p_i + (1-y_i) log(1-p_i)] / n,
              with each log clamped at -100 by torch, so saturated sigmoids cap the loss at 100
              and zero the gradient
- bce_logits: BCEWithLogitsLoss(z, y)           = the same formula computed from z with
              log-sum-exp (softplus), exact where sigmoid saturates
Softmax losses treat classes as mutually exclusive (one label per sample); the sigmoid losses
treat each class as an independent Bernoulli (one-vs-rest on single-label data, multi-label as is).

Adding a loss: one `LossSpec` in `LOSSES` and one `conf/loss/<name>.yaml`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class Task(str, Enum):
    single_label = "single_label"
    multi_label = "multi_label"


class Targets(str, Enum):
    """How a batch's labels are handed to the criterion."""

    index = "index"  # long class indices, shape (N,)
    float = "float"  # float 0/1 of the logits' shape: one-hot (single-label) or multi-hot


class Probabilities(str, Enum):
    """How logits become per-class probabilities for metrics and predictions."""

    softmax = "softmax"  # one distribution over mutually exclusive classes
    sigmoid = "sigmoid"  # one independent Bernoulli per class


def _identity(logits: torch.Tensor) -> torch.Tensor:
    return logits


def _log_softmax(logits: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits, dim=1)


@dataclass(frozen=True)
class LossSpec:
    name: str
    summary: str
    criterion: Callable[[], nn.Module]
    # What the criterion is fed: the model's logits pass through this first.
    activation: Callable[[torch.Tensor], torch.Tensor]
    targets: Targets
    probabilities: Probabilities
    tasks: frozenset[Task]
    # Multi-label decision rule: a class is predicted when its probability reaches this.
    # Single-label tasks always predict the argmax of the probabilities.
    threshold: float = 0.5

    def refusal(self, dataset: str, task: Task) -> str:
        """Why this loss cannot train on that task, and what to use instead."""
        if task == Task.multi_label and self.probabilities == Probabilities.softmax:
            fits = sorted(name for name, spec in LOSSES.items() if task in spec.tasks)
            return (
                f"loss={self.name} cannot train dataset={dataset}: it is a multi-label task, and "
                f"softmax cross-entropy assumes exactly one class per sample (raising one class "
                f"lowers all the others), so it cannot express several positives. Use "
                f"loss=bce_logits (independent sigmoid per class); losses that fit "
                f"{task.value}: {', '.join(fits)}"
            )
        return f"loss={self.name} does not fit dataset={dataset} ({task.value})"


LOSSES: dict[str, LossSpec] = {
    spec.name: spec
    for spec in [
        LossSpec(
            name="ce",
            summary="CrossEntropyLoss on logits (log_softmax + NLL fused)",
            criterion=nn.CrossEntropyLoss,
            activation=_identity,
            targets=Targets.index,
            probabilities=Probabilities.softmax,
            tasks=frozenset({Task.single_label}),
        ),
        LossSpec(
            name="nll",
            summary="NLLLoss on log_softmax(logits)",
            criterion=nn.NLLLoss,
            activation=_log_softmax,
            targets=Targets.index,
            probabilities=Probabilities.softmax,
            tasks=frozenset({Task.single_label}),
        ),
        LossSpec(
            name="bce",
            summary="BCELoss on sigmoid(logits); one-hot targets on single-label data",
            criterion=nn.BCELoss,
            activation=torch.sigmoid,
            targets=Targets.float,
            probabilities=Probabilities.sigmoid,
            tasks=frozenset({Task.single_label, Task.multi_label}),
        ),
        LossSpec(
            name="bce_logits",
            summary="BCEWithLogitsLoss on logits (sigmoid + BCE fused, log-sum-exp)",
            criterion=nn.BCEWithLogitsLoss,
            activation=_identity,
            targets=Targets.float,
            probabilities=Probabilities.sigmoid,
            tasks=frozenset({Task.single_label, Task.multi_label}),
        ),
    ]
}


def encode_targets(spec: LossSpec, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Labels as stored by the dataset (indices or multi-hot) -> what the criterion takes."""
    if spec.targets == Targets.index:
        return labels
    if labels.dim() == 1:
        return F.one_hot(labels, n_classes).float()
    return labels.float()


def probabilities(spec: LossSpec, logits: torch.Tensor, task: Task) -> torch.Tensor:
    """Per-class probabilities the model predicts, as metrics and the reliability table see them.

    Softmax losses: the softmax. Sigmoid losses on multi-label data: the independent sigmoids.
    Sigmoid losses on single-label data: the sigmoids renormalised to sum to 1, so NLL, ECE and
    Brier compare all four losses on one kind of object, a distribution over the classes. (The raw
    one-vs-rest sigmoids do not sum to 1 and have no single-label likelihood.)
    """
    logits = logits.float()
    if spec.probabilities == Probabilities.softmax:
        return torch.softmax(logits, dim=1)
    if task == Task.multi_label:
        return torch.sigmoid(logits)
    # Normalising in log space keeps a row whose sigmoids all underflow a distribution.
    return torch.softmax(F.logsigmoid(logits), dim=1)
