"""taylor_ce: Taylor cross-entropy (Feng et al. 2020, "Can Cross Entropy Loss Be Robust to Label
Noise?"): CE's Taylor series in 1 - p_y, -log p_y = sum_k (1 - p_y)^k / k, cut at `order`.
order 1 is 1 - p_y (mae / 2); order -> inf approaches CE: the order weighs how hard the loss fits
a label it disbelieves, so a low order resists label noise. Single-label. Mean over N."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._criteria import SoftmaxLoss
from ._params import LossParams, in_range
from ._probe import M_MULTI, ROUNDS
from ._spec import softmax


@dataclass
class TaylorParams(LossParams):
    name: str = "taylor_ce"
    # terms of the series kept: 1 is mae / 2, higher approaches ce
    order: int = 2

    def problems(self, n_classes: int) -> list[str]:
        return in_range("loss.order", self.order, 1, math.inf, "an integer >= 1 (1 is mae / 2)")


class TaylorCrossEntropy(SoftmaxLoss):
    """Taylor cross-entropy (Feng et al. 2020, eq. 5): sum_{k=1..order} (1 - p_y)^k / k, each
    power exp(k log(1 - p_y)) from the exact log(1 - p_y). Reduction: mean over the N samples."""

    def __init__(self, order: int = 2):
        super().__init__()
        self.order = order

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        log_p = torch.log_softmax(input, dim=1)
        log_q = self.log_one_minus_target(log_p, target)
        k = torch.arange(1, self.order + 1, dtype=input.dtype, device=input.device)
        return self.reduce((torch.exp(k * log_q[:, None]) / k).sum(dim=1))


def exact(m, a) -> Tensor:
    return sum(torch.exp(k * m.log_q) / k for k in range(1, a.order + 1))


# As mae's: at order 2 the wrong side's gradient -p(1-p)(1 + (1-p)) ~ -2p is mae's, and on the
# right side the loss and gradient ~ 1 - p ~ 9e^-z.
MECHANISMS = {
    ("wrong", "grad_relerr_1pct"): [
        ("subnormal", M_MULTI, "p = exp(log p) in log_softmax's backward is that coarse, and the "
                               "gradient -p(1-p)(2-p) is proportional to it"),
        ("subnormal", M_MULTI / 2, "the gradient -p(1-p)(2-p) ~ 2e^-|z|/9 (formed in float32 for "
                                   "16-bit dtypes, then rounded) is that number"),
        ("short_mantissa", 1, ROUNDS)],
    ("wrong", "grad_zero"): [
        ("p_underflow", M_MULTI, "p = exp(log p) in log_softmax's backward is 0, and with it the "
                                 "gradient -p(1-p)(2-p)"),
        ("p_underflow", M_MULTI / 2, "the gradient -p(1-p)(2-p) ~ 2e^-|z|/9, formed in float32 for "
                                     "16-bit dtypes, rounds to 0 in the dtype")],
    ("wrong", "value_relerr_1pct"): [("short_mantissa", 1, ROUNDS)],
    ("wrong", "saturates"): [("log_resolution", M_MULTI, "the loss sum_k 1/k is its limit exactly")],
    ("right", "grad_relerr_1pct"): [
        ("subnormal", 1 / M_MULTI, "1 - p = exp(log(1 - p)) ~ 9e^-z is that number, and the "
                                   "gradient ~ -(1-p) is proportional to it"),
        ("short_mantissa", 1, ROUNDS)],
    ("right", "value_relerr_1pct"): [
        ("subnormal", 1 / M_MULTI, "the loss ~ 1 - p is proportional to it"),
        ("short_mantissa", 1, ROUNDS)],
    ("right", "grad_zero"): [
        ("p_underflow", 1, "logsumexp's backward hands each non-target log-probability "
                           "~(1-p)/9 ~ e^-z, which is 0, and the target's gradient is 0 (harmless)")],
    ("right", "saturates"): [
        ("p_underflow", 1 / M_MULTI, "1 - p = exp(log(1 - p)) ~ 9e^-z is 0: the loss is 0 (harmless)")],
}

SPEC = softmax("taylor_ce", "Taylor cross-entropy: CE's series in (1 - p_y) cut at order", TaylorParams,
               lambda p, labels: (TaylorCrossEntropy(p.order), {}), "Feng et al. 2020",
               formula="sum_{k=1..order} (1 - p_y)^k / k", exact=exact, mechanisms=MECHANISMS)
