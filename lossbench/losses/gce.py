"""gce: generalized cross-entropy (Zhang & Sabuncu 2018), (1 - p_y^q) / q: q -> 0 is CE, q = 1
is mae / 2. Robust to label noise. Single-label. Mean over N."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ._criteria import SoftmaxLoss, one_minus_exp
from ._params import LossParams, in_range
from ._probe import CANCEL_RIGHT, M_MULTI, ROUND_RIGHT, ROUNDS, OneMinusExp
from ._spec import softmax


@dataclass
class GCEParams(LossParams):
    name: str = "gce"
    q: float = 0.7

    def problems(self, n_classes: int) -> list[str]:
        return in_range("loss.q", self.q, 1e-12, 1, "in (0, 1] (q -> 0 approaches ce, q = 1 is mae / 2)")


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


def exact(m, a) -> Tensor:
    return OneMinusExp.apply(a.q * m.log_p) / a.q


_Q = GCEParams().q
# A function of log p_y alone, which comes from log_softmax.
MECHANISMS = {
    ("right", "grad_relerr_1pct"): [
        ("cancellation", M_MULTI, "log p_y = -log(1 + 9e^-z) from log_softmax: " + CANCEL_RIGHT)],
    ("right", "value_relerr_1pct"): [
        ("cancellation", M_MULTI, "the loss is built from that rounded log p_y")],
    ("right", "grad_zero"): [
        ("round_to_one", M_MULTI, "log p_y = 0 and 1 - p_y^q = -expm1(0) = 0: " + ROUND_RIGHT)],
    ("right", "saturates"): [("round_to_one", M_MULTI, "the loss is exactly 0")],
    ("wrong", "grad_relerr_1pct"): [
        ("power_underflow", M_MULTI, "the gradient -p^q (1-p), p^q = exp(q log p) taken directly "
                                     "(not as expm1(q log p) + 1), is proportional to it", _Q),
        ("short_mantissa", 1, ROUNDS)],
    ("wrong", "grad_zero"): [
        ("power_underflow", M_MULTI, "p^q is 0, and with it the gradient", _Q)],
    ("wrong", "saturates"): [("off_one", M_MULTI, "the loss (1 - p^q)/q is 1/q exactly", _Q)],
}

SPEC = softmax("gce", "generalized cross-entropy (1 - p_y^q) / q", GCEParams,
               lambda p, labels: (GCELoss(p.q), {}), "Zhang & Sabuncu 2018",
               formula="(1 - p_y^q) / q", exact=exact, mechanisms=MECHANISMS, order=11)
