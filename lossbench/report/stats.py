"""Confidence intervals over seeds and paired tests against a baseline. Pure numbers, no pandas.

Every function says why it could not compute something (a `note`) instead of returning a silent NaN.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05
# Two-sided exact Wilcoxon signed-rank: the smallest reachable p with m non-zero pairs is 2 / 2**m,
# which is 0.0625 for m = 5 and 0.03125 for m = 6.
WILCOXON_MIN_PAIRS = 6


@dataclass(frozen=True)
class Interval:
    """Mean and Student-t 95% CI over n values; low/high are NaN when n < 2."""

    mean: float
    low: float
    high: float
    n: int


def t_interval(values, confidence: float = CONFIDENCE) -> Interval:
    """mean +- t_{(1+c)/2, n-1} * s / sqrt(n), NaN values dropped."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(np.mean(x))
    if n < 2:
        return Interval(mean, math.nan, math.nan, 1)
    if np.all(x == mean):  # scipy returns NaN for a zero-width interval
        return Interval(mean, mean, mean, n)
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=stats.sem(x))
    return Interval(mean, float(low), float(high), n)


@dataclass(frozen=True)
class Paired:
    """x - baseline over seeds present in both. p-values are None where no test applies; `note` says why."""

    n: int
    mean_diff: float
    low: float
    high: float
    effect_size: float  # Cohen's d_z = mean / sd of the differences; NaN when sd is 0 or n < 2
    t_p: float | None
    wilcoxon_p: float | None
    identical: bool  # every difference exactly 0
    note: str

    @property
    def significant(self) -> bool:
        return self.t_p is not None and self.t_p < ALPHA


def paired_test(x, baseline) -> Paired:
    """Compare paired samples (same order, one pair per seed; NaN pairs dropped)."""
    x, baseline = np.asarray(x, dtype=float), np.asarray(baseline, dtype=float)
    keep = ~(np.isnan(x) | np.isnan(baseline))
    x, baseline = x[keep], baseline[keep]
    d = x - baseline
    n = len(d)
    interval = t_interval(d)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan, math.nan, None, None, False,
                      "no seed in common with the baseline: nothing to pair")
    if np.all(d == 0):
        return Paired(n, 0.0, 0.0, 0.0, math.nan, None, None, True,
                      f"identical to the baseline on all {n} paired seeds "
                      "(every difference exactly 0): nothing to test")
    notes = []
    t_p = w_p = None
    effect = math.nan
    if n < 2:
        notes.append(f"{n} paired seed, too few for a t-test (needs >= 2)")
    elif np.ptp(d) == 0:
        notes.append(f"all {n} differences are equal: t-test undefined (zero variance)")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_p = float(stats.ttest_rel(x, baseline).pvalue)
        effect = float(np.mean(d) / np.std(d, ddof=1))
    m = int(np.count_nonzero(d))  # Wilcoxon drops zero differences
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w_p = float(stats.wilcoxon(x, baseline).pvalue)
    if m < WILCOXON_MIN_PAIRS:
        notes.append(f"Wilcoxon cannot reach p<0.05 with fewer than {WILCOXON_MIN_PAIRS} "
                     f"non-zero pairs (here {m})")
    return Paired(n, interval.mean, interval.low, interval.high, effect, t_p, w_p, False,
                  "; ".join(notes))
