"""ce_weighted: torch's CrossEntropyLoss with class weights w: -w_y log p_y, w "balanced" from the
training labels (sklearn's heuristic) or given. Single-label. Weighted mean over N."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lossbench.errors import DataError

from ._params import LossParams, class_list
from ._probe import SOFTMAX, minus_log_p
from ._spec import LossSpec, Probabilities, SOFTMAX_TASKS, Targets, TrainingLabels, identity


@dataclass
class WeightedParams(LossParams):
    name: str = "ce_weighted"
    # "balanced" (from the training labels) or one weight per class.
    weight: Any = "balanced"

    def problems(self, n_classes: int) -> list[str]:
        if self.weight == "balanced":
            return []
        return class_list("loss.weight", self.weight, n_classes, "'balanced' or class weights")


def _balanced_class_weight(labels: TrainingLabels) -> np.ndarray:
    from sklearn.utils.class_weight import compute_class_weight

    y = labels.y.cpu().numpy()
    missing = sorted(set(range(labels.n_classes)) - set(np.unique(y).tolist()))
    if missing:
        raise DataError(f"loss.weight=balanced: classes {missing} have no training samples, so "
                        "their weight n / (C n_c) is infinite; give loss.weight as a list")
    # sklearn's "balanced" heuristic: n_samples / (n_classes * count of the class)
    return compute_class_weight("balanced", classes=np.arange(labels.n_classes), y=y)


def build(params: WeightedParams, labels: TrainingLabels) -> tuple:
    weight = (_balanced_class_weight(labels) if params.weight == "balanced"
              else np.asarray(params.weight, dtype=np.float64))
    module = nn.CrossEntropyLoss(weight=torch.tensor(weight, dtype=torch.float32))
    return module, {"weight": [float(w) for w in weight]}


# The probe's labels hold every class once: balanced weights are 1, CrossEntropyLoss itself.
SPEC = LossSpec("ce_weighted", "CrossEntropyLoss(weight=w), w balanced from the training labels or given",
                WeightedParams, build, identity, Targets.index, Probabilities.softmax,
                SOFTMAX_TASKS, "weighted mean over N samples (sum w_y l / sum w_y)", "torch.nn; sklearn",
                "-w_y log p_y", exact=minus_log_p, mechanisms=SOFTMAX, order=6)
