"""Numerical probe: where each classification loss stops being exact, per dtype, and why.

Losses: every loss in lossbench.losses.LOSSES, built by its spec with its default knobs and fed
through its activation (the criterion training uses, with reduction "none" for one loss per
row), plus naive_nll = NLLLoss(torch.log(softmax(x))), the mistake log_softmax avoids. See
probed.py.

Setup. Sigmoid-family losses get one logit z with target 1; softmax-family losses get K = 10
logits, the target's equal to z and the other K-1 = 9 equal to 0, so z is the target's margin.
z < 0 is a confidently wrong logit ("wrong side"), z > 0 a confidently right one ("right side").

Exact reference, float64 closed form per loss (never the torch loss under test; exact.py). With
s = 0 (binary) or s = log(K-1) (multi-class), p the target's probability:
    log p = -softplus(s - z),   log(1 - p) = -softplus(z - s),
each non-target probability (1-p)/(K-1); ce, nll and the BCEs are -log p, the others are built
from these (focal (1-p)^gamma (-log p), gce (1 - p^q)/q, brier (1-p)^2 K/(K-1), mse (z-1)^2/K,
...). The gradient w.r.t. z is float64 autograd through the closed form, evaluated at z rounded
to the dtype under test, so input rounding is not counted as loss error.

Each loss is computed with autograd in the dtype under test on the whole grid at once
(one row per z, then sum, whose backward hands 1 to every independent row).

Thresholds (first |z| per side where the gradient is >1% off, exactly 0 (where the exact one is
not), inf or NaN, where the
loss is >1% off, non-finite or stops moving) are read off the table, then matched against causes
predicted from torch.finfo facts; see explain.py.

CLI: python -m lossbench.probe [--out DIR] [--step 0.1] [--zmax 120]

May import lossbench.losses (the registry it probes) and runs.results.atomic_write; it trains nothing.
"""
from .cli import main, summary_table, write_outputs
from .exact import exact
from .explain import explain
from .figure import plot_probe
from .grid import run_probe
from .thresholds import find_thresholds

__all__ = [
    "run_probe", "exact", "find_thresholds", "explain", "plot_probe", "summary_table",
    "write_outputs", "main",
]
