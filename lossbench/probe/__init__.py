"""Numerical probe: where each classification loss stops being exact, per dtype, and why.

Setup. Binary losses get one logit z with target 1; multi-class losses get K = 10 logits, the
target's equal to z and the other K-1 = 9 equal to 0, so z is the target's margin. z < 0 is a
confidently wrong logit ("wrong side"), z > 0 a confidently right one ("right side").

Exact reference, float64 closed form (never the torch loss under test). With s = 0 (binary) or
s = log(K-1) (multi-class), both cases are one softplus:
    loss(z)  = logsumexp(x) - z = log(1 + e^(s-z)) = softplus(s - z)
    dloss/dz = softmax_t - 1 = sigmoid(z - s) - 1 = -sigmoid(s - z)
evaluated at z rounded to the dtype under test, so input rounding is not counted as loss error.

Losses probed, each computed with autograd in the dtype under test on the whole grid at once
(reduction='none', then sum, whose backward hands 1 to every independent row):
    ce          F.cross_entropy(x, t)
    nll         F.nll_loss(F.log_softmax(x), t)
    naive_nll   F.nll_loss(torch.log(F.softmax(x)), t)
    bce         F.binary_cross_entropy(torch.sigmoid(z), 1)
    bce_logits  F.binary_cross_entropy_with_logits(z, 1)

Thresholds (first |z| per side where the gradient is >1% off, exactly 0, inf or NaN, where the
loss is >1% off, non-finite or stops moving) are read off the table, then matched against causes
predicted from torch.finfo facts; see explain.py.

CLI: python -m lossbench.probe [--out DIR] [--step 0.1] [--zmax 120]
"""
from .cli import main, summary_table, write_outputs
from .explain import explain
from .figure import plot_probe
from .exact import exact
from .grid import run_probe
from .thresholds import find_thresholds

__all__ = [
    "run_probe", "exact", "find_thresholds", "explain", "plot_probe", "summary_table",
    "write_outputs", "main",
]
