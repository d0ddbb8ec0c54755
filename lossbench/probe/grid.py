"""Sweep each loss over the target-logit margin z in each dtype, next to its float64 closed form.

Setup (shared by the docstring of the package and the tests):
  binary losses (bce, bce_logits): one logit z, target 1.
  multi-class losses (ce, nll, naive_nll): K = 10 classes, target logit z, the other 9 logits 0.
Both exact losses are one softplus with a shift s (s = 0 binary, s = log(K-1) multi-class):
  loss(z) = softplus(s - z) = log(1 + e^(s-z)),   dloss/dz = -sigmoid(s - z).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

N_CLASSES = 10
TARGET = 0  # index of the target class in the multi-class setup
DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
BINARY = ("bce", "bce_logits")
LOSSES = ("ce", "nll", "naive_nll", "bce", "bce_logits")
COLUMNS = [
    "loss", "dtype", "z", "value", "grad", "exact_value", "exact_grad",
    "rel_err_value", "rel_err_grad", "value_finite", "grad_finite",
]


def z_grid(zmax: float, step: float) -> np.ndarray:
    """Symmetric grid -zmax..zmax; built from integers so 0 and the endpoints are hit exactly."""
    n = int(round(zmax / step))
    return np.arange(-n, n + 1, dtype=np.float64) * step


def exact(loss: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 loss and d/dz from the closed form.

    Multi-class: logsumexp(x) - z = log(1 + sum_{j != t} e^(x_j - z)) = softplus(log(K-1) - z).
    Written as a softplus instead of a subtraction because logsumexp(x) - z cancels to 0 for
    large z even in float64, which would make the reference wrong exactly where we look.
    """
    shift = 0.0 if loss in BINARY else math.log(N_CLASSES - 1)
    u = shift - z
    value = np.logaddexp(0.0, u)  # softplus(u), stable in both tails
    grad = -np.exp(-np.logaddexp(0.0, -u))  # -sigmoid(u) without overflow
    return value, grad


def _logits(loss: str, z: torch.Tensor) -> torch.Tensor:
    if loss in BINARY:
        return z.clone()
    x = torch.zeros(z.shape[0], N_CLASSES, dtype=z.dtype)
    x[:, TARGET] = z
    return x


def _forward(loss: str, x: torch.Tensor) -> torch.Tensor:
    """Per-row loss, written the way users write it (reduction='none' so rows stay independent)."""
    if loss in BINARY:
        target = torch.ones_like(x)
        if loss == "bce":
            return F.binary_cross_entropy(torch.sigmoid(x), target, reduction="none")
        return F.binary_cross_entropy_with_logits(x, target, reduction="none")
    target = torch.full((x.shape[0],), TARGET, dtype=torch.long)
    if loss == "ce":
        return F.cross_entropy(x, target, reduction="none")
    if loss == "nll":
        return F.nll_loss(F.log_softmax(x, dim=1), target, reduction="none")
    return F.nll_loss(torch.log(F.softmax(x, dim=1)), target, reduction="none")


def loss_and_grad(loss: str, z: np.ndarray, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Loss per z and its gradient w.r.t. the target logit, all computed in `dtype`.

    Returns (z as rounded to dtype, value, grad) as float64 tensors. Summing before backward
    is safe: d(sum)/d(row) = 1, and each row's graph touches only its own logits.
    """
    z_d = torch.tensor(z, dtype=torch.float64).to(dtype)
    x = _logits(loss, z_d).requires_grad_(True)
    value = _forward(loss, x)
    value.sum().backward()
    grad = x.grad if loss in BINARY else x.grad[:, TARGET]
    return z_d.double(), value.detach().double(), grad.double()


def _rel_err(computed: np.ndarray, ref: np.ndarray) -> np.ndarray:
    # A non-finite result is an unbounded error; inf keeps it out of NaN-comparison traps.
    err = np.abs(computed - ref) / np.abs(ref)
    return np.where(np.isfinite(computed), err, np.inf)


def run_probe(zmax: float = 120.0, step: float = 0.1,
              losses=LOSSES, dtypes=tuple(DTYPES)) -> pd.DataFrame:
    """Tidy table, one row per (loss, dtype, z); see COLUMNS.

    The reference is evaluated at z rounded to the dtype, so the error measured is the loss's,
    not the rounding of the input (bfloat16 spaces its values 0.5 apart at |z| = 100).
    """
    z = z_grid(zmax, step)
    frames = []
    for loss in losses:
        for name in dtypes:
            z_d, value, grad = (t.numpy() for t in loss_and_grad(loss, z, DTYPES[name]))
            ex_value, ex_grad = exact(loss, z_d)
            frames.append(pd.DataFrame({
                "loss": loss, "dtype": name, "z": z, "value": value, "grad": grad,
                "exact_value": ex_value, "exact_grad": ex_grad,
                "rel_err_value": _rel_err(value, ex_value), "rel_err_grad": _rel_err(grad, ex_grad),
                "value_finite": np.isfinite(value), "grad_finite": np.isfinite(grad),
            }))
    df = pd.concat(frames, ignore_index=True)
    for col in ("loss", "dtype"):
        df[col] = pd.Categorical(df[col], categories=list(dict.fromkeys(df[col])))
    return df[COLUMNS]
