"""Findings sentences generated from a group's tables: no claim here that the numbers don't make."""

from __future__ import annotations

import math

import pandas as pd

from lossbench.report.groups import LOWER_IS_BETTER, Group
from lossbench.report.stats import ALPHA, WILCOXON_MIN_PAIRS
from lossbench.report.tables import fmt, fmt_ci, fmt_p


def direction(metric: str, diff: float) -> str:
    if diff == 0:
        return "equal"
    better = (diff < 0) if metric in LOWER_IS_BETTER else (diff > 0)
    return "better" if better else "worse"


def describe(row) -> str:
    """'acc -0.0123 [-0.0200, -0.0046] (worse), t-test p=0.0030, Wilcoxon p=0.1250'"""
    text = (f"{row['metric']} {fmt_ci(row['mean_diff'], row['ci_low'], row['ci_high'], '+.4f')} "
            f"({direction(row['metric'], row['mean_diff'])}), t-test p={fmt_p(row['ttest_p'])}")
    if not math.isnan(row["wilcoxon_p"]):
        text += f", Wilcoxon p={fmt_p(row['wilcoxon_p'])}"
    return text


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {words or word + 's'}"


def no_comparison(group: Group) -> str:
    if not group.losses:
        return "No paired comparisons: no completed run here."
    return f"No paired comparisons: only the baseline `{group.baseline}` completed here."


def comparisons(group: Group, paired: pd.DataFrame) -> list[str]:
    baseline = group.baseline
    if paired.empty:
        return [no_comparison(group)]
    items = []
    for loss, rows in paired.groupby("loss", sort=False):
        if rows["identical"].all():
            items.append(f"`{loss}` is identical to `{baseline}` on every paired seed "
                         f"(all differences exactly 0 on {', '.join(rows['metric'])}).")
            continue
        significant = rows[rows["significant"]]
        testable = rows["ttest_p"].notna()
        noise = rows[testable & ~rows["significant"]]
        untestable = rows[~testable & ~rows["identical"]]
        parts = []
        if len(significant):
            parts.append("Significant at 0.05 (paired t-test): "
                         + "; ".join(describe(r) for _, r in significant.iterrows()))
        if len(noise):
            parts.append("Within noise (t-test p >= 0.05): "
                         + "; ".join(describe(r) for _, r in noise.iterrows()))
        if len(untestable):
            parts.append("Not tested on " + ", ".join(untestable["metric"]) + ": "
                         + untestable["note"].iloc[0].split(";")[0])
        identical = rows[rows["identical"]]
        if len(identical):
            parts.append("Identical on " + ", ".join(identical["metric"]))
        items.append(f"**{loss} vs {baseline}**: " + ". ".join(parts) + ".")
    pairs = int(paired["n_pairs"].max())
    if pairs < 2:
        items.append(f"With {plural(pairs, 'paired seed')} neither test can tell a difference "
                     "from noise: run more seeds.")
    elif pairs < WILCOXON_MIN_PAIRS:
        items.append(f"With {pairs} paired seeds the Wilcoxon signed-rank test cannot reach p<0.05 "
                     f"(it needs at least {WILCOXON_MIN_PAIRS} non-zero pairs); significance here "
                     "rests on the t-test alone.")
    return items


def largest_effect(group: Group, paired: pd.DataFrame) -> list[str]:
    metric, baseline = group.kind.metric, group.baseline
    rows = paired[(paired["metric"] == metric) & ~paired["identical"]] if len(paired) else paired
    rows = rows[rows["mean_diff"].notna()] if len(rows) else rows
    if rows.empty:
        return []
    row = rows.loc[rows["mean_diff"].abs().idxmax()]
    dz = "" if math.isnan(row["effect_size_dz"]) else f", d_z={fmt(row['effect_size_dz'], '+.2f')}"
    if math.isnan(row["ttest_p"]):
        verdict = "not tested: " + row["note"].split(";")[0]
    else:
        verdict = ("significant" if row["significant"] else "not significant")
        verdict += f", t-test p={fmt_p(row['ttest_p'])}"
    return [f"Largest effect on {metric}: `{row['loss']}` vs `{baseline}`, "
            f"{fmt_ci(row['mean_diff'], row['ci_low'], row['ci_high'], '+.4f')} "
            f"({direction(metric, row['mean_diff'])}{dz}; {verdict})."]


def calibration(final: pd.DataFrame, ece: pd.DataFrame) -> list[str]:
    """Best (lowest) ECE: the test_ece mean over seeds if runs report it, else the pooled ECE."""
    if "ece_mean" in final.columns and final["ece_mean"].notna().any():
        table = final[final["ece_mean"].notna()].sort_values("ece_mean", kind="stable")
        best, worst = table.iloc[0], table.iloc[-1]
        text = (f"Best calibrated by test ECE (mean over seeds): `{best['loss']}` "
                f"{fmt_ci(best['ece_mean'], best['ece_ci_low'], best['ece_ci_high'])}")
        if len(table) > 1:
            text += (f"; worst: `{worst['loss']}` "
                     f"{fmt_ci(worst['ece_mean'], worst['ece_ci_low'], worst['ece_ci_high'])}")
        return [text + "."]
    if not ece.empty and ece["pooled_ece"].notna().any():
        table = ece[ece["pooled_ece"].notna()].sort_values("pooled_ece", kind="stable")
        best, worst = table.iloc[0], table.iloc[-1]
        text = (f"Best calibrated by ECE of the reliability bins pooled over seeds: "
                f"`{best['loss']}` {fmt(best['pooled_ece'])}")
        if len(table) > 1:
            text += f"; worst: `{worst['loss']}` {fmt(worst['pooled_ece'])}"
        return [text + "."]
    return []


def left_out(excluded: pd.DataFrame) -> list[str]:
    """'Left out: bce 2 diverged; ce 1 failed.' for the group's runs that did not complete."""
    if excluded.empty:
        return []
    counts = excluded.groupby(["loss", "status"], sort=True).size()
    text = "; ".join(f"`{loss}` {n} {status}" for (loss, status), n in counts.items())
    return [f"Left out of these statistics (did not complete): {text}."]


def findings(group: Group, final: pd.DataFrame, paired: pd.DataFrame, ece: pd.DataFrame,
             excluded: pd.DataFrame) -> list[str]:
    n = int(final["n_seeds"].max()) if len(final) else 0
    baseline = f"baseline `{group.baseline}`"
    if group.baseline != group.kind.baseline:
        baseline += f" (`{group.kind.baseline}` has no completed run here)"
    header = (f"{plural(len(group.losses), 'loss', 'losses')}, up to "
              f"{plural(n, 'seed')} each; {baseline}; tests at alpha={ALPHA}, no correction for "
              "multiple comparisons.")
    return ([header] + left_out(excluded) + comparisons(group, paired)
            + largest_effect(group, paired) + calibration(final, ece))
