"""Findings sentences generated from a group's tables: no claim here that the numbers don't make.

Verdicts read the paired table's `verdict` column (stats.verdict: better, worse, equivalent,
inconclusive) and say which correction made them; a loss is called best or worst calibrated (by
Brier score) only when that gap survives the correction (losses whose outputs are not
probabilities, e.g. mse, are not ranked), and divergence counts are compared by Fisher's exact test before they are
said to differ.
"""

from __future__ import annotations

import math

import pandas as pd

from lossbench.losses import LOSSES
from lossbench.training.metrics import METRICS
from lossbench.report.groups import Group
from lossbench.report.paired import COVERS
from lossbench.report.stats import ADJUSTMENTS, ALPHA, WILCOXON_MIN_PAIRS
from lossbench.report.tables import fmt, fmt_ci, fmt_p

FISHER = "Fisher's exact"


def p_text(name: str, p: float) -> str:
    """'McNemar p = 0.0030', 'McNemar p < 0.0001'."""
    text = fmt_p(p)
    return f"{name} p {text[0]} {text[1:]}" if text.startswith("<") else f"{name} p = {text}"


def adjusted_name(paired: pd.DataFrame) -> str:
    return ADJUSTMENTS[paired["adjust"].iloc[0]]


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {words or word + 's'}"


def no_comparison(group: Group) -> str:
    if not group.losses:
        return "No paired comparisons: no completed run here."
    return f"No paired comparisons: only the baseline `{group.baseline}` completed here."


def method_sentence(paired: pd.DataFrame) -> str:
    """Which p each family adjusted: 'the p of the crossed t-test (seeds and test examples)
    for acc, and of the paired t-test over seeds for nll, ece, brier'."""
    by_test: dict[str, list[str]] = {}
    for test, metric in paired[paired["test"] != ""][["test", "metric"]].itertuples(index=False):
        if metric not in by_test.setdefault(test, []):
            by_test[test].append(metric)
    return "the p of " + ", and of ".join(f"{COVERS[test].split('(')[-1].rstrip(')')} "
                                          f"for {', '.join(metrics)}"
                                          for test, metrics in by_test.items())


def primary_verdicts(group: Group, paired: pd.DataFrame, view: str) -> list[str]:
    """Which losses the corrected test finds better or worse than the baseline on the primary
    metric, in one sentence; the numbers are in the table above it."""
    metric, baseline = group.verdict_metric, group.baseline
    rows = paired[(paired["metric"] == metric) & (paired["view"] == view)
                  & ~paired["identical"] & paired["p_adj"].notna()]
    if rows.empty:
        return []
    heard: dict[str, list[str]] = {"better": [], "worse": [], "equivalent": [], "inconclusive": []}
    for _, r in rows.iterrows():
        heard[r["verdict"]].append(f"`{r['loss']}`")
    parts = [f"{word}: {', '.join(losses)}" for word, losses in heard.items() if losses]
    return [f"Test {metric} vs `{baseline}` ({view}; better/worse: {adjusted_name(paired)}-"
            f"adjusted p < {ALPHA:g}, seed-level paired t p < {ALPHA:g} and a 95% CI excluding 0; "
            "equivalent: the CI inside the smallest effect of interest): "
            + "; ".join(parts) + "."]


def seeds_warning(paired: pd.DataFrame) -> list[str]:
    pairs = int(paired["n_seeds"].max())
    if pairs < 2:
        return [f"With {plural(pairs, 'paired seed')} no seed-level test can tell a difference "
                "from noise: run more seeds."]
    if pairs < WILCOXON_MIN_PAIRS:
        return [f"With {pairs} paired seeds the Wilcoxon signed-rank test cannot reach p < 0.05 "
                f"(it needs at least {WILCOXON_MIN_PAIRS} non-zero pairs)."]
    return []


def largest_effect(group: Group, paired: pd.DataFrame, view: str) -> list[str]:
    metric, baseline = group.verdict_metric, group.baseline
    rows = paired[(paired["metric"] == metric) & (paired["view"] == view)
                  & ~paired["identical"] & paired["diff"].notna()]
    if rows.empty:
        return []
    row = rows.loc[rows["diff"].abs().idxmax()]
    dz = "" if math.isnan(row["d_z"]) else f", d_z {fmt(row['d_z'], '+.2f')}"
    adjustment = adjusted_name(paired)
    if math.isnan(row["p_adj"]):
        verdict = "not tested: " + row["note"].split(";")[0]
    else:
        verdict = "significant" if row["verdict"] in ("better", "worse") else "not significant"
        verdict += f" after {adjustment} correction, {p_text('adjusted', row['p_adj'])}"
        if row["verdict"] not in ("better", "worse") and row["p_adj"] < ALPHA:
            verdict += ", but its seed-level t-test is not below 0.05"
    # a direction word only for a verdict; a non-significant estimate is only higher or lower
    estimate = (row["verdict"] if row["verdict"] in ("better", "worse")
                else "higher" if row["diff"] > 0 else "lower")
    return [f"Largest effect on {metric} ({view}): `{row['loss']}` vs `{baseline}`, "
            f"{fmt_ci(row['diff'], row['diff_low'], row['diff_high'], '+.4f')} "
            f"({estimate}{dz}; {verdict})."]


