"""mae: mean absolute error between softmax and one-hot (Ghosh et al. 2017), scale (1 - p_y):
scale 2 is sum_k |onehot_k - p_k|. Robust to label noise. Single-label. Mean over N."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ._criteria import SoftmaxLoss
from ._params import LossParams, in_range
from ._probe import M_MULTI, ROUNDS
from ._spec import softmax


@dataclass
class MAEParams(LossParams):
    name: str = "mae"
    # scale (1 - p_y): 2 is sum_k |onehot_k - p_k| (Ghosh et al.); 1 is the Active Passive Loss code's MAE
    scale: float = 2.0

    def problems(self, n_classes: int) -> list[str]:
        return in_range("loss.scale", self.scale, 1e-12, math.inf, "a number > 0")


class MAELoss(SoftmaxLoss):
    """Mean absolute error between softmax and one-hot (Ghosh et al. 2017, "Robust Loss Functions
    under Label Noise for Deep Neural Networks"): sum_k |onehot_k - p_k| = 2 (1 - p_y), as
    scale (1 - p_y) with scale 2. Reduction: mean over the N samples. (The Active Passive Loss
    code's MAE is the reduced form 1 - p_y: scale 1.)"""

    def __init__(self, scale: float = 2.0):
        super().__init__()
        self.scale = scale

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        log_p = F.log_softmax(input, dim=1)
        return self.reduce(self.scale * torch.exp(self.log_one_minus_target(log_p, target)))


def exact(m, a) -> Tensor:
    return 2 * m.q


MECHANISMS = {
    ("wrong", "grad_relerr_1pct"): [
        ("subnormal", M_MULTI, "p = exp(log p) in log_softmax's backward is that coarse, and the "
                               "gradient -2p(1-p) is proportional to it"),
        ("subnormal", M_MULTI / 2, "the gradient -2p(1-p) ~ 2e^-|z|/9 (formed in float32 for "
                                   "16-bit dtypes, then rounded) is that number"),
        ("short_mantissa", 1, ROUNDS)],
    ("wrong", "grad_zero"): [
        ("p_underflow", M_MULTI, "p = exp(log p) in log_softmax's backward is 0, and with it the "
                                 "gradient -2p(1-p)"),
        ("p_underflow", M_MULTI / 2, "the gradient -2p(1-p) ~ 2e^-|z|/9, formed in float32 for "
                                     "16-bit dtypes, rounds to 0 in the dtype")],
    ("wrong", "value_relerr_1pct"): [("short_mantissa", 1, ROUNDS)],
    ("wrong", "saturates"): [("log_resolution", M_MULTI, "the loss 2(1-p) is 2 exactly")],
    ("right", "grad_relerr_1pct"): [
        ("subnormal", 1 / M_MULTI, "1 - p = exp(log(1 - p)) ~ 9e^-z is that number, and the "
                                   "gradient -2p(1-p) is proportional to it"),
        ("short_mantissa", 1, ROUNDS)],
    ("right", "value_relerr_1pct"): [
        ("subnormal", 1 / M_MULTI, "the loss 2(1-p) is proportional to it"),
        ("short_mantissa", 1, ROUNDS)],
    ("right", "grad_zero"): [
        ("p_underflow", 1 / 2, "logsumexp's backward hands each non-target log-probability "
                               "2(1-p)/9 ~ 2e^-z, which is 0, and the target's gradient is 0 (harmless)")],
    ("right", "saturates"): [
        ("p_underflow", 1 / M_MULTI, "1 - p = exp(log(1 - p)) ~ 9e^-z is 0: the loss is 0 (harmless)")],
}

SPEC = softmax("mae", "scale (1 - p_y); scale 2: sum_k |onehot_k - softmax_k|", MAEParams,
               lambda p, labels: (MAELoss(p.scale), {}), "Ghosh et al. 2017",
               formula="scale (1 - p_y)", exact=exact, mechanisms=MECHANISMS, order=10)
