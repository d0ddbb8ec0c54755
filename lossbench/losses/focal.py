"""focal: focal loss, softmax form (Lin et al. 2017): -alpha_y (1 - p_y)^gamma log p_y, from
log_softmax. Down-weights easy examples. Single-label. Mean over N."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ._criteria import SoftmaxLoss
from ._params import LossParams, class_list, in_range
from ._probe import M_MULTI, ROUND_RIGHT, ROUNDS, m_of
from ._spec import softmax


@dataclass
class FocalParams(LossParams):
    name: str = "focal"
    gamma: float = 2.0
    alpha: Optional[list[float]] = None

    def problems(self, n_classes: int) -> list[str]:
        found = in_range("loss.gamma", self.gamma, 0, math.inf, "a number >= 0 (0 gives plain ce)")
        if self.alpha is not None:
            found += class_list("loss.alpha", self.alpha, n_classes, "per-class weights")
        return found


class FocalLoss(SoftmaxLoss):
    """Focal loss, softmax form (Lin et al. 2017, "Focal Loss for Dense Object Detection", eq. 5):

        FL = -alpha_y (1 - p_y)^gamma log p_y

    The weight (1 - p_y)^gamma is differentiated through, as in the paper (the clcarwin code that
    the Active Passive Loss repository copies detaches it). alpha: optional per-class weights.
    Reduction: plain mean over the N samples, also with alpha. gamma = 0 and no alpha: CE.
    """

    def __init__(self, gamma: float = 2.0, alpha: Optional[Tensor] = None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("alpha", alpha)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        log_py, log_p = self.target_log_prob(input, target)
        # (1 - p_y)^gamma as exp(gamma log(1 - p_y)): log(1 - p_y) is finite, so gamma = 0 gives
        # weight 1 and gradient 0, with no 0^0 (whose pow gradient is 0 * inf where p_y = 1).
        loss = -log_py * torch.exp(self.gamma * self.log_one_minus_target(log_p, target))
        if self.alpha is not None:
            loss = loss * self.alpha[target]
        return self.reduce(loss)


def build(params: FocalParams, labels) -> tuple:
    alpha = None if params.alpha is None else torch.tensor(params.alpha, dtype=torch.float32)
    return FocalLoss(params.gamma, alpha), {}


def exact(m, a) -> Tensor:
    return torch.exp(a.gamma * m.log_q) * -m.log_p  # alpha: none by default


_GAMMA = FocalParams().gamma  # the loss ~ (9e^-z)^(gamma+1) on the right side
MECHANISMS = {
    ("right", "grad_relerr_1pct"): [
        ("cancellation", M_MULTI, "the loss ~ (1-p)^(gamma+1) multiplies that relative error "
                                  "by gamma+1 = {k:g}", _GAMMA + 1)],
    ("right", "value_relerr_1pct"): [
        ("cancellation", M_MULTI, "(1-p)^gamma (-log p) multiplies it by gamma+1 = {k:g}", _GAMMA + 1)],
    ("right", "grad_zero"): [
        ("power_underflow", m_of((_GAMMA + 1) * M_MULTI ** (_GAMMA + 1), _GAMMA + 1),
         "the gradient ~ (gamma+1)(9e^-z)^(gamma+1) is 0 (harmless)", _GAMMA + 1),
        ("round_to_one", M_MULTI, "log p = 0, so the loss (1-p)^gamma (-log p) and its gradient "
                                  "are 0: " + ROUND_RIGHT)],
    ("right", "saturates"): [
        ("power_underflow", 1 / M_MULTI, "the loss (1-p)^gamma (-log p) ~ (9e^-z)^(gamma+1) "
                                         "underflows to 0 (harmless)", _GAMMA + 1),
        ("round_to_one", M_MULTI, "the loss is exactly 0")],
    **{("wrong", kind): [("short_mantissa", 1, ROUNDS)]
       for kind in ("grad_relerr_1pct", "value_relerr_1pct")},
}

SPEC = softmax("focal", "focal loss -(1-p_y)^gamma log p_y from log_softmax", FocalParams, build,
               "Lin et al. 2017", formula="-alpha_y (1 - p_y)^gamma log p_y", exact=exact,
               tuned=(("loss.gamma", "1,2"),), mechanisms=MECHANISMS, order=4)
