"""The Stability verdict table: in each stress setting, every loss against the baseline.

Input: a stress group's summary rows (every status) with a `setting` column (stability.py builds
it from the stress columns that vary and any other setting column that varies, with_settings). Only runs that ended by themselves count: completed or
diverged (status, and the summary fields `first_nonfinite_step`, `first_nonfinite`); failed,
interrupted and unfinished runs have no training outcome and are listed under Excluded runs.

One row per (setting, loss, reference): each loss against the task's baseline, plus the pairs the
stress preset declares (question.pairs: bce against bce_logits, the pair question 2 is about)
where neither is the baseline. `compare` computes a
row's raw tests, `verdict_table` corrects them (Holm within the table) and applies `verdict`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import confint_proportions_2indep

from lossbench.report.groups import direction, loss_sort_key
from lossbench.report.stats import ALPHA, adjust, divergence_test, paired_test
from lossbench.report.tables import fmt, fmt_ci, fmt_p, per_seed

ENDED = ("completed", "diverged")


def rule(metric: str) -> str:
    """The verdict rule, as the table's caption."""
    return (f"Each loss against a reference loss in one stress setting, over the runs that ended "
            f"by themselves (completed or diverged). Diverged: seeds whose run stopped on a "
            f"non-finite loss or gradient, k/n per loss; Fisher's exact test (two-sided) compares the two "
            f"shares (difference of the shares with its Newcombe 95% CI in the CSV). {metric}: mean ± sd over the completed runs; difference: loss minus "
            f"reference over the seeds both completed, with its 95% t-CI and paired t-test. Both "
            f"kinds of p are Holm-corrected within this table (statsmodels multipletests), each "
            f"kind as one family; a Fisher test where no run of either loss diverged cannot reject "
            f"(p = 1 for any outcome) and is not counted (Tarone 1990). Verdict: "
            f"'diverges more/less' when the corrected Fisher p < {ALPHA:g}; else "
            f"'higher/lower {metric}' when the corrected paired p < {ALPHA:g}; 'identical' when "
            f"every paired difference is exactly 0; 'both diverged' when neither completed a run; "
            f"otherwise 'no difference shown'.")


