"""Each loss against the group's baseline, paired by seed, per test metric and view.

One row per (loss, metric, view) in the columns of COLUMNS. Per row: the seed-level paired t-test
and Wilcoxon test, d_z, and a CI of the mean difference. For the metrics that are a mean of
predictions.parquet's per-example `correct` (CORRECTNESS), where both losses stored predictions,
the CI is a hierarchical bootstrap over seeds and test examples and McNemar's exact test runs on
the pooled examples; elsewhere the CI is the seed t-interval. `ci_covers` says which.

Losses that are bitwise identical on every paired seed (every metric equal: nll and ce, bce and
bce_logits at float32) are one result, not two: the later one in the baseline-first loss order is
reported once as an identity check against the first (`identical` true, no p-values) and stays out
of the families. A family is one metric in one view of one group; its primary p-values (McNemar's
where every tested row has one, else the t-test's: primary_test) are adjusted together.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lossbench.report.groups import Group, direction
from lossbench.report.stats import (ALPHA, BOOTSTRAP_RESAMPLES, adjust, hierarchical_bootstrap,
                                    mcnemar_exact, paired_test)
from lossbench.report.tables import per_seed
from lossbench.report.views import predictions_of

COLUMNS = ["loss", "baseline", "metric", "view", "n_seeds", "diff", "diff_low", "diff_high",
           "ci_covers", "d_z", "p_t", "p_wilcoxon", "p_mcnemar", "p_adj", "adjust", "identical",
           "note", "verdict"]
# test metrics that equal the mean over test examples of predictions.parquet's `correct`
CORRECTNESS = {"acc", "subset_acc"}
AGREE = 1e-6  # float32 accuracies vs exact means of booleans
SEEDS_ONLY = "initialisation seeds only"  # a Student-t interval over paired seeds
BOOTSTRAPPED = (f"seeds and test examples (hierarchical bootstrap, {BOOTSTRAP_RESAMPLES:,} "
                "resamples)")
EXAMPLES_ONLY = (f"test examples only, one paired seed (bootstrap, {BOOTSTRAP_RESAMPLES:,} "
                 "resamples)")


def seed_table(frame: pd.DataFrame, loss: str, metrics: list[str]) -> pd.DataFrame:
    """seeds x metrics of one loss in one view."""
    runs = frame[frame["loss"] == loss]
    return pd.DataFrame({m: per_seed(runs, f"test_{m}") for m in metrics})


def same_numbers(a: pd.DataFrame, b: pd.DataFrame) -> int:
    """Paired seeds on which every metric of a equals b's exactly (NaN equal to NaN); 0 unless
    that holds on every paired seed."""
    common = a.index.intersection(b.index)
    if not len(common):
        return 0
    equal = np.array_equal(a.loc[common].to_numpy(), b.loc[common].to_numpy(), equal_nan=True)
    return len(common) if equal else 0


def identity_classes(order: list[str], seeds: dict[str, pd.DataFrame]) -> dict[str, str]:
    """loss -> the first loss in `order` it is bitwise identical to (itself if none)."""
    first: dict[str, str] = {}
    for loss in order:
        first[loss] = next((rep for rep in dict.fromkeys(first.values())
                            if same_numbers(seeds[loss], seeds[rep])), loss)
    return first


def correctness(preds: pd.DataFrame, loss: str) -> dict:
    """seed -> per-example correctness of one loss, indexed by example (a seed's reruns
    averaged)."""
    mine = preds[preds["loss"] == loss]
    return {seed: rows.groupby("example")["correct"].mean().sort_index()
            for seed, rows in mine.groupby("seed")}


def example_tests(x: dict, base: dict, seeds) -> tuple[object, float, str]:
    """Bootstrap CI and McNemar p of x - baseline on the paired seeds both stored predictions
    for; (None, nan, why) when none."""
    paired = [s for s in seeds if s in x and s in base]
    if not paired:
        why = "no test predictions stored by both losses" if x or base else ""
        return None, math.nan, why
    aligned = [pd.concat([x[s], base[s]], axis=1, join="inner").to_numpy() for s in paired]
    ci = hierarchical_bootstrap([a[:, 0] - a[:, 1] for a in aligned])
    pooled = np.concatenate(aligned)
    notes = []
    if len(paired) < len(seeds):
        notes.append(f"test predictions on {len(paired)} of {len(seeds)} paired seeds")
    if np.isin(pooled, (0.0, 1.0)).all():
        p = mcnemar_exact(pooled[:, 0] == 1, pooled[:, 1] == 1)
    else:
        p = math.nan
        notes.append("several runs of one loss and seed: McNemar needs one prediction per example")
    return ci, p, "; ".join(notes)


def compare(x: pd.Series, base: pd.Series, metric: str, x_preds: dict, base_preds: dict) -> dict:
    common = x.index.intersection(base.index).sort_values()
    test = paired_test(x[common].to_numpy(), base[common].to_numpy())
    row = {"n_seeds": test.n, "diff": test.mean_diff, "diff_low": test.low,
           "diff_high": test.high, "ci_covers": SEEDS_ONLY if test.n >= 2 else "",
           "d_z": test.effect_size, "p_t": test.t_p, "p_wilcoxon": test.wilcoxon_p,
           "p_mcnemar": math.nan}
    notes = [test.note]
    if test.identical:  # this metric ties, the losses do not (identity is checked before)
        notes = [f"equal on all {test.n} paired seeds: no seed-level test"]
    if metric in CORRECTNESS and test.n:
        ci, p, note = example_tests(x_preds, base_preds, list(common))
        if ci is not None:
            row |= {"diff_low": ci.low, "diff_high": ci.high, "p_mcnemar": p,
                    "ci_covers": BOOTSTRAPPED if ci.n >= 2 else EXAMPLES_ONLY}
            if ci.n == test.n and abs(ci.mean - test.mean_diff) > AGREE:
                notes.append(f"the stored predictions give a difference of {ci.mean:+.6f}, "
                             f"the metrics tables {test.mean_diff:+.6f}: they disagree")
        notes.append(note)
    row["note"] = "; ".join(n for n in notes if n)
    return row


def identity_rows(loss: str, rep: str, n: int, metrics: list[str]) -> list[dict]:
    note = (f"bitwise identical to `{rep}` on all {n} paired seeds (every metric): an identity "
            "check, kept out of the adjusted families")
    return [{"loss": loss, "baseline": rep, "metric": m, "n_seeds": n, "diff": 0.0,
             "diff_low": 0.0, "diff_high": 0.0, "ci_covers": "", "d_z": math.nan,
             "p_t": math.nan, "p_wilcoxon": math.nan, "p_mcnemar": math.nan,
             "identical": True, "note": note} for m in metrics]


def view_rows(group: Group, view: str, frame: pd.DataFrame, predictions, metrics) -> list[dict]:
    baseline = group.baseline
    order = [baseline] + [loss for loss in group.losses if loss != baseline]
    order = [loss for loss in order if (frame["loss"] == loss).any()]
    if baseline not in order:
        return []
    seeds = {loss: seed_table(frame, loss, metrics) for loss in order}
    reps = identity_classes(order, seeds)
    preds = predictions_of(group, predictions, view)
    base_preds = correctness(preds, baseline)
    rows = []
    for loss in order[1:]:
        if reps[loss] != loss:
            n = same_numbers(seeds[loss], seeds[reps[loss]])
            rows += [r | {"view": view} for r in identity_rows(loss, reps[loss], n, metrics)]
            continue
        x_preds = correctness(preds, loss)
        for m in metrics:
            row = compare(seeds[loss][m], seeds[baseline][m], m, x_preds, base_preds)
            rows.append({"loss": loss, "baseline": baseline, "metric": m, "view": view,
                         "identical": False, **row})
    return rows


def primary_test(family: pd.DataFrame) -> str:
    """The test whose p a family adjusts: McNemar's where every tested row has one (per-example
    evidence), else the seed-level t-test."""
    rows = family[~family["identical"]]
    tested = rows[rows["p_t"].notna() | rows["p_mcnemar"].notna()]
    if len(tested) and tested["p_mcnemar"].notna().all():
        return "mcnemar"
    return "t"


def verdict(metric: str, diff: float, low: float, high: float, p_adj: float) -> str:
    """'better' / 'worse' than the baseline where the adjusted p is below ALPHA and the 95% CI
    of the difference excludes 0 (where there is one); 'n.s.' where either fails; '' where
    nothing was tested. Both, because McNemar's p on test examples pooled over seeds ignores
    how much the difference varies between seeds, which the hierarchical CI covers: with a few
    unstable seeds the first can be tiny while the second spans 0."""
    if p_adj is None or math.isnan(p_adj):
        return ""
    spans_zero = not (math.isnan(low) or math.isnan(high)) and low <= 0 <= high
    return direction(metric, diff) if p_adj < ALPHA and not spans_zero else "n.s."


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
    for column in ("p_t", "p_wilcoxon", "p_mcnemar", "d_z"):
        table[column] = table[column].astype(float)  # None -> NaN; the note says why
    table["identical"] = table["identical"].astype(bool)
    table["adjust"] = method
    table["p_adj"] = math.nan
    for _, family in table.groupby(["metric", "view"], sort=False):
        column = "p_mcnemar" if primary_test(family) == "mcnemar" else "p_t"
        members = family[~family["identical"]]
        table.loc[members.index, "p_adj"] = adjust(members[column].to_numpy(), method)
    table["verdict"] = [
        "identical" if r.identical else verdict(r.metric, r.diff, r.diff_low, r.diff_high, r.p_adj)
        for r in table.itertuples(index=False)]
    return table


def all_pairs(group: Group, frame: pd.DataFrame, metric: str, method: str = "holm") -> pd.DataFrame:
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
