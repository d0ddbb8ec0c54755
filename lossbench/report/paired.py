"""Each loss against the group's baseline, paired by seed, per test metric and view.

One row per (loss, metric, view) in the columns of COLUMNS. The seed is the unit of replication:
every seed of a group is scored on the same test examples, so a verdict's test has to cover how
the difference varies between seeds *and* which test examples happened to be drawn.
- For the metrics that are a mean of predictions.parquet's per-example `correct` (CORRECTNESS),
  where both losses stored predictions on every paired seed, the primary test is the crossed
  t-test of stats.crossed_test on d[seed, example] (seeds and test examples as crossed random
  effects), never narrower than the seed-level t.
- Elsewhere the primary test is the seed-level paired t-test: it covers the seeds, conditional
  on this test set (`ci_covers` says which).
Beside each difference: k/n paired seeds in its direction, P(improvement) with its CI (rliable),
the smallest effect of interest (`bound`, the metric's smallest_effect (lossbench.training.metrics.METRICS) or the question's declaration)
and, where inconclusive, the minimum detectable effect. McNemar's test on examples pooled over
seeds and the Wilcoxon test are diagnostics; no verdict reads them.

Losses that are the same function here (every metric equal within IDENTICAL_TOLERANCE on every
paired seed and, where stored, the same per-example correctness: nll and ce, bce and bce_logits
at float32, bce_pos_weight and bce_logits on balanced binary data) are one result, not two: the
later one in the baseline-first loss order is reported once as an identity check against the
first (`identical` true, no p-values) and stays out of the families. A family is one metric in
one view of one group; its primary p-values are adjusted together.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lossbench.training.metrics import LOWER_IS_BETTER, METRICS
from lossbench.report.groups import Group
from lossbench.report.stats import (adjust, crossed_test, improvement_interval, k_of_n,
                                    mcnemar_exact, minimum_detectable_effect, paired_test,
                                    seed_t_result, verdict)
from lossbench.report.tables import per_seed
from lossbench.report.views import predictions_of

COLUMNS = ["loss", "baseline", "metric", "view", "n_seeds", "diff", "diff_low", "diff_high",
           "ci_covers", "test", "p", "p_t", "k_of_n", "p_improvement", "p_improvement_low",
           "p_improvement_high", "bound", "mde", "d_z", "p_wilcoxon", "p_mcnemar", "p_adj",
           "adjust", "identical", "note", "verdict"]
# test metrics that equal the mean over test examples of predictions.parquet's `correct`
CORRECTNESS = {name for name, m in METRICS.items() if m.correctness}
AGREE = 1e-6  # float32 accuracies vs exact means of booleans
# two losses are one function where every test metric agrees this closely on every seed: float32
# reductions of the same numbers in another order differ by a few ulps, not more
IDENTICAL_TOLERANCE = 1e-6
CROSSED = "crossed t"
SEED_T = "seed t"
COVERS = {CROSSED: "seeds and test examples (crossed t)",
          SEED_T: "seeds only, on this test set (paired t over seeds)",
          "examples": "test examples only, one paired seed (t over examples)"}


def seed_table(frame: pd.DataFrame, loss: str, metrics: list[str]) -> pd.DataFrame:
    """seeds x metrics of one loss in one view."""
    runs = frame[frame["loss"] == loss]
    return pd.DataFrame({m: per_seed(runs, f"test_{m}") for m in metrics})


def same_numbers(a: pd.DataFrame, b: pd.DataFrame, a_preds: dict | None = None,
                 b_preds: dict | None = None) -> int:
    """Paired seeds on which every metric of a equals b's within IDENTICAL_TOLERANCE (NaN equal
    to NaN) and, where both stored them, every per-example correctness flag is equal; 0 unless
    that holds on every paired seed."""
    common = a.index.intersection(b.index)
    if not len(common):
        return 0
    if not np.allclose(a.loc[common].to_numpy(float), b.loc[common].to_numpy(float),
                       rtol=IDENTICAL_TOLERANCE, atol=IDENTICAL_TOLERANCE, equal_nan=True):
        return 0
    for seed in common:
        x, y = (a_preds or {}).get(seed), (b_preds or {}).get(seed)
        if x is not None and y is not None and not x.equals(y):
            return 0
    return len(common)


def identity_classes(order: list[str], seeds: dict[str, pd.DataFrame],
                     preds: dict[str, dict] | None = None) -> dict[str, str]:
    """loss -> the first loss in `order` it is the same function as (itself if none)."""
    preds = preds or {}
    first: dict[str, str] = {}
    for loss in order:
        first[loss] = next((rep for rep in dict.fromkeys(first.values())
                            if same_numbers(seeds[loss], seeds[rep], preds.get(loss),
                                            preds.get(rep))), loss)
    return first


def correctness(preds: pd.DataFrame, loss: str) -> dict:
    """seed -> per-example correctness of one loss, indexed by example (a seed's reruns
    averaged)."""
    mine = preds[preds["loss"] == loss]
    return {seed: rows.groupby("example")["correct"].mean().sort_index()
            for seed, rows in mine.groupby("seed")}


def example_matrix(x: dict, base: dict, seeds) -> tuple[np.ndarray | None, str]:
    """d[seed, example] = correct_x - correct_baseline over `seeds` on the test examples every
    one of them holds; (None, why) unless both losses stored predictions for every seed."""
    missing = [s for s in seeds if s not in x or s not in base]
    if missing:
        why = (f"test predictions on {len(seeds) - len(missing)} of {len(seeds)} paired seeds: "
               "the CI covers the seeds only" if x or base else "")
        return None, why
    frame = pd.concat([(x[s] - base[s]).rename(s) for s in seeds], axis=1, join="inner")
    return frame.to_numpy().T, ""


def pooled_mcnemar(x: dict, base: dict, seeds) -> tuple[float, str]:
    """The diagnostic: McNemar's exact p on the examples of every paired seed pooled."""
    pooled = np.concatenate([pd.concat([x[s], base[s]], axis=1, join="inner").to_numpy()
                             for s in seeds])
    if np.isin(pooled, (0.0, 1.0)).all():
        return mcnemar_exact(pooled[:, 0] == 1, pooled[:, 1] == 1), ""
    return math.nan, "several runs of one loss and seed: McNemar needs one prediction per example"