def ended_runs(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per ended run: loss, seed, setting, diverged, the final metric of completed runs."""
    ended = runs[runs["status"].isin(ENDED)]
    column = f"test_{metric}"
    values = (pd.to_numeric(ended[column], errors="coerce") if column in ended
              else pd.Series(np.nan, index=ended.index))
    diverged = ended["status"] == "diverged"
    return pd.DataFrame({
        "loss": ended["loss"].astype("str"), "seed": ended["seed"], "setting": ended["setting"],
        "setting_key": ended["setting_key"] if "setting_key" in ended else ended["setting"],
        "diverged": diverged, "value": values.where(~diverged),
    }).reset_index(drop=True)


def compare(rows: pd.DataFrame, reference: pd.DataFrame) -> dict:
    """The raw numbers of one row: `rows` and `reference` are one loss's and the reference loss's
    ended runs in one setting (ended_runs rows). Divergence is counted per seed (a seed rerun in
    two sweeps is one observation, diverged if any of its runs did)."""
    seeds, ref_seeds = rows.groupby("seed")["diverged"].any(), reference.groupby("seed")["diverged"].any()
    k, n = int(seeds.sum()), len(seeds)
    k_ref, n_ref = int(ref_seeds.sum()), len(ref_seeds)
    fisher = divergence_test(k, n, k_ref, n_ref) if k + k_ref else math.nan
    share_low, share_high = confint_proportions_2indep(k, n, k_ref, n_ref, method="newcomb",
                                                       compare="diff")
    mine, theirs = (per_seed(part[part["value"].notna()], "value") for part in (rows, reference))
    common = mine.index.intersection(theirs.index)
    paired = paired_test(mine[common].to_numpy(), theirs[common].to_numpy())
    return {
        "diverged": k, "n": n, "ref_diverged": k_ref, "ref_n": n_ref,
        "div_diff": k / n - k_ref / n_ref, "div_low": float(share_low),
        "div_high": float(share_high), "fisher_p": fisher,
        "mean": mine.mean() if len(mine) else math.nan,
        "sd": mine.std(ddof=1) if len(mine) > 1 else math.nan,
        "ref_mean": theirs.mean() if len(theirs) else math.nan,
        "ref_sd": theirs.std(ddof=1) if len(theirs) > 1 else math.nan,
        "n_pairs": paired.n, "diff": paired.mean_diff, "diff_low": paired.low,
        "diff_high": paired.high, "p_t": math.nan if paired.t_p is None else paired.t_p,
        "identical": paired.identical,
    }


def verdict(row, metric: str) -> str:
    """The rule of the caption, on one row holding compare()'s numbers and the corrected p."""
    if row["fisher_p_adj"] < ALPHA:
        more = row["diverged"] / row["n"] > row["ref_diverged"] / row["ref_n"]
        return "diverges more" if more else "diverges less"
    if row["diverged"] == row["n"] and row["ref_diverged"] == row["ref_n"]:
        return "both diverged"
    if row["p_adj"] < ALPHA:
        return (f"{'higher' if row['diff'] > 0 else 'lower'} {metric} "
                f"({direction(metric, row['diff'])})")
    if row["identical"]:
        return "identical"
    return "no difference shown"


def references(losses: list[str], baseline: str, declared: dict[str, str]) -> list[tuple[str, str]]:
    """(loss, reference) pairs: every loss against the baseline, and each declared pair whose
    losses both ran and neither is the baseline."""
    pairs = [(loss, baseline) for loss in losses if loss != baseline]
    pairs += [(loss, other) for loss, other in declared.items()
              if {loss, other} <= set(losses) and baseline not in (loss, other)]
    return pairs


def verdict_table(runs: pd.DataFrame, baseline: str, metric: str,
                  pairs: dict[str, str] | None = None) -> pd.DataFrame:
    """The table: one row per (setting, loss, reference), corrected p and verdict."""
    ended = ended_runs(runs, metric)
    losses = sorted(ended["loss"].unique(), key=loss_sort_key)
    settings = list(ended.sort_values("setting_key", kind="stable")["setting"].drop_duplicates())
    rows = []
    for setting in settings:
        here = ended[ended["setting"] == setting]
        for loss, reference in references(losses, baseline, pairs or {}):
            mine, theirs = here[here["loss"] == loss], here[here["loss"] == reference]
            if len(mine) and len(theirs):
                rows.append({"setting": setting, "loss": loss, "reference": reference,
                             **compare(mine, theirs)})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["fisher_p_adj"] = adjust(table["fisher_p"], "holm")
    table["p_adj"] = adjust(table["p_t"], "holm")
    table["adjust"] = "holm"
    table["verdict"] = [verdict(row, metric) for _, row in table.iterrows()]
    return table


def spread(mean: float, sd: float) -> str:
    if math.isnan(mean):
        return "—"
    return fmt(mean, ".3f") + ("" if math.isnan(sd) else f" ± {fmt(sd, '.3f')}")


def difference(row) -> str:
    if math.isnan(row["diff"]):
        return "—"
    if row["identical"]:
        return "0 (identical)"
    if math.isnan(row["diff_low"]):
        return fmt(row["diff"], "+.4f")
    return fmt_ci(row["diff"], row["diff_low"], row["diff_high"], "+.4f")


def show_verdicts(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    return pd.DataFrame([{
        "setting": r["setting"], "loss vs reference": f"{r['loss']} vs {r['reference']}",
        "diverged": f"{r['diverged']}/{r['n']} vs {r['ref_diverged']}/{r['ref_n']}",
        "Fisher p (Holm)": f"{fmt_p(r['fisher_p'])} ({fmt_p(r['fisher_p_adj'])})",
        f"{metric} mean ± sd": f"{spread(r['mean'], r['sd'])} vs {spread(r['ref_mean'], r['ref_sd'])}",
        "difference (95% CI)": difference(r),
        "paired p (Holm)": f"{fmt_p(r['p_t'])} ({fmt_p(r['p_adj'])})",
        "verdict": r["verdict"],
    } for _, r in table.iterrows()])
