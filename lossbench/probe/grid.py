"""Sweep each loss over the target-logit margin z in each dtype, next to its float64 closed form.

The losses and their one-row setup are in probed.py, the closed forms in exact.py.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .exact import exact
from .probed import PROBED, TARGET, criterion, is_binary, logits, targets

DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
LOSSES = tuple(PROBED)
COLUMNS = [
    "loss", "dtype", "z", "value", "grad", "exact_value", "exact_grad",
    "rel_err_value", "rel_err_grad", "value_finite", "grad_finite",
]


def z_grid(zmax: float, step: float) -> np.ndarray:
    """Symmetric grid -zmax..zmax; built from integers so 0 and the endpoints are hit exactly."""
    n = int(round(zmax / step))
    return np.arange(-n, n + 1, dtype=np.float64) * step


def loss_and_grad(loss: str, z: np.ndarray, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Loss per z and its gradient w.r.t. the target logit, all computed in `dtype` by the loss's
    criterion (activation, then the module with reduction "none": one loss per row).

    Returns (z as rounded to dtype, value, grad) as float64 tensors. Summing before backward
    is safe: d(sum)/d(row) = 1, and each row's graph touches only its own logits.
    """
    z_d = torch.tensor(z, dtype=torch.float64).to(dtype)
    module, _ = criterion(loss, dtype)
    x = logits(loss, z_d).requires_grad_(True)
    value = module(PROBED[loss].activation(x), targets(loss, len(z), dtype)).reshape(-1)
    value.sum().backward()
    grad = x.grad[:, 0 if is_binary(loss) else TARGET]
    return z_d.double(), value.detach().double(), grad.double()


def _rel_err(computed: np.ndarray, ref: np.ndarray) -> np.ndarray:
    # A non-finite result is an unbounded error; inf keeps it out of NaN-comparison traps.
    with np.errstate(divide="ignore", invalid="ignore"):  # exact 0 (mse's minimum): no ratio
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
