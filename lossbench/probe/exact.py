"""The float64 reference: each probed loss in closed form in the margin z, keyed by loss name.

Setup (probed.py): softmax family, K logits (z, 0, ..., 0) with target 0; sigmoid family, one
logit z with target 1. With p the target's probability and s = log(K-1) (softmax) or 0 (sigmoid),
everything is written from two stable quantities:
    log p     = z - logsumexp(x) = -softplus(s - z)
    log(1-p)  = -softplus(z - s)
and, for the losses that see every class, each non-target probability is (1-p)/(K-1), whose log
is log(1-p) - s. softplus is torch.logaddexp(0, .), exact in both tails; never log of a rounded p,
and never logsumexp(x) - z, which cancels to 0 for large z even in float64 and would make the
reference wrong exactly where the probe looks. The gradient w.r.t. z is float64 autograd through
these forms (d log p / dz = 1 - p, d log(1-p) / dz = -p: no cancellation either; 1 - p^q gets
its derivative -p^q directly, not through torch's expm1 backward).

Each form uses the loss's default knobs (the probe builds the criteria with them); the
"balanced" weights of ce_weighted and bce_pos_weight are 1 in the probe's setup.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from .probed import N_CLASSES, PROBED, is_binary


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


class _OneMinusExp(torch.autograd.Function):
    """1 - e^x as -expm1(x), with the derivative -e^x taken directly: torch's expm1 backward
    forms e^x as expm1(x) + 1, which cancels to 0 for x << 0 (the probe found it in the criteria,
    and the reference must not share it). Written here, not imported: the reference stays
    independent of lossbench.criteria."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return -torch.expm1(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return -torch.exp(x) * grad


def _ce(m: Margin, a: Any) -> Tensor:
    return -m.log_p


def _focal(m: Margin, a: Any) -> Tensor:
    return torch.exp(a.gamma * m.log_q) * -m.log_p  # alpha: none by default


def _smooth(m: Margin, a: Any) -> Tensor:
    # (1-eps) CE + eps * mean over the K classes of -log p_k
    every_class = -(m.log_p + (m.n_classes - 1) * m.log_other)
    return (1 - a.smoothing) * -m.log_p + a.smoothing / m.n_classes * every_class


def _nce_rce(m: Margin, a: Any) -> Tensor:
    nce = m.log_p / (m.log_p + (m.n_classes - 1) * m.log_other)
    return a.alpha * nce - a.beta * a.log_zero * m.q


def _focal_sigmoid(m: Margin, a: Any) -> Tensor:
    alpha_t = a.alpha if a.alpha >= 0 else 1.0  # target 1: alpha_t = alpha
    return alpha_t * torch.exp(a.gamma * m.log_q) * -m.log_p


EXACT: dict[str, Callable[[Margin, Any], Tensor]] = {
    "ce": _ce,
    "nll": _ce,
    "naive_nll": _ce,
    "bce": _ce,  # the binary head: -log sigmoid(z)
    "bce_logits": _ce,
    "focal": _focal,
    "ce_smooth": _smooth,
    "ce_weighted": _ce,  # balanced weights are 1 here
    "poly1": lambda m, a: -m.log_p + a.epsilon * m.q,
    "brier": lambda m, a: m.q ** 2 * (1 + 1 / (m.n_classes - 1)),  # (1-p)^2 + (K-1) ((1-p)/(K-1))^2
    "mse": lambda m, a: a.k * (m.z - a.m) ** 2 / m.n_classes,  # the other logits are 0 = their targets
    "mae": lambda m, a: 2 * m.q,
    "gce": lambda m, a: _OneMinusExp.apply(a.q * m.log_p) / a.q,
    "sce": lambda m, a: a.alpha * -m.log_p - a.beta * a.log_zero * m.q,
    "nce_rce": _nce_rce,
    "focal_sigmoid": _focal_sigmoid,
    "bce_pos_weight": _ce,  # balanced pos_weight is 1 here
    # Target 1 sees only the positive term -(1-p)^gamma_pos log p; clip and gamma_neg shape the
    # negatives, which this setup does not probe.
    "asl": lambda m, a: torch.exp(a.gamma_pos * m.log_q) * -m.log_p,
}


def exact(loss: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 loss and d/dz at each z, from the loss's closed form."""
    z_t = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    k = 2 if is_binary(loss) else N_CLASSES
    value = EXACT[loss](Margin.of(z_t, k), PROBED[loss].params())
    (grad,) = torch.autograd.grad(value.sum(), z_t)
    return value.detach().numpy(), grad.numpy()
