"""The losses torch does not ship, as small modules named for what they compute.

Each is written from `log_softmax` or `logsigmoid`, never `log(softmax)`. With p_y the target's
probability, log p_y comes straight from the logits, and log(1 - p_y) is the logsumexp of the other
classes' log-probabilities (1 - p_y is their sum), so 1 - p_y and its powers are exp of a log that
is exact on both sides: their values and gradients hold where p_y rounds to 0 as well as where it
rounds to 1 (-expm1(log p_y) holds the value only: its backward forms p_y as expm1(log p_y) + 1,
which is 0 once p_y is below half an ulp of 1). gce's 1 - p_y^q is -expm1(q log p_y) with the
derivative -p_y^q taken from exp (`one_minus_exp`). log p_y itself is log_softmax's: exact for a
wrong logit, and for a confidently right one as accurate as cross-entropy's, which rounds
1 + sum_j e^(z_j - z_y).

Each docstring gives the formula, its source and the reduction, because the reduction sets the
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
from typing import Optional

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


class Poly1CrossEntropy(SoftmaxLoss):
    """Poly-1 (Leng et al. 2022, "PolyLoss", eq. 3): CE + epsilon (1 - p_y).
    Reduction: mean over the N samples. epsilon = 0: CE."""

    def __init__(self, epsilon: float = 1.0):
        super().__init__()
        self.epsilon = epsilon

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        log_py, log_p = self.target_log_prob(input, target)
        one_minus_py = torch.exp(self.log_one_minus_target(log_p, target))
        return self.reduce(-log_py + self.epsilon * one_minus_py)


class BrierLoss(SoftmaxLoss):
    """The Brier score as a loss: sum_k (p_k - onehot_k)^2, p = softmax(z) (Brier 1950).
    Reduction: mean over the N samples, so it equals lossbench's Brier metric on the same batch."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        onehot = F.one_hot(target, input.shape[1]).to(input.dtype)
        return self.reduce((torch.softmax(input, dim=1) - onehot).pow(2).sum(dim=1))


class LogitMSELoss(SoftmaxLoss):
    """Square loss on the logits (Hui & Belkin 2021, "Evaluation of Neural Architectures Trained
    with Square Loss vs Cross-Entropy in Classification Tasks", section 3):

        l = 1/C [k (z_y - M)^2 + sum_{j != y} z_j^2]

    k and M are their rescaling for many classes (k = M = 1: plain MSE against the one-hot).
    Reduction: mean over N x C, as MSELoss: the 1/C is the paper's."""

    def __init__(self, k: float = 1.0, m: float = 1.0):
        super().__init__()
        self.k, self.m = k, m

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        onehot = F.one_hot(target, input.shape[1]).to(input.dtype)
        squared = (input - self.m * onehot).pow(2)
        return self.reduce((squared * (1 + (self.k - 1) * onehot)).mean(dim=1))


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


class GCELoss(SoftmaxLoss):
    """Generalized cross-entropy (Zhang & Sabuncu 2018, "Generalized Cross Entropy Loss for
    Training Deep Neural Networks with Noisy Labels", eq. 6): (1 - p_y^q) / q, with p_y^q =
    exp(q log p_y). q -> 0: CE; q = 1: 1 - p_y (= mae / 2). Reduction: mean over the N samples.
    (The authors' code clamps p at 1e-7 first; this form needs no clamp.)"""

    def __init__(self, q: float = 0.7):
        super().__init__()
        self.q = q

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        log_py, _ = self.target_log_prob(input, target)
        return self.reduce(one_minus_exp(self.q * log_py) / self.q)


def reverse_cross_entropy(log_one_minus_py: Tensor, log_zero: float) -> Tensor:
    """RCE = -sum_k p_k log onehot_k with log 0 := A (`log_zero`): only the non-target classes
    contribute, so RCE = -A (1 - p_y) (Wang et al. 2019, eq. 5), from log(1 - p_y)."""
    return -log_zero * torch.exp(log_one_minus_py)


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