def calibration(final: pd.DataFrame, pairs: pd.DataFrame, view: str, metric: str | None) -> list[str]:
    """Best and worst test `metric` (the task's calibration score, tasks.TaskFacts) of a view
    among the losses whose outputs are probabilities, named only when their gap survives the
    correction over all pairwise comparisons (`pairs`, paired.all_pairs of those losses)."""
    if metric is None:
        return []
    score, name = f"{metric}_mean", METRICS[metric].label or metric
    if pairs.empty or score not in final.columns:
        return []
    table = final[(final["view"] == view) & final[score].notna()
                  & final["loss"].isin(set(pairs["loss"]) | set(pairs["other"]))
                  & final["loss"].map(probabilistic)]
    table = table.sort_values(score, kind="stable")
    if len(table) < 2:
        return []
    best, worst = table.iloc[0], table.iloc[-1]
    match = pairs[pairs["loss"].isin([best["loss"], worst["loss"]])
                  & pairs["other"].isin([best["loss"], worst["loss"]])]
    if match.empty or math.isnan(match["p_adj"].iloc[0]):
        return []
    p_adj, n = match["p_adj"].iloc[0], len(pairs)
    adjustment = ADJUSTMENTS[pairs["adjust"].iloc[0]]
    test = (f"paired t-test over seeds, {p_text(adjustment + '-adjusted', p_adj)} over the "
            f"{plural(n, 'pairwise comparison')}")
    if p_adj >= ALPHA:
        gap = fmt(worst[score] - best[score], "+.4f")
        return [f"No loss is better or worse calibrated than another by test {name} ({view}) "
                f"after {adjustment} correction: the widest gap, `{worst['loss']}` vs "
                f"`{best['loss']}` ({gap}), has {test}."]

    def value(row) -> str:
        return (f"`{row['loss']}` " + fmt_ci(*(row[f"{metric}_{k}"]
                                               for k in ("mean", "ci_low", "ci_high"))))

    return [f"Best calibrated by test {name} ({view}, mean over seeds): {value(best)}; worst: "
            f"{value(worst)}; {test}."]


def probabilistic(loss: str) -> bool:
    """Whether the loss trains its outputs as probabilities (losses.LossSpec.probabilistic)."""
    spec = LOSSES.get(loss.split("(")[0])
    return spec is None or spec.probabilistic


def divergence(table: pd.DataFrame) -> list[str]:
    """'`bce` diverged in 3/5 runs, `ce` in 0/5: Fisher's exact p = 0.1667, Holm-adjusted
    p = 0.3333; not a difference at 0.05.'"""
    if table.empty:
        return []
    adjustment = ADJUSTMENTS[table["adjust"].iloc[0]]
    items = []
    for _, r in table.iterrows():
        differs = r["p_adj"] < ALPHA
        verdict = ("they diverge at different rates" if differs
                   else f"not a difference at {ALPHA:g}")
        items.append(f"`{r['loss']}` diverged in {r['diverged']}/{r['runs']} runs, "
                     f"`{r['baseline']}` in {r['baseline_diverged']}/{r['baseline_runs']}: "
                     f"{p_text(FISHER, r['p_fisher'])}, "
                     f"{p_text(adjustment + '-adjusted', r['p_adj'])}; {verdict}.")
    return items


def left_out(excluded: pd.DataFrame) -> list[str]:
    """'Left out: bce 2 diverged; ce 1 failed.' for the group's runs that did not complete."""
    if excluded.empty:
        return []
    counts = excluded.groupby(["loss", "status"], sort=True).size()
    text = "; ".join(f"`{loss}` {n} {status}" for (loss, status), n in counts.items())
    return [f"Left out of these statistics (did not complete): {text}."]


def findings(group: Group, final: pd.DataFrame, paired: pd.DataFrame,
             calibration_pairs: pd.DataFrame,
             diverged: pd.DataFrame, excluded: pd.DataFrame, primary: str) -> list[str]:
    """The group's verdicts, in the `primary` view; the paired table above them carries every
    comparison with its verdict column, so nothing here restates a row."""
    items = left_out(excluded) + divergence(diverged)
    if paired.empty:
        return items + [no_comparison(group)]
    return (items + seeds_warning(paired) + primary_verdicts(group, paired, primary)
            + largest_effect(group, paired, primary)
            + calibration(final, calibration_pairs, primary, group.kind.calibration))
