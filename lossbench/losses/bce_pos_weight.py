"""bce_pos_weight: torch's BCEWithLogitsLoss with pos_weight: -[pos_weight y log p + (1-y)
log(1-p)], pos_weight "balanced" (negatives / positives per output, training labels) or given.
Single- and multi-label. Mean over N x C."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lossbench.errors import DataError

from ._params import LossParams, is_number
from ._probe import minus_log_p
from ._spec import TrainingLabels, sigmoid
from .bce_logits import MECHANISMS


@dataclass
class PosWeightParams(LossParams):
    name: str = "bce_pos_weight"
    # "balanced" (negatives / positives per class, training labels) or one number for every class.
    pos_weight: Any = "balanced"

    def problems(self, n_classes: int) -> list[str]:
        if self.pos_weight == "balanced" or (is_number(self.pos_weight) and self.pos_weight > 0):
            return []
        return [f"loss.pos_weight={self.pos_weight!r} is not accepted: give 'balanced' or a "
                "number > 0"]


def build(params: PosWeightParams, labels: TrainingLabels) -> tuple:
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


# The probe's labels hold both outcomes once: balanced pos_weight is 1, BCEWithLogitsLoss itself.
SPEC = sigmoid("bce_pos_weight", "BCEWithLogitsLoss(pos_weight=p), p balanced from the training labels or given",
               PosWeightParams, build, "torch.nn",
               "-[pos_weight y log p + (1 - y) log(1 - p)], p = sigmoid(z)", minus_log_p,
               reduction="mean over N x C outputs (positives weighted by pos_weight)",
               mechanisms=MECHANISMS, order=15)
