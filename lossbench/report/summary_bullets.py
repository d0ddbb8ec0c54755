"""The report's Summary: per question one bullet stating the verdict of every comparison it
declared (verdicts.declared_verdicts: already adjusted across every verdict the Summary states),
then the stress verdicts. The better and worse ones are spelled out with their numbers; the
equivalent, inconclusive and identical ones are named, the inconclusive with the minimum
detectable effect of their design. Nothing is selected: every declared verdict is stated, in
page order.
"""

from __future__ import annotations

import math

import pandas as pd

from lossbench.report import findings
from lossbench.report.findings import plural
from lossbench.report.stats import ALPHA
from lossbench.report.tables import fmt

SHORT = {"holm": "Holm", "fdr_bh": "BH"}  # stats.ADJUSTMENTS, as a bullet names them
VIEW_WORDS = {"selected": "at the validation-selected epoch", "last": "at the last epoch"}


def signed(value: float) -> str:
    return fmt(value, "+.4f")  # fmt never prints a signed zero


def p_text(p: float, adjust: str) -> str:
    if p is None or math.isnan(p):
        return "not tested"
    return f"{findings.p_text('', p).lstrip()} ({SHORT[adjust]})"


def effect_text(row: pd.Series, metric: bool = False) -> str:
    """'`sce` (noise 0.6): +0.0900 [+0.0500, +0.1300], 5/5 seeds, P(improvement) 1.00
    [1.00, 1.00], p = 0.0017 (Holm)'; `metric` names the metric before the difference, for a
    question whose groups are judged on different metrics."""
    ci = (f"[{signed(row['ci_low'])}, {signed(row['ci_high'])}]"
          if not math.isnan(row["ci_low"]) else "(no CI)")
    where = f" ({row['group']})" if row["group"] else ""
    on = f"{row['metric']} " if metric else ""
    return (f"`{row['loss']}`{where}: {on}{signed(row['difference'])} {ci}, {row['k_of_n']} seeds, "
            f"P(improvement) {fmt(row['p_improvement'], '.2f')} "
            f"[{fmt(row['p_improvement_low'], '.2f')}, {fmt(row['p_improvement_high'], '.2f')}], "
            f"{p_text(row['p_adj'], row['adjust'])}")


def named(rows: pd.DataFrame) -> str:
    return ", ".join(f"`{r['loss']}`" + (f" ({r['group']})" if r["group"] else "")
                     for _, r in rows.iterrows())


def question_bullet(question: str, condition: str, rows: pd.DataFrame) -> str:
    """Every declared verdict of one question, in one bullet."""
    first = rows.iloc[0]
    baselines = ", ".join(f"`{b}`" for b in dict.fromkeys(rows["baseline"]))
    how = "declared" if rows["declared"].all() else "no declared question: every loss"
    metrics = list(dict.fromkeys(rows["metric"]))  # a question over single- and multi-label groups has two
    head = (f"**{question}** ({condition}; {how} vs {baselines} on {' or '.join(metrics)} "
            f"{VIEW_WORDS.get(first['view'], first['view'])}, "
            f"{plural(len(rows), 'comparison')}, {plural(int(rows['n_seeds'].max()), 'seed')}): ")
    parts = []
    for word in ("better", "worse"):
        hits = rows[rows["verdict"] == word]
        if len(hits):
            parts.append(f"{word}: " + "; ".join(effect_text(r, len(metrics) > 1) for _, r in hits.iterrows()))
    equivalent = rows[rows["verdict"] == "equivalent"]
    if len(equivalent):
        bound = fmt(equivalent["bound"].iloc[0], ".3g")
        parts.append(f"equivalent (95% CI within ±{bound}): {named(equivalent)}")
    open_ = rows[rows["verdict"] == "inconclusive"]
    if len(open_):
        mde = open_["mde"].dropna()
        span = (fmt(mde.min(), ".3f") if fmt(mde.min(), ".3f") == fmt(mde.max(), ".3f")
                else f"{fmt(mde.min(), '.3f')}–{fmt(mde.max(), '.3f')}")
        reach = f"; the design detects differences of {span} (80% power)" if len(mde) else ""
        parts.append(f"inconclusive: {named(open_)}{reach}")
    same = rows[rows["verdict"] == "identical"]
    if len(same):
        parts.append(f"the same function as the baseline here: {named(same)}")
    untested = rows[rows["verdict"] == ""]
    if len(untested):
        parts.append(f"not tested (one seed): {named(untested)}")
    return head + "; ".join(parts) + "."


def question_bullets(verdicts: pd.DataFrame, conditions: dict[str, str]) -> list[str]:
    return [question_bullet(q, conditions.get(q, ""), rows)
            for q, rows in verdicts.groupby("question", sort=False)]


def stability_bullets(title: str, verdicts: pd.DataFrame) -> list[str]:
    """Divergence verdicts of one stress group, Fisher p adjusted with the Summary's family
    (`summary_p_adj`): the settings where a loss diverges at another rate than its reference."""
    rows = verdicts[verdicts["summary_p_adj"].notna()]
    if rows.empty:
        return []
    differ = rows[rows["summary_p_adj"] < ALPHA]
    items = [f"`{r['loss']}` vs `{r['reference']}` ({r['setting']}): diverged "
             f"{r['diverged']}/{r['n']} vs {r['ref_diverged']}/{r['ref_n']}, share "
             f"{signed(r['div_diff'])} [{signed(r['div_low'])}, {signed(r['div_high'])}], "
             f"Fisher {p_text(r['summary_p_adj'], r['adjust'])}" for _, r in differ.iterrows()]
    text = "; ".join(items) if items else "no loss diverges at a different rate"
    return [f"**Stability, {title}** ({plural(len(rows), 'divergence comparison')}): {text}."]
