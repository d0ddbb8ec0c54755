"""The verdict statistics themselves (lossbench.report.stats), on simulated studies.

A simulated study: S seeds of two losses scored on one shared test set of N examples. Each
example has a difficulty shared by every seed and both losses, and an example x loss effect
(this test set happens to suit one loss on some examples) shared by every seed; each seed adds
its own effect per loss. Under the null the two losses are exchangeable, so a verdict must
come out "better" or "worse" in at most 5% of studies plus Monte-Carlo error. Each simulation
draws SIMULATIONS studies at once (vectorised): the Monte-Carlo standard error of a 5% rate is
sqrt(0.05 * 0.95 / 2000) = 0.0049, so rates are checked against 0.05 + 3 standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from lossbench.training.metrics import equal_width_edges, expected_calibration_error, reliability_table
from lossbench.report.stats import (ALPHA, binned_ece, crossed_components, crossed_test,
                                    ece_bootstrap, ece_floor, improvement_interval,
                                    improvement_probability, k_of_n, minimum_detectable_effect,
                                    seed_t_result, t_interval, verdict)

SIMULATIONS = 2000
MC_LIMIT = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / SIMULATIONS)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def studies(rng, seeds: int, examples: int, shift: float = 0.0, seed_sd: float = 0.3,
            example_sd: float = 1.0, draws: int = SIMULATIONS) -> np.ndarray:
    """d[study, seed, example] = correct_x - correct_baseline; x's logits are `shift` higher."""
    difficulty = rng.normal(1.5, 1.5, (draws, 1, examples))
    suits = rng.normal(0, example_sd, (draws, 1, examples)) / 2  # the test set's luck, shared
    x = difficulty + suits + shift + rng.normal(0, seed_sd, (draws, seeds, 1))
    base = difficulty - suits + rng.normal(0, seed_sd, (draws, seeds, 1))
    shape = (draws, seeds, examples)
    return ((rng.random(shape) < sigmoid(x)).astype(np.float32)
            - (rng.random(shape) < sigmoid(base)))


def verdict_rates(d: np.ndarray) -> tuple[float, float]:
    """Share of studies the verdict rule calls better or worse, and the share a seed-level
    paired t-test alone would."""
    mean, var, df = crossed_components(d)
    p = 2 * stats.t.sf(np.abs(mean) / np.sqrt(var), df)
    seed_means = d.mean(axis=-1)
    s = d.shape[-2]
    p_seed = stats.ttest_1samp(seed_means, 0, axis=-1).pvalue
    q = stats.t.ppf(0.975, df)
    excludes = np.abs(mean) > q * np.sqrt(var)
    return float(np.mean((p < ALPHA) & (p_seed < ALPHA) & excludes)), float(np.mean(p_seed < ALPHA))


def test_verdicts_under_the_null_are_false_at_most_5_percent_with_a_shared_test_set():
    rng = np.random.default_rng(0)
    d = studies(rng, seeds=5, examples=400, seed_sd=0.1, example_sd=2.0)
    verdicts, seed_only = verdict_rates(d)
    assert verdicts <= MC_LIMIT
    # the shared test set's luck is what the crossed test adds: a seed-level t-test alone,
    # blind to it, calls well over 5% of these null studies
    assert seed_only > 1.5 * MC_LIMIT


def test_verdicts_under_the_null_with_large_seed_effects_stay_at_5_percent():
    verdicts, _ = verdict_rates(studies(np.random.default_rng(7), seeds=5, examples=400))
    assert verdicts <= MC_LIMIT


def test_verdicts_under_the_null_without_example_effects_stay_at_5_percent():
    verdicts, _ = verdict_rates(studies(np.random.default_rng(1), seeds=3, examples=300,
                                        example_sd=0.0))
    assert verdicts <= MC_LIMIT


def expected_difference(shift: float, seed_sd: float = 0.3, example_sd: float = 1.0) -> float:
    """The population difference in accuracy (over examples and seeds) of the studies' model."""
    rng = np.random.default_rng(99)
    n = 2_000_000
    difficulty, suits = rng.normal(1.5, 1.5, n), rng.normal(0, example_sd, n) / 2
    a, b = rng.normal(0, seed_sd, n), rng.normal(0, seed_sd, n)
    return float(np.mean(sigmoid(difficulty + suits + shift + a) - sigmoid(difficulty - suits + b)))


