"""What the criteria lossbench writes share (each lives in its loss's module, named for what it
computes, with its formula, reference and reduction in its docstring).

Each is written from `log_softmax` or `logsigmoid`, never `log(softmax)`. With p_y the target's
probability, log p_y comes straight from the logits, and log(1 - p_y) is the logsumexp of the other
classes' log-probabilities (1 - p_y is their sum), so 1 - p_y and its powers are exp of a log that
is exact on both sides: their values and gradients hold where p_y rounds to 0 as well as where it
rounds to 1 (-expm1(log p_y) holds the value only: its backward forms p_y as expm1(log p_y) + 1,
which is 0 once p_y is below half an ulp of 1). gce's 1 - p_y^q is -expm1(q log p_y) with the
derivative -p_y^q taken from exp (`one_minus_exp`). log p_y itself is log_softmax's: exact for a
wrong logit, and for a confidently right one as accurate as cross-entropy's, which rounds
1 + sum_j e^(z_j - z_y).

Each docstring gives the formula, its reference and the reduction, because the reduction sets the
effective learning rate: the softmax family averages over the N samples (as CrossEntropyLoss
does), the sigmoid family over the N x C outputs (as BCEWithLogitsLoss does).

Softmax-family modules take (logits (N, C), class indices (N,)); sigmoid-family modules take
(logits, float 0/1 targets of the logits' shape). The two base classes say which, for the
mistake checker.

Like torch's losses, each module reads its `reduction` attribute at every call: "mean" (the
default, what training uses, as each docstring states) or "none", the unreduced terms whose mean
that is: one per sample for the softmax family, one per output for the sigmoid family. The probe
sets it to "none" on every criterion to read one loss per row.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ReducedLoss(nn.Module):
    """reduction: "mean" (default) or "none" (the terms, unaveraged), set as on torch's losses."""

    reduction = "mean"

    def reduce(self, terms: Tensor) -> Tensor:
        if self.reduction not in ("mean", "none"):
            raise ValueError(f"reduction={self.reduction!r}: use 'mean' or 'none'")
        return terms.mean() if self.reduction == "mean" else terms


class SoftmaxLoss(ReducedLoss):
    """Takes raw logits (N, C) and class indices (N,); classes are mutually exclusive."""

    @staticmethod
    def target_log_prob(input: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """(log p_y, log p) per sample, from log_softmax."""
        log_p = F.log_softmax(input, dim=1)
        return log_p.gather(1, target[:, None]).squeeze(1), log_p

    @staticmethod
    def log_one_minus_target(log_p: Tensor, target: Tensor) -> Tensor:
        """log(1 - p_y) per sample: the logsumexp of the non-target log-probabilities. The target's
        entry is -inf, which logsumexp weighs by exp(-inf) = 0 in value and gradient (C >= 2)."""
        return log_p.scatter(1, target[:, None], -math.inf).logsumexp(dim=1)


class SigmoidLoss(ReducedLoss):
    """Takes raw logits and float 0/1 targets of the same shape; each output is a Bernoulli."""


def one_minus_exp(x: Tensor) -> Tensor:
    """1 - e^x with the value of -expm1(x) (exact as x -> 0) and the derivative -e^x (exact as
    x -> -inf, where expm1's backward, expm1(x) + 1, cancels to 0)."""
    # Straight-through rather than an autograd.Function: three plain ops, no ctx or saved
    # tensors; g - g.detach() is exactly 0 in value and carries g's gradient.
    g = -torch.exp(x)
    return -torch.expm1(x).detach() + (g - g.detach())


def reverse_cross_entropy(log_one_minus_py: Tensor, log_zero: float) -> Tensor:
    """RCE = -sum_k p_k log onehot_k with log 0 := A (`log_zero`): only the non-target classes
    contribute, so RCE = -A (1 - p_y) (Wang et al. 2019, eq. 5), from log(1 - p_y)."""
    return -log_zero * torch.exp(log_one_minus_py)
