"""The main page's answer to each question: one compact table per question, one row per declared
comparison (a loss against the baseline, in each group of the question's study), read off the
Summary's verdicts (verdicts.declared_verdicts): the difference in percentage points with its
95% CI, k/n seeds, P(improvement) and the verdict. No new statistics.
"""

from __future__ import annotations

import math

import pandas as pd

from lossbench.report.document import Table
from lossbench.report.forest import scale
from lossbench.report.stats import ADJUSTMENTS
from lossbench.report.summary_bullets import VIEW_WORDS
from lossbench.report.tables import fmt, fmt_ci, improvement_text


def verdict_text(r: pd.Series, factor: float, unit: str) -> str:
    if r["verdict"] == "inconclusive" and not math.isnan(r["mde"]):
        return f"inconclusive (MDE {fmt(r['mde'] * factor, '.1f' if unit == 'pp' else '.3g')} {unit})"
    return r["verdict"] or "not tested (one seed)"


def answer_table(key: str, rows: pd.DataFrame) -> Table:
    """The question's verdicts (rows of verdicts.VERDICT_COLUMNS) as one table."""
    factor, unit = scale(rows["metric"].iloc[0])
    spec = "+.1f" if unit == "pp" else "+.4f"
    several = rows["group"].nunique() > 1
    shown = []
    previous = None
    for _, r in rows.iterrows():
        row = {"setting": r["group"] if r["group"] != previous else ""} if several else {}
        previous = r["group"]
        row |= {"loss": f"{r['loss']} − {r['baseline']}",
                f"difference, {unit} (95% CI)": "identical" if r["verdict"] == "identical" else
                fmt_ci(r["difference"] * factor, r["ci_low"] * factor, r["ci_high"] * factor, spec),
                "k/n": r["k_of_n"], "P(improvement) (95% CI)": improvement_text(r),
                "verdict": verdict_text(r, factor, unit)}
        shown.append(row)
    first = rows.iloc[0]
    covers = "; ".join(dict.fromkeys(c for c in rows["ci_covers"] if c))
    caption = (f"Each loss minus the baseline on test {first['metric']} "
               f"{VIEW_WORDS.get(first['view'], first['view'])}, paired by seed "
               f"({int(rows['n_seeds'].max())} seeds). The CI covers {covers or 'the seeds'}. "
               f"Verdicts use p {ADJUSTMENTS[first['adjust']]}-adjusted across every verdict of "
               "the Summary (the p-values are in the appendix's verdicts page).")
    return Table(f"answer-{key}", pd.DataFrame(shown), rows.reset_index(drop=True), caption)
