"""Confidence intervals, paired tests and their corrections. Pure numbers, no pandas.

Every function says why it could not compute something (a `note`) instead of returning a silent NaN.
Library calls do the statistics: scipy.stats.t / ttest_rel / wilcoxon / fisher_exact, statsmodels'
mcnemar and multipletests. Written here, as small vectorised functions over per-seed arrays (the
leading axes of an array are independent studies, so a simulation is one call): the crossed
(seeds x shared test examples) t-test, the probability of improvement, the four-way verdict, the
minimum detectable effect, and the ECE of a perfectly calibrated model. docs/statistics.md says
what each covers and why.
"""

from __future__ import annotations

import gc
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from lossbench.training.metrics import N_BINS, equal_width_edges

CONFIDENCE = 0.95
ALPHA = 0.05
# Two-sided exact Wilcoxon signed-rank: the smallest reachable p with m non-zero pairs is 2 / 2**m,
# which is 0.0625 for m = 5 and 0.03125 for m = 6.
WILCOXON_MIN_PAIRS = 6
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # fixed: the same tables give the same report, byte for byte
POWER = 0.8  # of the minimum detectable effect
TIE = 1e-9  # relative: variances this close are equal (sums of squares in another order)
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
        # statsmodels' Holm branch runs gc.collect() on every call (statsmodels PR #8671, unmerged):
        # 0.2 s in a process holding a report's figures, a third of a small report's time.
        # A collection skips frozen objects, so it has only this call's own to look at; a freeze
        # made by someone else is left alone.
        freeze = method == "holm" and gc.get_freeze_count() == 0
        if freeze:
            gc.freeze()
        try:
            out[tested] = multipletests(p[tested], alpha=ALPHA, method=method)[1]
        finally:
            if freeze:
                gc.unfreeze()
    return out


def adjust_together(parts, method: str = "holm") -> list[np.ndarray]:
    """`adjust` over the concatenation of several p-value arrays (one family), split back."""
    parts = [np.asarray(p, dtype=float) for p in parts]
    adjusted = adjust(np.concatenate(parts) if parts else np.array([]), method)
    return np.split(adjusted, np.cumsum([len(p) for p in parts])[:-1])


