"""Which dtype autocast gives the ops a loss runs through, asked of torch on the run's device
rather than copied from its documentation (whose op lists differ between CPU and CUDA: CPU
autocast runs log_softmax and softmax in the low dtype, CUDA runs them in float32; both run
cross_entropy and nll_loss in float32)."""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F

from lossbench.training.train import AUTOCAST


def _ops(z: torch.Tensor) -> dict:
    """Each op applied to z, the low-precision output of a linear layer, as autocast runs it."""
    target = torch.zeros(len(z), dtype=torch.long, device=z.device)
    ones = torch.ones_like(z, dtype=torch.float32)
    return {
        "log_softmax": lambda: F.log_softmax(z, dim=1),
        "softmax": lambda: F.softmax(z, dim=1),
        "sigmoid": lambda: torch.sigmoid(z),
        "cross_entropy": lambda: F.cross_entropy(z, target),
        "nll_loss": lambda: F.nll_loss(z, target),
        "binary_cross_entropy_with_logits": lambda: F.binary_cross_entropy_with_logits(z, ones),
        "binary_cross_entropy": lambda: F.binary_cross_entropy(torch.sigmoid(z), ones),
    }


@cache  # a fact of the device and precision: asked once per process, not once per run
def autocast_dtypes(device: torch.device, precision: str) -> dict[str, str]:
    """Op name -> the dtype its output has under autocast (`refused` if autocast raises)."""
    dtype = AUTOCAST[precision]
    if dtype is None:
        return {}
    with torch.autocast(device.type, dtype=dtype):
        # F.linear on fixed weights: an nn.Linear would draw its init from the global RNG the
        # run's dropout masks come from.
        z = F.linear(torch.ones(2, 4, device=device), torch.full((3, 4), 0.1, device=device))
        found = {"linear": str(z.dtype).removeprefix("torch.")}
        for name, op in _ops(z).items():
            try:
                found[name] = str(op().dtype).removeprefix("torch.")
            except RuntimeError:  # CUDA autocast refuses binary_cross_entropy
                found[name] = "refused"
    return found
