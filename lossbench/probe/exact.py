"""The float64 reference: each probed loss's closed form in the margin z, as its module declares
it (`LossSpec.exact`, built on `lossbench.losses._probe.Margin`), never the torch loss under test.
The gradient w.r.t. z is float64 autograd through that form, with each loss's default knobs (the
probe builds the criteria with them)."""
from __future__ import annotations

import numpy as np
import torch

from lossbench.losses._probe import Margin

from .probed import N_CLASSES, PROBED, is_binary


def exact(loss: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 loss and d/dz at each z, from the loss's closed form."""
    z_t = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    k = 2 if is_binary(loss) else N_CLASSES
    spec = PROBED[loss]
    value = spec.exact(Margin.of(z_t, k), spec.params())
    (grad,) = torch.autograd.grad(value.sum(), z_t)
    return value.detach().numpy(), grad.numpy()
