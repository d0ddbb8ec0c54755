"""Find, per (loss, dtype, side), the first |z| at which each kind of numerical failure shows up."""
from __future__ import annotations

import numpy as np
import pandas as pd

REL_TOL = 0.01  # "the gradient is wrong": more than 1% off the exact value
SIDES = {"wrong": -1.0, "right": 1.0}  # sign of z: target logit confidently wrong / right
NEVER = np.nan  # a threshold not reached within the grid

# kind -> what is scanned (the first |z| where the row mask is true)
FIRST = {
    "grad_relerr_1pct": lambda g: g.rel_err_grad > REL_TOL,
    "grad_zero": lambda g: (g.grad == 0) & (g.exact_grad != 0),  # not at a true minimum (mse's)
    "grad_inf": lambda g: np.isinf(g.grad),
    "grad_nan": lambda g: np.isnan(g.grad),
    "value_relerr_1pct": lambda g: g.rel_err_value > REL_TOL,
    "value_nonfinite": lambda g: ~g.value_finite,
}
THRESHOLD_COLUMNS = [
    "loss", "dtype", "side", *FIRST, "saturates", "saturated_value", "max_loss", "max_abs_grad_err",
]


def _first(absz: np.ndarray, mask: np.ndarray) -> float:
    hits = absz[mask]
    return float(hits[0]) if hits.size else NEVER


def _saturation(absz: np.ndarray, value: np.ndarray, exact_value: np.ndarray) -> tuple[float, float]:
    """Start of the tail over which the loss no longer moves with z, and the value it is pinned at.

    A tail only counts if the exact loss does move over it: otherwise the constant tail is just
    several grid points rounding to the same dtype value of z (bfloat16 is 0.5 apart at |z|=100).
    """
    last = value[-1]
    same = (value == last) | (np.isnan(value) & np.isnan(last))
    moving = np.flatnonzero(~same)
    start = moving[-1] + 1 if moving.size else 0
    if len(value) - start < 2 or np.all(exact_value[start:] == exact_value[start]):
        return NEVER, NEVER
    return float(absz[start]), float(last)


def _side_thresholds(g: pd.DataFrame) -> dict:
    g = g.sort_values("z", key=np.abs)
    absz = g.z.abs().to_numpy()
    row = {kind: _first(absz, mask(g).to_numpy()) for kind, mask in FIRST.items()}
    row["saturates"], row["saturated_value"] = _saturation(
        absz, g.value.to_numpy(), g.exact_value.to_numpy())
    finite_values = g.value[~np.isnan(g.value)]
    row["max_loss"] = float(finite_values.max()) if len(finite_values) else NEVER
    err = np.abs(g.grad - g.exact_grad).to_numpy()
    row["max_abs_grad_err"] = float(np.where(np.isnan(err), np.inf, err).max())
    return row


def find_thresholds(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (loss, dtype, side); NaN in a threshold column means "never within the grid"."""
    rows = []
    for (loss, dtype), g in df.groupby(["loss", "dtype"], observed=True, sort=False):
        for side, sign in SIDES.items():
            half = g[np.sign(g.z) == sign]
            rows.append({"loss": loss, "dtype": dtype, "side": side, **_side_thresholds(half)})
    return pd.DataFrame(rows, columns=THRESHOLD_COLUMNS)
