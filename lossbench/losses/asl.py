"""asl: asymmetric loss (Ridnik et al. 2021): separate focusing for positives and negatives and a
probability shift (clip) for the negatives. Made for multi-label. Mean over N x C."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ._criteria import SigmoidLoss
from ._params import LossParams, in_range
from ._spec import sigmoid


@dataclass
class ASLParams(LossParams):
    name: str = "asl"
    gamma_neg: float = 4.0
    gamma_pos: float = 0.0
    clip: float = 0.05

    def problems(self, n_classes: int) -> list[str]:
        return (in_range("loss.gamma_neg", self.gamma_neg, 0, math.inf, "a number >= 0")
                + in_range("loss.gamma_pos", self.gamma_pos, 0, math.inf, "a number >= 0")
                + in_range("loss.clip", self.clip, 0, 0.999, "in [0, 1)"))


class AsymmetricLoss(SigmoidLoss):
    """Asymmetric loss (Ridnik et al. 2021, "Asymmetric Loss For Multi-Label Classification",
    eqs. 3-5): per output, with p = sigmoid(z) and the shifted probability p_m = max(p - clip, 0),

        L+ = (1 - p)^gamma_pos log p,   L- = p_m^gamma_neg log(1 - p_m),   loss = -(y L+ + (1-y) L-)

    From logsigmoid: log p = logsigmoid(z), 1 - p = sigmoid(-z), so nothing saturates before the
    clip. The focusing weights are differentiated through (timm's default). Reduction: mean over
    N x C (timm's AsymmetricLossMultiLabel sums), so all three knobs at 0 give BCEWithLogitsLoss."""

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05):
        super().__init__()
        self.gamma_neg, self.gamma_pos, self.clip = gamma_neg, gamma_pos, clip

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        log_p, log_one_minus_p = F.logsigmoid(input), F.logsigmoid(-input)
        positive = log_p * torch.exp(self.gamma_pos * log_one_minus_p)
        if self.clip > 0:
            p_m = (torch.sigmoid(input) - self.clip).clamp(min=0)
            log_one_minus = torch.log((torch.sigmoid(-input) + self.clip).clamp(max=1))
            # p_m^gamma at p_m = 0 has gradient 0 * inf for gamma < 1; where() keeps it 0.
            weight = torch.where(p_m > 0, p_m.clamp(min=torch.finfo(p_m.dtype).tiny).pow(self.gamma_neg), 0)
        else:
            log_one_minus = log_one_minus_p
            weight = torch.exp(self.gamma_neg * log_p)
        negative = log_one_minus * weight
        return self.reduce(-(target * positive + (1 - target) * negative))


def exact(m, a) -> Tensor:
    # Target 1 sees only the positive term -(1-p)^gamma_pos log p; clip and gamma_neg shape the
    # negatives, which the probe's setup does not reach.
    return torch.exp(a.gamma_pos * m.log_q) * -m.log_p


MECHANISMS = {
    ("right", "grad_relerr_1pct"): [
        ("subnormal", 1, "asl's positive term is logsigmoid(z), whose gradient sigmoid(-z) ~ e^-z "
                         "torch computes directly, without BCEWithLogitsLoss's sigmoid(z) - 1 "
                         "cancellation: exact until it is subnormal")],
    ("right", "grad_zero"): [
        ("p_underflow", 1, "logsigmoid's gradient sigmoid(-z) is 0 (harmless)")],
    ("right", "value_relerr_1pct"): [
        ("subnormal", 1, "the loss -logsigmoid(z) ~ e^-z is that number")],
    ("right", "saturates"): [
        ("subnormal", 1, "the loss ~ e^-z underflows to 0 in that range")],
}

SPEC = sigmoid("asl", "asymmetric loss (focusing gamma_neg/gamma_pos, probability shift clip)", ASLParams,
               lambda p, labels: (AsymmetricLoss(p.gamma_neg, p.gamma_pos, p.clip), {}),
               "Ridnik et al. 2021", formula="-[y (1 - p)^gamma_pos log p + (1 - y) "
               "p_m^gamma_neg log(1 - p_m)], p_m = max(p - clip, 0)", exact=exact,
               tuned=(("loss.gamma_neg", "2,4"),), mechanisms=MECHANISMS, order=16)
