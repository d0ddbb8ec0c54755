"""mse: square loss on the logits against the one-hot (Hui & Belkin 2021), with their k, M
rescaling for many classes. Not a probability forecast: its softmax is a read-out. Single-label.
Mean over N x C."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from ._criteria import SoftmaxLoss
from ._params import LossParams, in_range
from ._spec import PER_OUTPUT, softmax


@dataclass
class MSEParams(LossParams):
    name: str = "mse"
    k: float = 1.0
    m: float = 1.0

    def problems(self, n_classes: int) -> list[str]:
        return (in_range("loss.k", self.k, 1e-12, math.inf, "a number > 0")
                + in_range("loss.m", self.m, 1e-12, math.inf, "a number > 0"))


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


def exact(m, a) -> Tensor:
    return a.k * (m.z - a.m) ** 2 / m.n_classes  # the other logits are 0 = their targets


SPEC = softmax("mse", "squared error between logits and one-hot (k, M rescaling)", MSEParams,
               lambda p, labels: (LogitMSELoss(p.k, p.m), {}), "Hui & Belkin 2021",
               "1/C [k (z_y - m)^2 + sum_{j != y} z_j^2]", exact, reduction=PER_OUTPUT,
               probabilistic=False, order=9)