def test_crossed_interval_covers_the_population_difference_about_95_percent():
    rng = np.random.default_rng(2)
    truth = expected_difference(0.3)
    d = studies(rng, seeds=5, examples=400, shift=0.3)
    mean, var, df = crossed_components(d)
    half = stats.t.ppf(0.975, df) * np.sqrt(var)
    coverage = np.mean(np.abs(mean - truth) <= half)
    band = 3 * math.sqrt(0.95 * 0.05 / SIMULATIONS)
    # never narrower than the seed-level t, so it may over-cover a little, never under
    assert 0.95 - band <= coverage <= 0.99


def test_crossed_test_matches_its_pieces_on_one_study():
    d = studies(np.random.default_rng(3), seeds=4, examples=200, draws=1)[0]
    result = crossed_test(d)
    mean, var, df = (float(v) for v in crossed_components(d))
    assert result.mean == pytest.approx(d.mean()) == pytest.approx(mean)
    assert result.se == pytest.approx(math.sqrt(var))
    assert result.p == pytest.approx(2 * stats.t.sf(abs(mean) / math.sqrt(var), df))
    assert result.covers == "seeds and test examples"


# ---- properties of the pure functions ----

matrices = st.tuples(st.integers(2, 6), st.integers(2, 40), st.integers(0, 2**32 - 1)).map(
    lambda t: np.random.default_rng(t[2]).choice([-1.0, 0.0, 1.0], size=(t[0], t[1]),
                                                 p=[0.2, 0.6, 0.2]))


@settings(max_examples=60, deadline=None)
@given(matrices)
def test_crossed_interval_is_never_narrower_than_the_seed_t_interval(d):
    crossed = crossed_test(d)
    seed = t_interval(d.mean(axis=1))
    if not math.isnan(seed.low):
        # up to float rounding: seeds with one mean give the t-interval a width of a few ulps
        assert crossed.high - crossed.low >= (seed.high - seed.low) * (1 - 1e-9) - 1e-12
    assert crossed.low <= crossed.mean <= crossed.high


@settings(max_examples=60, deadline=None)
@given(matrices, st.integers(0, 2**32 - 1), st.floats(-1, 1))
def test_crossed_test_ignores_the_order_of_seeds_and_examples_and_shifts_with_the_data(d, seed, c):
    rng = np.random.default_rng(seed)
    shuffled = d[rng.permutation(d.shape[0])][:, rng.permutation(d.shape[1])]
    a, b = crossed_test(d), crossed_test(shuffled)
    assert (a.mean, a.se, a.df) == pytest.approx((b.mean, b.se, b.df), nan_ok=True)
    moved = crossed_test(d + c)
    assert moved.mean == pytest.approx(a.mean + c) and moved.se == pytest.approx(a.se, abs=1e-6)


@settings(max_examples=80, deadline=None)
@given(arrays(float, st.integers(1, 8), elements=st.floats(-1, 1)),
       arrays(float, st.integers(1, 8), elements=st.floats(-1, 1)))
def test_probability_of_improvement_is_mann_whitney_u_and_complementary(x, y):
    p = float(improvement_probability(x, y))
    assert 0 <= p <= 1
    assert p + float(improvement_probability(y, x)) == pytest.approx(1)
    assert float(improvement_probability(x, y, higher_is_better=False)) == pytest.approx(1 - p)
    if len(set(x) | set(y)) > 1:
        u = stats.mannwhitneyu(x, y, alternative="greater").statistic
        assert p == pytest.approx(u / (len(x) * len(y)))


def test_probability_of_improvement_interval_brackets_its_estimate_and_is_reproducible():
    x, y = np.array([0.91, 0.93, 0.90, 0.94, 0.92]), np.array([0.90, 0.91, 0.89, 0.92, 0.93])
    first, again = improvement_interval(x, y), improvement_interval(x, y)
    assert first == again and first.low <= first.mean <= first.high
    assert first.mean == pytest.approx(0.68)


