"""poly1: Poly-1 (Leng et al. 2022, PolyLoss): CE + epsilon (1 - p_y), the first polynomial
coefficient of CE's expansion in (1 - p_y) moved by epsilon. Single-label. Mean over N."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._criteria import SoftmaxLoss
from ._params import LossParams, in_range
from ._probe import active_passive
from ._spec import softmax


@dataclass
class Poly1Params(LossParams):
    name: str = "poly1"
    epsilon: float = 1.0

    def problems(self, n_classes: int) -> list[str]:
        # Leng et al. search epsilon in [-1, ...]: below -1 the loss rewards wrong predictions.
        return in_range("loss.epsilon", self.epsilon, -1, math.inf, "a number >= -1")


class Poly1CrossEntropy(SoftmaxLoss):
    """Poly-1 (Leng et al. 2022, "PolyLoss", eq. 3): CE + epsilon (1 - p_y).
    Reduction: mean over the N samples. epsilon = 0: CE."""

    def __init__(self, epsilon: float = 1.0):
        super().__init__()
        self.epsilon = epsilon

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        log_py, log_p = self.target_log_prob(input, target)
        one_minus_py = torch.exp(self.log_one_minus_target(log_p, target))
        return self.reduce(-log_py + self.epsilon * one_minus_py)


def exact(m, a) -> Tensor:
    return -m.log_p + a.epsilon * m.q


_EPSILON = Poly1Params().epsilon
# The passive term epsilon (1 - p_y) beside the active -log p_y of weight 1.
SPEC = softmax("poly1", "Poly-1: CE + epsilon (1 - p_y)", Poly1Params,
               lambda p, labels: (Poly1CrossEntropy(p.epsilon), {}), "Leng et al. 2022",
               formula="-log p_y + epsilon (1 - p_y)", exact=exact,
               mechanisms=active_passive(_EPSILON, _EPSILON, 0), order=7)