def divergence_test(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided Fisher's exact test (scipy.stats.fisher_exact) of k1 diverged runs out of n1
    against k2 out of n2: whether two losses diverge at different rates. NaN without runs."""
    if n1 <= 0 or n2 <= 0:
        return math.nan
    return float(stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue)


# ---- the seed as the unit of replication, with the shared test set --------------------------


@dataclass(frozen=True)
class Crossed:
    """Mean of d[seed, example] with a CI and p that cover both the seeds and the shared test
    set. `se` and `df` feed the minimum detectable effect; `covers` says which components the
    data allowed ('seeds and test examples', 'seeds', 'test examples')."""

    mean: float
    low: float
    high: float
    p: float
    se: float
    df: float
    n_seeds: int
    n_examples: int
    covers: str


def crossed_components(d):
    """Two-way crossed random-effects ANOVA of d[..., seed, example] (leading axes: independent
    studies, so a simulation is one call): d = mu + a_seed + b_example + e. Returns the mean, the
    variance of the mean and its Satterthwaite degrees of freedom, per leading index.

    Var(mean) = s2_a/S + s2_b/N + s2_e/(SN) = (MS_seed + MS_example - MS_resid) / (SN), the
    expected mean squares of the balanced crossed design. Where the seed-level paired t-interval
    (variance MS_seed / (SN) = var(seed means) / S, S - 1 df) is the wider at CONFIDENCE, that
    one is returned instead, so the interval is never narrower than the t-interval over seeds."""
    d = np.asarray(d, dtype=float)
    s, n = d.shape[-2], d.shape[-1]
    grand = d.mean(axis=(-2, -1))
    rows = d.mean(axis=-1)
    cols = d.mean(axis=-2)
    ms_a = n * ((rows - grand[..., None]) ** 2).sum(axis=-1) / (s - 1)
    ms_b = s * ((cols - grand[..., None]) ** 2).sum(axis=-1) / (n - 1)
    resid = d - rows[..., :, None] - cols[..., None, :] + grand[..., None, None]
    ms_e = (resid ** 2).sum(axis=(-2, -1)) / ((s - 1) * (n - 1))
    combined = ms_a + ms_b - ms_e
    with np.errstate(divide="ignore", invalid="ignore"):
        satterthwaite = combined ** 2 / (ms_a ** 2 / (s - 1) + ms_b ** 2 / (n - 1)
                                         + ms_e ** 2 / ((s - 1) * (n - 1)))
    # the seed-level t's half-width at CONFIDENCE against the crossed one's: the wider wins,
    # the seed-level on a tie (within rounding, so the order of seeds and examples never decides)
    crossed = combined > ms_a * (1 + TIE)
    df_crossed = np.where(crossed, satterthwaite, s - 1.0)
    seed_wide = ~crossed | (stats.t.ppf((1 + CONFIDENCE) / 2, s - 1) ** 2 * ms_a * (1 + TIE)
                            >= stats.t.ppf((1 + CONFIDENCE) / 2, df_crossed) ** 2 * combined)
    var = np.where(seed_wide, ms_a, combined) / (s * n)
    df = np.where(seed_wide, s - 1.0, satterthwaite)
    return grand, var, df


def crossed_test(d, confidence: float = CONFIDENCE) -> Crossed:
    """Paired difference d[seed, example] (e.g. correct_x - correct_baseline on the one test
    set every seed was scored on): mean, Student-t CI and two-sided p from crossed_components.
    One seed: the examples alone (a paired t over examples); one example: the seeds alone."""
    d = np.asarray(d, dtype=float)
    s, n = d.shape
    if s == 0 or n == 0:
        return Crossed(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, s, n, "")
    mean = float(d.mean())
    if s == 1 or n == 1:
        values = d.ravel()
        covers = "test examples" if s == 1 else "seeds"
        if len(values) < 2:
            return Crossed(mean, math.nan, math.nan, math.nan, math.nan, math.nan, s, n, covers)
        var, df = float(np.var(values, ddof=1)) / len(values), float(len(values) - 1)
    else:
        _, var, df = (float(v) for v in crossed_components(d))
        covers = "seeds and test examples"
    return _t_result(mean, var, df, s, n, covers, confidence)


def _t_result(mean, var, df, s, n, covers, confidence) -> Crossed:
    se = math.sqrt(var) if var > 0 else 0.0
    if se == 0:
        p = 1.0 if mean == 0 else 0.0
        return Crossed(mean, mean, mean, p, 0.0, df, s, n, covers)
    q = float(stats.t.ppf((1 + confidence) / 2, df))
    p = float(2 * stats.t.sf(abs(mean) / se, df))
    return Crossed(mean, mean - q * se, mean + q * se, p, se, df, s, n, covers)


def seed_t_result(d, confidence: float = CONFIDENCE) -> Crossed:
    """The paired t over per-seed differences as a Crossed (covers the seeds only)."""
    d = np.asarray(d, dtype=float)
    d = d[~np.isnan(d)]
    if len(d) < 2:
        mean = float(d.mean()) if len(d) else math.nan
        return Crossed(mean, math.nan, math.nan, math.nan, math.nan, math.nan, len(d), 0, "")
    return _t_result(float(d.mean()), float(np.var(d, ddof=1)) / len(d), float(len(d) - 1),
                     len(d), 0, "seeds", confidence)


def minimum_detectable_effect(se: float, df: float, alpha: float = ALPHA,
                              power: float = POWER) -> float:
    """The true difference a two-sided t-test at `alpha` with this standard error finds with
    probability `power`: (t_{1-alpha/2} + t_{power}) * se (the usual normal-approximation
    formula, with t quantiles for few seeds)."""
    if not (se == se and df == df) or df <= 0:
        return math.nan
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * se)


def k_of_n(d) -> tuple[int, int]:
    """(k, n): of n paired seeds (NaN dropped), k differ in the direction of the mean difference
    (k counts the zeros as not in it; k = 0 when the mean is 0)."""
    d = np.asarray(d, dtype=float)
    d = d[~np.isnan(d)]
    sign = np.sign(d.mean()) if len(d) else 0.0
    return (int(np.sum(np.sign(d) == sign)) if sign else 0), len(d)


def improvement_probability(x, y, higher_is_better: bool = True):
    """P(X > Y) + P(X = Y) / 2 for a random seed of X and one of Y: the Mann-Whitney U of X over
    Y divided by n_x n_y, as rliable's metrics.probability_of_improvement (Agarwal et al. 2021),
    with the roles swapped where lower is better. Vectorised over leading axes."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if not higher_is_better:
        x, y = -x, -y
    gap = x[..., :, None] - y[..., None, :]
    return ((gap > 0) + 0.5 * (gap == 0)).mean(axis=(-2, -1))


def improvement_interval(x, y, higher_is_better: bool = True, resamples: int = BOOTSTRAP_RESAMPLES,
                         confidence: float = CONFIDENCE, seed: int = BOOTSTRAP_SEED) -> Interval:
    """improvement_probability with rliable's percentile CI: each resample draws the seeds of X
    and of Y independently with replacement (its stratified bootstrap, one task)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if not len(x) or not len(y):
        return Interval(math.nan, math.nan, math.nan, 0)
    estimate = float(improvement_probability(x, y, higher_is_better))
    rng = np.random.default_rng(seed)
    xs = x[rng.integers(0, len(x), size=(resamples, len(x)))]
    ys = y[rng.integers(0, len(y), size=(resamples, len(y)))]
    draws = improvement_probability(xs, ys, higher_is_better)
    low, high = np.quantile(draws, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(estimate, float(low), float(high), min(len(x), len(y)))


VERDICTS = ("better", "worse", "equivalent", "inconclusive")


def verdict(diff: float, low: float, high: float, p_adj: float, p_seed: float, bound: float,
            lower_is_better: bool = False) -> str:
    """'better'/'worse' where the adjusted p of the primary test is below ALPHA, the seed-level
    paired t's p too, and the CI excludes 0; else 'equivalent' where the CI lies inside
    [-bound, +bound] (the smallest effect of interest) and a seed-level test was possible (an
    interval over one seed's test examples says nothing about the next seed); else
    'inconclusive'. '' where nothing was tested."""
    if p_adj is None or math.isnan(p_adj):
        return ""
    known = not (math.isnan(low) or math.isnan(high))
    if (p_adj < ALPHA and p_seed is not None and p_seed < ALPHA and known
            and (low > 0 or high < 0)):
        return "better" if (diff < 0) == lower_is_better else "worse"
    seeded = p_seed is not None and p_seed == p_seed
    if known and seeded and bound == bound and -bound <= low and high <= bound:
        return "equivalent"
    return "inconclusive"


# ---- calibration: what chance alone gives a perfectly calibrated model ----------------------


def binned_ece(confidence, correct, bins: int = N_BINS):
    """Equal-width-bin ECE over the last axis: sum_b n_b |acc_b - conf_b| / n, the number
    lossbench.training.metrics computes for a run. Vectorised over leading axes of `correct` (the
    confidences are shared)."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    # lossbench.training.metrics.reliability_table's bins: (lower, upper], the first closed
    which = np.clip(np.searchsorted(equal_width_edges(bins), confidence, side="left") - 1, 0,
                    bins - 1)
    onehot = np.eye(bins)[which]  # (N, B)
    gap = correct @ onehot - confidence @ onehot  # per bin: sum correct - sum confidence
    return np.abs(gap).sum(axis=-1) / len(confidence)


def ece_floor(confidence, bins: int = N_BINS, draws: int = 500, seed: int = BOOTSTRAP_SEED,
              confidence_level: float = CONFIDENCE) -> Interval:
    """ECE of a perfectly calibrated model with these top-class confidences: each draw labels
    every example correct with probability its confidence, so any ECE above 0 is sampling
    noise of a test set this size. Returns the mean and the central interval of the draws."""
    confidence = np.asarray(confidence, dtype=float)
    confidence = confidence[~np.isnan(confidence)]
    if not len(confidence):
        return Interval(math.nan, math.nan, math.nan, 0)
    rng = np.random.default_rng(seed)
    correct = rng.random((draws, len(confidence))) < confidence
    values = binned_ece(confidence, correct, bins)
    low, high = np.quantile(values, [(1 - confidence_level) / 2, (1 + confidence_level) / 2])
    return Interval(float(values.mean()), float(low), float(high), len(confidence))


def ece_bootstrap(counts, confidence, accuracy, resamples: int = 2_000,
                  confidence_level: float = CONFIDENCE, seed: int = BOOTSTRAP_SEED) -> Interval:
    """Percentile CI of the mean over seeds of the binned ECE, from reliability bins
    counts/confidence/accuracy[seed, bin]: each resample draws the seeds with replacement and,
    in each bin, its correct count ~ Binomial(count, accuracy) (the test examples resampled
    within the bin), so it covers the seeds and the finite test set."""
    counts = np.nan_to_num(np.asarray(counts, dtype=float))
    confidence = np.nan_to_num(np.asarray(confidence, dtype=float))
    accuracy = np.nan_to_num(np.asarray(accuracy, dtype=float))
    totals = counts.sum(axis=-1)
    if counts.ndim != 2 or not len(counts) or (totals <= 0).any():
        return Interval(math.nan, math.nan, math.nan, 0)
    per_seed = (counts * np.abs(accuracy - confidence)).sum(axis=-1) / totals
    rng = np.random.default_rng(seed)
    s = len(counts)
    drawn = rng.integers(0, s, size=(resamples, s))
    hits = rng.binomial(counts[drawn].astype(np.int64), np.clip(accuracy[drawn], 0, 1))
    ece = (np.abs(hits - counts[drawn] * confidence[drawn]).sum(axis=-1) / totals[drawn])
    low, high = np.quantile(ece.mean(axis=-1), [(1 - confidence_level) / 2,
                                                 (1 + confidence_level) / 2])
    return Interval(float(per_seed.mean()), float(low), float(high), s)