@settings(max_examples=80, deadline=None)
@given(arrays(float, st.integers(1, 10), elements=st.floats(-1, 1)))
def test_k_of_n_counts_the_seeds_in_the_direction_of_the_mean(d):
    k, n = k_of_n(d)
    assert n == len(d) and 0 <= k <= n
    if d.mean() > 0:
        assert k == int(np.sum(d > 0)) >= 1


@settings(max_examples=200, deadline=None)
@given(st.floats(-1, 1), st.floats(0, 1), st.floats(0.0001, 1), st.floats(0.0001, 1),
       st.floats(0.0001, 0.5), st.booleans())
def test_the_verdict_rule(diff, width, p_adj, p_seed, bound, lower):
    low, high = diff - width, diff + width
    word = verdict(diff, low, high, p_adj, p_seed, bound, lower)
    if word in ("better", "worse"):
        assert p_adj < ALPHA and p_seed < ALPHA and (low > 0 or high < 0)
        assert (word == "better") == ((diff > 0) != lower)
    elif word == "equivalent":
        assert -bound <= low and high <= bound and p_seed == p_seed
    else:
        assert word == "inconclusive"


def test_the_minimum_detectable_effect_is_detected_80_percent_of_the_time():
    rng = np.random.default_rng(4)
    seeds, sd = 5, 0.02
    mde = minimum_detectable_effect(sd / math.sqrt(seeds), seeds - 1)
    p = stats.ttest_1samp(rng.normal(mde, sd, (SIMULATIONS, seeds)), 0, axis=1).pvalue
    assert np.mean(p < ALPHA) == pytest.approx(0.8, abs=0.05)
    assert math.isnan(minimum_detectable_effect(math.nan, 4))


def test_seed_t_result_is_the_paired_t_test():
    d = np.array([0.01, 0.02, -0.005, 0.015])
    assert seed_t_result(d).p == pytest.approx(stats.ttest_1samp(d, 0).pvalue)


# ---- calibration ----

def test_binned_ece_is_the_runs_ece():
    rng = np.random.default_rng(5)
    confidence = rng.uniform(0.1, 1, 500)
    correct = rng.random(500) < confidence ** 0.8
    table = reliability_table(confidence, correct, equal_width_edges())
    assert float(binned_ece(confidence, correct)) == pytest.approx(expected_calibration_error(table))


def test_a_perfectly_calibrated_model_has_an_ece_floor_that_shrinks_with_the_test_set():
    rng = np.random.default_rng(6)
    confidence = np.clip(rng.beta(8, 1, 4000), 0.1, 1)  # a confident classifier's top-class p
    small, large = ece_floor(confidence[:1000]), ece_floor(confidence)
    assert 0.005 < small.mean < 0.03  # the 0.014-0.017 on 1,000 examples
    assert large.mean < small.mean and small.low <= small.mean <= small.high
    assert ece_floor(confidence[:1000]) == small  # reproducible
    # per bin the correct count's deviation from its expectation is about normal with variance
    # sum c(1 - c), and E|N(0, s^2)| = s sqrt(2/pi): the floor is their sum over the examples
    which = np.clip(np.searchsorted(np.linspace(0, 1, 16), confidence, side="left") - 1, 0, 14)
    spread = np.bincount(which, confidence * (1 - confidence), minlength=15)
    assert large.mean == pytest.approx(np.sqrt(2 / np.pi) * np.sqrt(spread).sum() / 4000, rel=0.1)


def test_ece_bootstrap_narrows_with_more_examples_and_shows_the_small_sample_bias():
    accuracy = np.array([[0.5, 0.8, 0.95]] * 5)
    confidence = np.array([[0.55, 0.8, 0.9]] * 5)
    few = ece_bootstrap(np.full((5, 3), 40), confidence, accuracy)
    many = ece_bootstrap(np.full((5, 3), 4000), confidence, accuracy)
    assert few.mean == pytest.approx(many.mean)
    assert many.low <= many.mean <= many.high
    assert many.high - many.low < few.high - few.low
    # binned ECE is biased upwards on few examples: the resamples sit above the estimate,
    # which is why the report also gives the floor of a perfectly calibrated model
    assert few.high > many.high
