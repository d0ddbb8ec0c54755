"""What every loss module gives the numerical probe (lossbench.probe), in the probe's setup:
softmax-family losses see K = 10 logits, the target's (class 0) equal to z and the other K-1 = 9
equal to 0, so z is the target's margin; sigmoid-family losses see the binary head's single logit
z with target 1. z < 0 is a confidently wrong logit ("wrong" side), z > 0 a confidently right one.

1. The float64 reference (a spec's `exact`): the loss at its default knobs in closed form in z,
   written from two stable quantities (`Margin`), with p the target's probability and
   s = log(K-1) (softmax) or 0 (sigmoid):
       log p     = z - logsumexp(x) = -softplus(s - z)
       log(1-p)  = -softplus(z - s)
   and, for the losses that see every class, each non-target probability (1-p)/(K-1), whose log
   is log(1-p) - s. softplus is torch.logaddexp(0, .), exact in both tails; never log of a
   rounded p, and never logsumexp(x) - z, which cancels to 0 for large z even in float64 and
   would make the reference wrong exactly where the probe looks. The probe differentiates it
   with float64 autograd (d log p / dz = 1 - p, d log(1-p) / dz = -p: no cancellation either).
   The "balanced" weights of ce_weighted and bce_pos_weight are 1 in this setup.
2. The mechanisms (a spec's `mechanisms`): for each (side, kind) of threshold the probe may find,
   candidate causes (lossbench.probe.explain.CAUSES) with the m and k of the small quantity they
   speak of. The texts and families several losses share are here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

N_CLASSES = 10  # K, the probe's softmax setup
M_MULTI = N_CLASSES - 1  # non-target logits sharing the probability mass; 1 for the binary case


@dataclass(frozen=True)
class Margin:
    z: Tensor
    log_p: Tensor  # log of the target's probability
    log_q: Tensor  # log(1 - p)
    n_classes: int  # K for the softmax family, 2 for the binary head

    @classmethod
    def of(cls, z: Tensor, n_classes: int) -> "Margin":
        shift = math.log(n_classes - 1)
        zero = torch.zeros_like(z)
        return cls(z, -torch.logaddexp(zero, shift - z), -torch.logaddexp(zero, z - shift), n_classes)

    @property
    def q(self) -> Tensor:
        """1 - p, from its log: exact where p rounds to 1."""
        return torch.exp(self.log_q)

    @property
    def log_other(self) -> Tensor:
        """log of each non-target probability, (1-p)/(K-1)."""
        return self.log_q - math.log(self.n_classes - 1)


class OneMinusExp(torch.autograd.Function):
    """1 - e^x as -expm1(x), with the derivative -e^x taken directly: torch's expm1 backward
    forms e^x as expm1(x) + 1, which cancels to 0 for x << 0 (the probe found it in the criteria,
    and the reference must not share it). Written here, not imported: the reference stays
    independent of the criteria (`_criteria.one_minus_exp`)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return -torch.expm1(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return -torch.exp(x) * grad


def minus_log_p(m: Margin, a) -> Tensor:
    """-log p: ce, nll, both BCEs on the binary head, and the weighted ones at weight 1."""
    return -m.log_p


def m_of(c: float, k: float) -> float:
    """The m of q = (e^-|z|/m)^k for q = c e^-k|z|."""
    return c ** (-1 / k)


def merged(*tables: dict) -> dict:
    """Mechanism tables joined key by key, the earlier table's candidates tried first."""
    out: dict = {}
    for table in tables:
        for key, candidates in table.items():
            out[key] = out.get(key, []) + list(candidates)
    return out


ROUND_RIGHT = "loss and gradient exactly 0 (exact ~ -{mterm}: harmless)"
CANCEL_RIGHT = "the small loss and gradient are off by that rounding error (absolute, at most {meps}: harmless)"
SUBNORMAL_LOG = "log of a subnormal p inherits its coarse rounding"
ROUNDS = "log_softmax, logsumexp, exp and the sums each round"

# ce, nll and ce_weighted at weight 1 run the same operations at the probed point.
SOFTMAX = {
    ("right", "grad_relerr_1pct"): [
        ("cancellation", M_MULTI, "log_softmax = -log(1 + sum e^-z) and softmax - 1: " + CANCEL_RIGHT)],
    ("right", "grad_zero"): [
        ("round_to_one", M_MULTI, "log_softmax(target) = -log(1) = 0: " + ROUND_RIGHT)],
    ("right", "value_relerr_1pct"): [
        ("cancellation", M_MULTI, "the loss is the log of that rounded sum")],
    ("right", "saturates"): [("round_to_one", M_MULTI, "the loss is exactly 0")],
}


def active_passive(c: float, ratio: float, k: float) -> dict:
    """An active term in log p_y (weight a) plus a passive c (1 - p_y): poly1, sce, nce_rce.
    lossbench's criteria take log(1 - p_y) as the logsumexp of the non-target log-probabilities,
    so 1 - p_y is exact on both sides; log p_y is log_softmax's, so they share ce's right side.
    ratio: the passive coefficient per non-target class over a, per |z|^k."""
    return {
        **{("right", kind): [
            ("cancellation", M_MULTI, "the active term's log p_y = -log(1 + 9e^-z) comes from "
                                      "log_softmax, while the passive c(1 - p_y) = c exp(log(1 - p_y)) "
                                      "is exact: " + CANCEL_RIGHT),
            ("subnormal", 1 / M_MULTI, "1 - p_y = exp(log(1 - p_y)) ~ 9e^-z carries the passive term, "
                                       "all that is left of the loss and its gradient"),
            ("short_mantissa", 1, ROUNDS)]
           for kind in ("grad_relerr_1pct", "value_relerr_1pct")},
        ("right", "saturates"): [
            ("p_underflow", 1 / M_MULTI, "1 - p_y ~ 9e^-z is 0 and -log p_y was before: the loss is 0 "
                                         "(harmless)")],
        **{("wrong", kind): [("short_mantissa", 1, ROUNDS)]
           for kind in ("grad_relerr_1pct", "value_relerr_1pct")},
        ("right", "grad_zero"): [
            ("absorbed", ratio, f"the passive term is {c:g}(1 - p_y)", k),
            ("p_underflow", 1 / M_MULTI, "1 - p_y = exp(log(1 - p_y)) ~ 9e^-z is 0, and the active "
                                         "term's gradient had rounded to 0 before: 0 (harmless)"),
            ("subnormal", 1 / c, f"logsumexp's backward hands each non-target log-probability the "
                                 f"passive term's gradient {c:g}e^-z in the dtype, where it rounds to 0; "
                                 f"the active term's part has cancelled: 0 (harmless)")],
    }
