"""nce_rce: Active Passive Loss NCE+RCE (Ma et al. 2020), alpha NCE + beta RCE with NCE = log p_y /
sum_k log p_k. Robust to label noise. Single-label. Mean over N."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from ._criteria import SoftmaxLoss, reverse_cross_entropy
from ._probe import M_MULTI, active_passive, merged
from ._spec import softmax
from .sce import SCEParams


@dataclass
class NCERCEParams(SCEParams):
    """The same three knobs as sce (alpha weights NCE instead of CE), the authors' defaults."""

    name: str = "nce_rce"
    alpha: float = 1.0
    beta: float = 10.0
    log_zero: float = math.log(1e-4)


class NCEandRCE(SoftmaxLoss):
    """Active Passive Loss NCE+RCE (Ma et al. 2020, "Normalized Loss Functions for Deep Learning
    with Noisy Labels"): alpha NCE + beta RCE, NCE = log p_y / sum_k log p_k (the CE of the target
    normalised by the CE summed over every possible label). Reduction: mean over the N samples."""

    def __init__(self, alpha: float, beta: float, log_zero: float):
        super().__init__()
        self.alpha, self.beta, self.log_zero = alpha, beta, log_zero

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        log_py, log_p = self.target_log_prob(input, target)
        nce = log_py / log_p.sum(dim=1)
        rce = reverse_cross_entropy(self.log_one_minus_target(log_p, target), self.log_zero)
        return self.reduce(self.alpha * nce + self.beta * rce)


def exact(m, a) -> Tensor:
    nce = m.log_p / (m.log_p + (m.n_classes - 1) * m.log_other)
    return a.alpha * nce - a.beta * a.log_zero * m.q


_NCE = NCERCEParams()
# The passive RCE = -A (1 - p_y) beside NCE, whose weight alpha / |sum_k log p_k| ~ alpha / (9|z|).
_PASSIVE = _NCE.beta * abs(_NCE.log_zero)
_RATIO = _PASSIVE * M_MULTI / _NCE.alpha
MECHANISMS = merged({
    ("right", "grad_relerr_1pct"): [
        ("active_error", _RATIO, "NCE's weight alpha / |sum_k log p_k| shrinks like "
                                 "1/|z|, so this comes later than for sce", 1)],
}, active_passive(_PASSIVE, _RATIO, 1))

SPEC = softmax("nce_rce", "active passive loss alpha NCE + beta RCE", NCERCEParams,
               lambda p, labels: (NCEandRCE(p.alpha, p.beta, p.log_zero), {}), "Ma et al. 2020",
               formula="alpha log p_y / sum_k log p_k - beta log_zero (1 - p_y)", exact=exact,
               mechanisms=MECHANISMS, order=13)
