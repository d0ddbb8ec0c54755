"""ce_smooth: torch's CrossEntropyLoss with label smoothing (Szegedy et al. 2016): the target is
(1 - smoothing) onehot + smoothing / C. Single-label. Mean over N."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

from ._params import LossParams, in_range
from ._probe import M_MULTI, N_CLASSES
from ._spec import softmax


@dataclass
class SmoothParams(LossParams):
    name: str = "ce_smooth"
    smoothing: float = 0.1

    def problems(self, n_classes: int) -> list[str]:
        return in_range("loss.smoothing", self.smoothing, 0, 1, "in [0, 1] (0 gives plain ce)")


def exact(m, a) -> Tensor:
    # (1-eps) CE + eps * mean over the K classes of -log p_k
    every_class = -(m.log_p + (m.n_classes - 1) * m.log_other)
    return (1 - a.smoothing) * -m.log_p + a.smoothing / m.n_classes * every_class


_SMOOTH = SmoothParams().smoothing
_SMOOTH_T = 1 - _SMOOTH + _SMOOTH / N_CLASSES  # the target's share of the smoothed one-hot
MECHANISMS = {
    ("right", "grad_relerr_1pct"): [
        ("near_root", math.log(M_MULTI) + math.log(_SMOOTH_T / (1 - _SMOOTH_T)),
         "the gradient p - (1 - eps + eps/K) of the smoothed target vanishes where p reaches the "
         "target's share (a relative error of a near-zero gradient: harmless)",
         _SMOOTH_T * (1 - _SMOOTH_T))],
    ("right", "value_relerr_1pct"): [
        ("short_mantissa", 1, "the loss averages the K rounded log-probabilities")],
}

SPEC = softmax("ce_smooth", "CrossEntropyLoss(label_smoothing=smoothing)", SmoothParams,
               lambda p, labels: (nn.CrossEntropyLoss(label_smoothing=p.smoothing), {}),
               "Szegedy et al. 2016; torch.nn",
               formula="-sum_k [(1 - smoothing) onehot_k + smoothing / C] log p_k", exact=exact,
               tuned=(("loss.smoothing", "0.05,0.1"),), mechanisms=MECHANISMS, order=5)
