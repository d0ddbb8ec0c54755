"""sce: symmetric cross-entropy (Wang et al. 2019), alpha CE + beta RCE, RCE with log 0 clamped
to A = log_zero. Robust to label noise. Single-label. Mean over N."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from ._criteria import SoftmaxLoss, reverse_cross_entropy
from ._params import LossParams, in_range, is_number
from ._probe import active_passive
from ._spec import softmax


@dataclass
class SCEParams(LossParams):
    name: str = "sce"
    alpha: float = 0.01
    beta: float = 1.0
    log_zero: float = -4.0

    def problems(self, n_classes: int) -> list[str]:
        found = in_range("loss.alpha", self.alpha, 0, math.inf, "a number >= 0")
        found += in_range("loss.beta", self.beta, 0, math.inf, "a number >= 0")
        if is_number(self.alpha) and is_number(self.beta) and self.alpha == self.beta == 0:
            found.append("loss.alpha=0 and loss.beta=0 leave no loss: set at least one > 0")
        return found + in_range("loss.log_zero", self.log_zero, -math.inf, -1e-12, "a number < 0 (log 0 := A)")


class SCELoss(SoftmaxLoss):
    """Symmetric cross-entropy (Wang et al. 2019, "Symmetric Cross Entropy for Robust Learning with
    Noisy Labels"): alpha CE + beta RCE, RCE with log 0 clamped to A = `log_zero`.
    Reduction: mean over the N samples. alpha = 1, beta = 0: CE."""

    def __init__(self, alpha: float, beta: float, log_zero: float):
        super().__init__()
        self.alpha, self.beta, self.log_zero = alpha, beta, log_zero

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        log_py, log_p = self.target_log_prob(input, target)
        rce = reverse_cross_entropy(self.log_one_minus_target(log_p, target), self.log_zero)
        return self.reduce(self.alpha * -log_py + self.beta * rce)


def exact(m, a) -> Tensor:
    return a.alpha * -m.log_p - a.beta * a.log_zero * m.q


_SCE = SCEParams()
_PASSIVE = _SCE.beta * abs(_SCE.log_zero)  # the passive RCE = -A (1 - p_y), beside alpha CE
SPEC = softmax("sce", "symmetric cross-entropy alpha CE + beta RCE", SCEParams,
               lambda p, labels: (SCELoss(p.alpha, p.beta, p.log_zero), {}),
               "Wang et al. 2019", formula="-alpha log p_y - beta log_zero (1 - p_y)", exact=exact,
               mechanisms=active_passive(_PASSIVE, _PASSIVE / _SCE.alpha, 0), order=12)
