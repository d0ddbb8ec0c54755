"""The report's Summary: at most MAX_BULLETS verdicts, each with its effect, CI, adjusted p and
the condition it holds under, read from the paired tables' columns

    loss, baseline, metric, view, n_seeds, diff, diff_low, diff_high, p_adj, adjust, identical,
    verdict (paired.verdict: the adjusted p below ALPHA and a CI excluding 0)

and from the Stability verdict tables. Selection: each study (a question of the report, Stability
included) gets its largest significant gain over the baseline (the loss to pick), else its largest
significant effect, else its largest effect, said to be not significant; then further significant
effects, the largest first, until MAX_BULLETS; shown in page order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from lossbench.report import findings
from lossbench.report.findings import plural
from lossbench.report.stats import ALPHA
from lossbench.report.tables import fmt

MAX_BULLETS = 7
SHORT = {"holm": "Holm", "fdr_bh": "BH"}  # stats.ADJUSTMENTS, as a bullet names them


@dataclass
class Candidate:
    study: int  # its study
    order: int  # page order of its group
    size: float  # |effect|, to rank
    significant: bool
    text: str
    gain: bool = False  # significantly better than the baseline


def preferred_view(frame: pd.DataFrame) -> pd.DataFrame:
    """The validation-selected epoch where the table has it, else the last."""
    return frame[frame["view"] == "selected"] if (frame["view"] == "selected").any() else frame


def signed(value: float) -> str:
    return fmt(value, "+.4f")  # fmt never prints a signed zero


def p_text(p: float, adjust: str) -> str:
    if p is None or math.isnan(p):
        return "not tested"
    return f"{findings.p_text('', p).lstrip()} ({SHORT[adjust]})"


def paired_candidates(study: int, order: int, title: str, condition: str, paired: pd.DataFrame,
                      metric: str) -> list[Candidate]:
    frame = preferred_view(paired)
    frame = frame[(frame["metric"] == metric) & ~frame["identical"].astype(bool)
                  & frame["diff"].notna()]
    out = []
    for _, row in frame.iterrows():
        significant = row["verdict"] in ("better", "worse")
        verdict = row["verdict"] if significant else "no difference shown"
        ci = f"[{signed(row['diff_low'])}, {signed(row['diff_high'])}]" \
            if not math.isnan(row["diff_low"]) else "(no CI: one seed)"
        view = "at the validation-selected epoch" if row["view"] == "selected" else "at the last epoch"
        text = (f"**{title}** ({condition}): `{row['loss']}` vs `{row['baseline']}`: {verdict}, "
                f"{metric} {signed(row['diff'])} {ci}, {p_text(row['p_adj'], row['adjust'])}, "
                f"{plural(int(row['n_seeds']), 'seed')}, {view}.")
        out.append(Candidate(study, order, abs(row["diff"]), significant, text,
                             gain=verdict == "better"))
    return out


def stability_candidates(study: int, order: int, title: str, verdicts: pd.DataFrame) -> list[Candidate]:
    """Divergence verdicts: the difference in the share of diverged runs, its Newcombe CI and
    the Holm-corrected Fisher p."""
    out = []
    for _, row in verdicts.iterrows():
        if math.isnan(row["fisher_p_adj"]):
            continue
        significant = bool(row["fisher_p_adj"] < ALPHA)
        verdict = row["verdict"] if significant else "no difference in divergence shown"
        out.append(Candidate(study, order, abs(row["div_diff"]), significant, (
            f"**{title}** ({row['setting']}): `{row['loss']}` vs `{row['reference']}`: {verdict}, "
            f"diverged {row['diverged']}/{row['n']} vs {row['ref_diverged']}/{row['ref_n']}, "
            f"share {signed(row['div_diff'])} [{signed(row['div_low'])}, {signed(row['div_high'])}], "
            f"Fisher {p_text(row['fisher_p_adj'], row['adjust'])}.")))
    return out


def lead(candidates: list[Candidate]) -> Candidate:
    """A study's bullet: its largest significant gain, else its largest significant effect, else
    its largest."""
    return min(candidates, key=lambda c: (not c.significant, not c.gain, -c.size))


def select(candidates: list[Candidate]) -> list[str]:
    """One per study (its lead), then the largest significant ones left, up to MAX_BULLETS; in
    page order."""
    chosen = [lead([c for c in candidates if c.study == study])
              for study in sorted({c.study for c in candidates})]
    chosen.sort(key=lambda c: not c.significant)  # over the cap, null results are dropped first
    rest = sorted((c for c in candidates if c.significant and c not in chosen),
                  key=lambda c: -c.size)
    chosen = (chosen + rest)[:MAX_BULLETS]
    place = {id(c): i for i, c in enumerate(candidates)}
    return [c.text for c in sorted(chosen, key=lambda c: (c.study, c.order, place[id(c)]))]