def compare(x: pd.Series, base: pd.Series, metric: str, x_preds: dict, base_preds: dict,
            bound: float) -> dict:
    common = x.index.intersection(base.index).sort_values()
    xs, bs = x[common].to_numpy(float), base[common].to_numpy(float)
    test = paired_test(xs, bs)
    primary, name = seed_t_result(xs - bs), SEED_T
    notes = [test.note]
    if test.identical:  # this metric ties, the losses do not (identity is checked before)
        notes = [f"equal on all {test.n} paired seeds: no seed-level test"]
    p_mcnemar = math.nan
    if metric in CORRECTNESS and test.n:
        d, why = example_matrix(x_preds, base_preds, list(common))
        notes.append(why)
        if d is not None:
            primary = crossed_test(d)
            name = CROSSED if test.n >= 2 else "examples"
            p_mcnemar, why = pooled_mcnemar(x_preds, base_preds, list(common))
            notes.append(why)
            if abs(primary.mean - test.mean_diff) > AGREE:
                notes.append(f"the stored predictions give a difference of {primary.mean:+.6f}, "
                             f"the metrics tables {test.mean_diff:+.6f}: they disagree")
    k, n = k_of_n(xs - bs)
    improvement = improvement_interval(xs, bs, higher_is_better=metric not in LOWER_IS_BETTER)
    return {"n_seeds": test.n, "diff": test.mean_diff, "diff_low": primary.low,
            "diff_high": primary.high, "ci_covers": COVERS[name] if primary.low == primary.low
            else "", "test": name, "p": primary.p, "p_t": test.t_p, "k_of_n": f"{k}/{n}",
            "p_improvement": improvement.mean, "p_improvement_low": improvement.low,
            "p_improvement_high": improvement.high, "bound": bound,
            "mde": minimum_detectable_effect(primary.se, primary.df), "d_z": test.effect_size,
            "p_wilcoxon": test.wilcoxon_p, "p_mcnemar": p_mcnemar,
            "note": "; ".join(n for n in notes if n)}


def identity_rows(loss: str, rep: str, n: int, metrics: list[str]) -> list[dict]:
    note = (f"identical to `{rep}` here (the same function): every metric equal (within "
            f"{IDENTICAL_TOLERANCE:g}) on all {n} paired seeds; an identity check, kept out of "
            "the adjusted families")
    return [{"loss": loss, "baseline": rep, "metric": m, "n_seeds": n, "diff": 0.0,
             "diff_low": 0.0, "diff_high": 0.0, "ci_covers": "", "test": "", "p": math.nan,
             "p_t": math.nan, "k_of_n": f"0/{n}", "p_improvement": 0.5,
             "p_improvement_low": math.nan, "p_improvement_high": math.nan,
             "bound": math.nan, "mde": math.nan, "d_z": math.nan, "p_wilcoxon": math.nan,
             "p_mcnemar": math.nan, "identical": True, "note": note} for m in metrics]


