"""focal_sigmoid: torchvision's sigmoid_focal_loss (Lin et al. 2017, the RetinaNet form),
-alpha_t (1 - p_t)^gamma log p_t per output. Single- and multi-label. Mean over N x C."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._criteria import SigmoidLoss
from ._params import LossParams, in_range, is_number
from ._probe import m_of
from ._spec import sigmoid


@dataclass
class SigmoidFocalParams(LossParams):
    name: str = "focal_sigmoid"
    alpha: float = 0.25
    gamma: float = 2.0

    def problems(self, n_classes: int) -> list[str]:
        found = in_range("loss.gamma", self.gamma, 0, math.inf, "a number >= 0")
        # torchvision's sigmoid_focal_loss raises on any other negative (only -1 means off)
        if not (is_number(self.alpha) and (0 <= self.alpha <= 1 or self.alpha == -1)):
            found.append(f"loss.alpha={self.alpha!r} is not accepted: it must be in [0, 1], or "
                         "-1 to switch alpha_t off")
        return found


class SigmoidFocalLoss(SigmoidLoss):
    """torchvision.ops.sigmoid_focal_loss (Lin et al. 2017, the RetinaNet form):
    -alpha_t (1 - p_t)^gamma log p_t per output, p_t = p if y = 1 else 1 - p; alpha = -1 disables
    alpha_t. Reduction: mean over N x C. gamma = 0, alpha = -1: BCEWithLogitsLoss."""

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0):
        super().__init__()
        self.alpha, self.gamma = alpha, gamma

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        from torchvision.ops import sigmoid_focal_loss  # torchvision only where it is used

        return sigmoid_focal_loss(input, target, alpha=self.alpha, gamma=self.gamma,
                                  reduction=self.reduction)


def exact(m, a) -> Tensor:
    alpha_t = a.alpha if a.alpha >= 0 else 1.0  # target 1: alpha_t = alpha
    return alpha_t * torch.exp(a.gamma * m.log_q) * -m.log_p


_SIGMOID_FOCAL = SigmoidFocalParams()
_SF_K = _SIGMOID_FOCAL.gamma + 1  # its loss ~ alpha e^-(gamma+1)z on the right side
MECHANISMS = {
    ("right", "grad_relerr_1pct"): [
        ("cancellation", 1, "torchvision forms p = sigmoid(z) and then 1 - p_t, and "
                            "(1 - p_t)^gamma multiplies that relative error by gamma = {k:g}",
         _SIGMOID_FOCAL.gamma)],
    ("right", "value_relerr_1pct"): [
        ("cancellation", 1, "torchvision's (1 - p_t)^gamma, with 1 - p_t formed from p = sigmoid(z), "
                            "multiplies it by gamma = {k:g}", _SIGMOID_FOCAL.gamma)],
    ("right", "grad_zero"): [
        ("power_underflow", m_of(_SIGMOID_FOCAL.alpha * _SF_K, _SF_K),
         "the gradient ~ alpha (gamma+1) e^-(gamma+1)z is 0 (harmless)", _SF_K),
        ("round_to_one", 1, "sigmoid(z) = 1, so 1 - p_t = 0 and the gradient is 0: "
                            "(exact ~ -alpha (gamma+1) e^-(gamma+1)z: harmless)")],
    ("right", "saturates"): [
        ("power_underflow", m_of(_SIGMOID_FOCAL.alpha, _SF_K),
         "the loss alpha (1-p)^gamma BCE ~ alpha e^-(gamma+1)z underflows to 0 (harmless)", _SF_K),
        ("round_to_one", 1, "1 - p_t = 0: the loss is 0")],
}

SPEC = sigmoid("focal_sigmoid", "torchvision.ops.sigmoid_focal_loss", SigmoidFocalParams,
               lambda p, labels: (SigmoidFocalLoss(p.alpha, p.gamma), {}),
               "Lin et al. 2017; torchvision",
               formula="-alpha_t (1 - p_t)^gamma log p_t, p_t = p if y = 1 else 1 - p, "
               "p = sigmoid(z)", exact=exact, tuned=(("loss.gamma", "1,2"),),
               mechanisms=MECHANISMS, order=14)
