"""brier: the Brier score as a loss, sum_k (p_k - onehot_k)^2 with p = softmax(z) (Brier 1950).
Single-label. Mean over N."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._criteria import SoftmaxLoss
from ._params import no_knobs
from ._probe import M_MULTI, m_of
from ._spec import plain, softmax


class BrierLoss(SoftmaxLoss):
    """The Brier score as a loss: sum_k (p_k - onehot_k)^2, p = softmax(z) (Brier 1950).
    Reduction: mean over the N samples, so it equals lossbench's Brier metric on the same batch."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        onehot = F.one_hot(target, input.shape[1]).to(input.dtype)
        return self.reduce((torch.softmax(input, dim=1) - onehot).pow(2).sum(dim=1))


def exact(m, a) -> Tensor:
    return m.q ** 2 * (1 + 1 / (m.n_classes - 1))  # (1-p)^2 + (K-1) ((1-p)/(K-1))^2


MECHANISMS = {
    ("right", "grad_relerr_1pct"): [
        ("cancellation", M_MULTI, "the loss ~ (1-p)^2 doubles that relative error", 2)],
    ("right", "value_relerr_1pct"): [
        ("cancellation", M_MULTI, "(softmax - onehot)^2 doubles it", 2)],
    ("right", "grad_zero"): [
        ("power_underflow", m_of(2 * M_MULTI, 2), "once p - 1 has rounded to 0, the gradient is "
                                                "softmax's backward of the nine non-target terms "
                                                "2 p_j^2 ~ 2e^-2z, and it is 0", 2),
        ("round_to_one", M_MULTI, "p - 1 = 0, and the non-target squares have underflowed "
                                  "before: the gradient is 0 (harmless)")],
    ("right", "saturates"): [
        ("power_underflow", 1, "the non-target squares p_j^2 ~ e^-2z are 0, p - 1 already was: "
                               "the loss is 0 (harmless)", 2),
        ("round_to_one", M_MULTI, "p - 1 = 0 and the non-target squares have underflowed before: "
                                  "the loss is 0")],
    ("wrong", "grad_relerr_1pct"): [
        ("subnormal", M_MULTI, "the gradient -(20/9) p (1-p)^2 is proportional to p")],
    ("wrong", "grad_zero"): [
        ("p_underflow", M_MULTI, "the gradient, proportional to p, is 0 (exact ~ -2e^-|z|/9 "
                                 "would be subnormal too)")],
}

SPEC = softmax("brier", "squared error between softmax and one-hot (Brier score)", no_knobs("brier"),
               plain(BrierLoss), "Brier 1950", formula="sum_k (p_k - onehot_k)^2", exact=exact,
               mechanisms=MECHANISMS, order=8)
