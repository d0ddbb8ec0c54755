"""The declared verdicts: per question, each declared comparison (question.comparisons vs
question.baseline on question.metric in question.view) in every group of its study, adjusted
together across every verdict the Summary states. Nothing here chooses among results.

`declared_verdicts` gives the table behind the Summary and tables/verdicts.csv (VERDICT_COLUMNS);
`verdict_seeds` the per-seed values each verdict was computed from (SEED_COLUMNS), so anyone can
re-test it. Runs without a declaration (ad-hoc sweeps) are compared as their group's fallback
says: every loss against the task's baseline (lossbench.tasks.TASKS) on its primary metric and view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lossbench.report.groups import Group
from lossbench.report.paired import readjudge
from lossbench.report.stats import adjust_together
from lossbench.report.tables import per_seed

VERDICT_COLUMNS = ["question", "group", "loss", "baseline", "metric", "view", "difference",
                   "ci_low", "ci_high", "p_adj", "adjust", "k_of_n", "p_improvement", "verdict",
                   "n_seeds", "p_improvement_low", "p_improvement_high", "bound", "mde", "p",
                   "p_t", "test", "ci_covers", "declared"]
SEED_COLUMNS = ["question", "group", "loss", "baseline", "metric", "view", "seed", "split_seed",
                "value", "baseline_value"]
RENAMED = {"diff": "difference", "diff_low": "ci_low", "diff_high": "ci_high"}


@dataclass
class Entry:
    """One group of one question, as the Summary reads it."""

    question: str  # the study's title
    title: str  # the group's title within its study
    group: Group
    paired: pd.DataFrame  # paired.paired_comparisons of the group
    frame: pd.DataFrame  # the group's runs in the question's view (views.Views.frames)
    view: str


def declared_rows(entry: Entry) -> pd.DataFrame:
    """The group's rows of its question's comparisons, metric and view (identities included:
    they are stated, outside the adjusted family)."""
    g, paired = entry.group, entry.paired
    if paired.empty:
        return pd.DataFrame(columns=VERDICT_COLUMNS)
    rows = paired[(paired["metric"] == g.verdict_metric) & (paired["view"] == entry.view)
                  & paired["loss"].isin(g.comparisons)]
    rows = rows.rename(columns=RENAMED).assign(question=entry.question, group=entry.title,
                                               declared=g.question_declared)
    return rows


def declared_verdicts(entries: list[Entry], method: str = "holm",
                      others=()) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Every declared comparison of every question, p adjusted by `method` across all of them
    and the Summary's `others` (the stress groups' Fisher p: one family), identities excluded;
    the verdict re-read from that p. Returns the table and the others' adjusted p."""
    parts = [p for p in (declared_rows(e) for e in entries) if len(p)]
    table = (pd.concat(parts, ignore_index=True) if parts
             else pd.DataFrame(columns=VERDICT_COLUMNS + ["identical"]))
    p = table["p"].astype(float).where(~table["identical"].astype(bool))
    adjusted = adjust_together([p.to_numpy(), *others], method)
    table["p_adj"], table["adjust"] = adjusted[0], method
    if len(table):
        table["verdict"] = readjudge(table.rename(columns={v: k for k, v in RENAMED.items()}))
    return table[VERDICT_COLUMNS], adjusted[1:]


def verdict_seeds(entries: list[Entry], verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per verdict and paired seed: the loss's and the baseline's value (seed duplicates
    averaged, as every statistic) and the seed's data split (dataset.split_seed; NaN where the
    runs used the default split)."""
    rows = []
    by_key = {(e.question, e.title): e for e in entries}
    for _, v in verdicts.iterrows():
        e = by_key[(v["question"], v["group"])]
        column = f"test_{v['metric']}"
        mine = per_seed(e.frame[e.frame["loss"] == v["loss"]], column)
        base = per_seed(e.frame[e.frame["loss"] == v["baseline"]], column)
        split = split_seeds(e.group)
        for seed in mine.index.intersection(base.index).sort_values():
            rows.append({"question": v["question"], "group": v["group"], "loss": v["loss"],
                         "baseline": v["baseline"], "metric": v["metric"], "view": v["view"],
                         "seed": seed, "split_seed": split.get(seed, np.nan),
                         "value": mine[seed], "baseline_value": base[seed]})
    return pd.DataFrame(rows, columns=SEED_COLUMNS)


def split_seeds(group: Group) -> dict:
    """seed -> the data split it trained on: dataset.split_seed where set (the collected
    summary's column), else NaN (the dataset's default split, shared by every seed)."""
    column = "cfg.dataset.split_seed"
    if column not in group.runs:
        return {}
    values = pd.to_numeric(group.runs[column], errors="coerce")
    return values.groupby(group.runs["seed"]).first().to_dict()
