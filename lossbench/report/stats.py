"""Confidence intervals, paired tests and their corrections. Pure numbers, no pandas.

Every function says why it could not compute something (a `note`) instead of returning a silent NaN.
Library calls do the statistics: scipy.stats.t / ttest_rel / wilcoxon / fisher_exact, statsmodels'
mcnemar and multipletests. The one thing they lack is a two-level (seeds, then test examples)
bootstrap, written here.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

CONFIDENCE = 0.95
ALPHA = 0.05
# Two-sided exact Wilcoxon signed-rank: the smallest reachable p with m non-zero pairs is 2 / 2**m,
# which is 0.0625 for m = 5 and 0.03125 for m = 6.
WILCOXON_MIN_PAIRS = 6
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # fixed: the same tables give the same report, byte for byte
# multipletests methods a report may adjust by, and their names in captions
ADJUSTMENTS = {"holm": "Holm", "fdr_bh": "Benjamini-Hochberg"}


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
        notes.append(f"Wilcoxon cannot reach p < 0.05 with fewer than {WILCOXON_MIN_PAIRS} "
                     f"non-zero pairs (here {m})")
    return Paired(n, interval.mean, interval.low, interval.high, effect, t_p, w_p, False,
                  "; ".join(notes))


def hierarchical_bootstrap(per_seed, resamples: int = BOOTSTRAP_RESAMPLES,
                           confidence: float = CONFIDENCE, seed: int = BOOTSTRAP_SEED) -> Interval:
    """Percentile CI of mean_s mean_i d[s][i]: per paired seed s, the per-example differences
    d[s] (e.g. correct_x - correct_baseline on each test example). Each resample draws the seeds
    with replacement, then, within each drawn seed, its examples with replacement, so the interval
    covers both the initialisation and the finite test set. scipy.stats.bootstrap resamples one
    level only, hence this. `n` of the result counts seeds."""
    per_seed = [np.asarray(d, dtype=float) for d in per_seed if len(d)]
    n = len(per_seed)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(np.mean([d.mean() for d in per_seed]))
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n, size=(resamples, n))  # level 1: which seeds each resample holds
    means = np.empty((resamples, n))
    for s, d in enumerate(per_seed):
        at = drawn == s
        # level 2: len(d) examples drawn with replacement are a multinomial over d's distinct
        # values (three for a difference of two correctness flags): exact and small in memory
        values, counts = np.unique(d, return_counts=True)
        draws = rng.multinomial(len(d), counts / len(d), size=int(at.sum()))
        means[at] = draws @ values / len(d)
    low, high = np.quantile(means.mean(axis=1), [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(mean, float(low), float(high), n)


def mcnemar_exact(correct, baseline_correct) -> float:
    """McNemar's exact test (statsmodels: a binomial test on the discordant pairs) on paired
    per-example correctness, pooled over whatever the arrays hold (all paired seeds)."""
    x = np.asarray(correct, dtype=bool)
    b = np.asarray(baseline_correct, dtype=bool)
    table = [[int(np.sum(x & b)), int(np.sum(x & ~b))],
             [int(np.sum(~x & b)), int(np.sum(~x & ~b))]]
    return float(mcnemar(table, exact=True).pvalue)


def adjust(pvalues, method: str = "holm") -> np.ndarray:
    """statsmodels multipletests over the finite p-values (one family); NaN (not tested) stays
    NaN and does not count towards the family's size."""
    if method not in ADJUSTMENTS:
        raise ValueError(f"unknown adjustment {method!r}; accepted: {', '.join(ADJUSTMENTS)}")
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), math.nan)
    tested = ~np.isnan(p)
    if tested.any():
        out[tested] = multipletests(p[tested], alpha=ALPHA, method=method)[1]
    return out


def divergence_test(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided Fisher's exact test (scipy.stats.fisher_exact) of k1 diverged runs out of n1
    against k2 out of n2: whether two losses diverge at different rates. NaN without runs."""
    if n1 <= 0 or n2 <= 0:
        return math.nan
    return float(stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue)