def bounds(group: Group, metrics) -> dict[str, float]:
    """The smallest effect of interest per metric: the question's declaration for its metric,
    else the metric's own (NaN where none is declared: never 'equivalent')."""
    declared = {group.verdict_metric: group.smallest_effect} if group.smallest_effect else {}
    return {m: declared.get(m, METRICS[m].smallest_effect) for m in metrics}


def view_rows(group: Group, view: str, frame: pd.DataFrame, predictions, metrics) -> list[dict]:
    baseline = group.baseline
    order = [baseline] + [loss for loss in group.losses if loss != baseline]
    order = [loss for loss in order if (frame["loss"] == loss).any()]
    if baseline not in order:
        return []
    seeds = {loss: seed_table(frame, loss, metrics) for loss in order}
    preds = predictions_of(group, predictions, view)
    stored = {loss: correctness(preds, loss) for loss in order}
    reps = identity_classes(order, seeds, stored)
    limits = bounds(group, metrics)
    rows = []
    for loss in order[1:]:
        if reps[loss] != loss:
            n = same_numbers(seeds[loss], seeds[reps[loss]])
            rows += [r | {"view": view} for r in identity_rows(loss, reps[loss], n, metrics)]
            continue
        for m in metrics:
            row = compare(seeds[loss][m], seeds[baseline][m], m, stored[loss], stored[baseline],
                          limits[m])
            rows.append({"loss": loss, "baseline": baseline, "metric": m, "view": view,
                         "identical": False, **row})
    return rows


def paired_comparisons(group: Group, frames: dict[str, pd.DataFrame],
                       predictions: pd.DataFrame | None, method: str = "holm") -> pd.DataFrame:
    """Every loss vs the baseline in every view, with p_adj adjusted per (metric, view) family."""
    metrics = [m for m in group.metrics if f"test_{m}" in group.runs.columns]
    rows = []
    for view, frame in frames.items():
        present = [m for m in metrics if f"test_{m}" in frame.columns]
        rows += view_rows(group, view, frame, predictions, present)
    table = pd.DataFrame(rows, columns=COLUMNS)
    if table.empty:
        return table
    for column in ("p", "p_t", "p_wilcoxon", "p_mcnemar", "d_z"):
        table[column] = table[column].astype(float)  # None -> NaN; the note says why
    table["identical"] = table["identical"].astype(bool)
    table["adjust"] = method
    table["p_adj"] = math.nan
    for _, family in table.groupby(["metric", "view"], sort=False):
        members = family[~family["identical"]]
        table.loc[members.index, "p_adj"] = adjust(members["p"].to_numpy(), method)
    table["verdict"] = readjudge(table)
    return table


def readjudge(table: pd.DataFrame) -> list[str]:
    """stats.verdict of every row, from its p_adj (after any re-adjustment) and seed-level p."""
    return ["identical" if r.identical else
            verdict(r.diff, r.diff_low, r.diff_high, r.p_adj, r.p_t, r.bound,
                    r.metric in LOWER_IS_BETTER)
            for r in table.itertuples(index=False)]


def all_pairs(group: Group, frame: pd.DataFrame, metric: str | None, method: str = "holm") -> pd.DataFrame:
    """Every two losses of one view (one per identity class) on one metric: the seed-level paired
    t-test, adjusted over all the pairs. What a claim of "best" or "worst" has to pass."""
    columns = ["loss", "other", "metric", "n_seeds", "diff", "p_t", "p_adj", "adjust"]
    metrics = [m for m in group.metrics if f"test_{m}" in frame.columns]
    if metric not in metrics:
        return pd.DataFrame(columns=columns)
    order = [loss for loss in group.losses if (frame["loss"] == loss).any()]
    seeds = {loss: seed_table(frame, loss, metrics) for loss in order}
    reps = [loss for loss, rep in identity_classes(order, seeds).items() if loss == rep]
    rows = []
    for i, loss in enumerate(reps):
        for other in reps[i + 1:]:
            x, y = seeds[loss][metric], seeds[other][metric]
            common = x.index.intersection(y.index).sort_values()
            test = paired_test(x[common].to_numpy(), y[common].to_numpy())
            rows.append({"loss": loss, "other": other, "metric": metric, "n_seeds": test.n,
                         "diff": test.mean_diff, "p_t": test.t_p})
    table = pd.DataFrame(rows, columns=columns)
    if len(table):
        table["p_t"] = table["p_t"].astype(float)
        table["p_adj"] = adjust(table["p_t"].to_numpy(), method)
        table["adjust"] = method
    return table
