"""Split completed runs into groups whose numbers may be compared.

A group is one (dataset, data_source, task): full MNIST and the sample never share a table. Within
it, a cfg.* column whose value is not the same for every run is a *setting* (a sweep over optim.lr,
trainer.precision, ..., or a preset changed between two sweeps into one dir): each combination of
settings becomes its own group, so that "paired by seed" pairs runs that differ in the loss only.
Never settings: cfg.loss.* (a loss's own parameters are part of its identity, like its name),
cfg.question.* (what the preset asks, not how it runs), cfg.seed and cfg.dataset.split_seed (the
pairing key: a seed and its data split) and the keys that only say where or how a run executed
(lossbench.config.EXECUTION_KEYS). In the comparison runs of a tuned sweep, the keys tuned there
(their TUNED_KEYS column, report.tuning_section.mark_tuning) are part of each loss's chosen configuration,
like cfg.loss.*: their value reads TUNED, so a tuned comparison's losses share one group.
"""

from __future__ import annotations

import ast
import hashlib
import math
import re
from dataclasses import dataclass

import pandas as pd

from lossbench.config import EXECUTION_KEYS
from lossbench.losses import LOSSES
from lossbench.training.metrics import LOWER_IS_BETTER
from lossbench.report.names import setting_words
from lossbench.training.selection import selection_metric
from lossbench.tasks import TASKS, TaskFacts, fallback_baseline

LOSS_ORDER = tuple(LOSSES)  # the registry's order: the four torch losses first
MAX_SLUG = 80  # file names stay well below the usual 255-byte limit
MAX_TITLE_SETTINGS = 5
TITLE_ORDER = ("cfg.trainer.precision", "cfg.model.logit_scale", "cfg.optim.lr")
# the seed and the data split it trains on are the unit of replication (a reference sweep sets
# dataset.split_seed per seed): what a group's runs are paired by, never what splits a group
PAIRING = {"cfg.seed", "cfg.dataset.split_seed"}
QUESTION = "cfg.question."  # the declaration a preset's runs carry (config.QuestionConfig)
SPLIT_SEED = "cfg.dataset.split_seed"
TUNED_KEYS = "tuned_keys"  # summary column: the keys tuned per loss for this run, comma-separated
TUNED = "tuned"  # a tuned key's value in a tuned comparison run's group settings


def direction(metric: str, diff: float) -> str:
    """'better', 'worse' or 'equal' for a difference `diff` (loss minus baseline) in `metric`."""
    if diff == 0:
        return "equal"
    return "better" if (diff < 0) == (metric in LOWER_IS_BETTER) else "worse"


def loss_sort_key(label: str):
    """Registry order; a loss with non-default knobs (`focal(gamma=1)`) right after its default."""
    name = label.split("(")[0]
    return (LOSS_ORDER.index(name), label) if name in LOSS_ORDER else (len(LOSS_ORDER), label)


def format_value(value) -> str:
    """A cfg value as text: 0.001 -> '0.001', 32.0 -> '32', NaN/None -> 'unset'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "unset"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def value_sort_key(text: str):
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


@dataclass
class Group:
    dataset: str
    data_source: str
    task: str
    settings: tuple[tuple[str, str], ...]  # (cfg key without "cfg.", value), sorted by key
    runs: pd.DataFrame  # its completed summary rows, sorted by run
    # the settings that name the group: those not implied by others (a stress preset's
    # trainer.precision=16 may imply its trainer.epochs), in TITLE_ORDER; the full list is in
    # `settings`
    named: tuple[tuple[str, str], ...] = ()
    slug: str = ""

    @property
    def kind(self) -> TaskFacts:
        return TASKS[self.task]

    def declared(self, key: str):
        """question.<key> as the group's runs declare it; None without a declaration (ad-hoc
        runs) or where the runs disagree."""
        column = QUESTION + key
        if column not in self.runs:
            return None
        values = self.runs[column].dropna().astype("str").unique()
        return values[0] if len(values) == 1 and len(self.runs[column].dropna()) == len(self.runs) \
            else None

    @property
    def question_declared(self) -> bool:
        return self.declared("baseline") is not None

    @property
    def comparisons(self) -> list[str]:
        """The losses the question compares with the baseline: the declared ones present here,
        else (ad hoc) every other loss."""
        declared = self.declared("comparisons")
        others = [loss for loss in self.losses if loss != self.baseline]
        wanted = set(ast.literal_eval(declared)) if declared is not None else set()
        if not wanted:
            return others
        # a question names registry losses; a run's label adds its knobs (focal(gamma=0.5))
        name = (dict(zip(self.runs["loss"], self.runs["loss_name"])) if "loss_name" in self.runs
                else {})
        return [loss for loss in others if loss in wanted or name.get(loss) in wanted]

    @property
    def view(self) -> str | None:
        """The declared view (selected | last), None ad hoc."""
        return self.declared("view")

    @property
    def smallest_effect(self) -> float | None:
        value = self.declared("smallest_effect")
        return None if value is None or value in ("None", "nan") else float(value)

    @property
    def selection_metric(self) -> str:
        """The validation metric the runs selected their epoch on (trainer.select_on)."""
        return selection_metric(self.task, self.declared_setting("cfg.trainer.select_on"))

    def declared_setting(self, column: str):
        if column not in self.runs:
            return None
        values = self.runs[column].dropna().unique()
        return str(values[0]) if len(values) == 1 else None

    @property
    def baseline(self) -> str:
        """The declared baseline, else the task's; if it has no completed run here (a bce vs
        bce_logits study), tasks.fallback_baseline's."""
        losses = self.losses
        declared = self.declared("baseline")
        if not losses:
            return declared if declared is not None else self.kind.baseline
        return fallback_baseline(losses, declared if declared in losses else self.kind.baseline)

    @property
    def losses(self) -> list[str]:
        return sorted(self.runs["loss"].unique(), key=loss_sort_key)

    @property
    def imbalanced(self) -> bool:
        ratio = self.runs.get("cfg.dataset.imbalance_ratio")
        return ratio is not None and bool((pd.to_numeric(ratio, errors="coerce") > 1).any())

    @property
    def metrics(self) -> tuple[str, ...]:
        """The task's test metrics; with imbalanced training classes (or a question about them)
        also balanced accuracy and the rarest classes' recall, which the balanced test set's
        accuracy averages away."""
        balance = self.imbalanced or self.declared("metric") in self.kind.balance
        extra = tuple(m for m in self.kind.balance
                      if f"test_{m}" in self.runs) if balance else ()
        return self.kind.metrics + extra

    @property
    def verdict_metric(self) -> str:
        """The metric a verdict on this group reads: the declared one, else the task's first
        balance metric (balanced accuracy) where the training classes are imbalanced, else the
        task's primary metric."""
        declared = self.declared("metric")
        if declared is not None and declared in self.metrics:
            return declared
        return next((m for m in self.kind.balance if m in self.metrics), self.kind.metric)

    @property
    def title(self) -> str:
        title = f"{self.dataset} / {self.data_source} ({self.kind.label})"
        if len(self.named) > MAX_TITLE_SETTINGS:  # listed in full in the section itself
            return f"{title}: config variant {self.digest}"
        if self.named:
            title += ": " + ", ".join(f"{k}={v}" for k, v in self.named)
        return title

    @property
    def digest(self) -> str:
        return hashlib.sha1(repr(self.settings).encode()).hexdigest()[:10]

    def members(self, summary: pd.DataFrame) -> pd.DataFrame:
        """Rows of `summary` (any status) that belong to this group: same dataset, data source,
        task and settings. Used to say which runs a group's statistics left out."""
        rows = summary.copy()
        rows["task"] = infer_task(rows)
        keep = pd.Series(True, index=rows.index)
        for column, value in (("dataset", self.dataset), ("data_source", self.data_source),
                              ("task", self.task)):
            if column not in rows.columns:
                return rows.iloc[0:0]
            keep &= rows[column].fillna("unknown").astype("str") == value
        columns = [f"cfg.{key}" for key, _ in self.settings]
        if not set(columns) <= set(rows.columns):
            return rows.iloc[0:0]
        text = setting_text(rows, columns)
        for column, (_, value) in zip(columns, self.settings):
            keep &= text[column] == value
        return summary[keep]

    def base_slug(self) -> str:
        """File-name stem; settings too long for a file name are replaced by a stable hash."""
        parts = [self.dataset, self.data_source] + [f"{k}={v}" for k, v in self.named]
        slug = re.sub(r"[^A-Za-z0-9.=_-]+", "_", "-".join(parts))
        if len(slug) > MAX_SLUG:
            slug = re.sub(r"[^A-Za-z0-9.=_-]+", "_",
                          f"{self.dataset}-{self.data_source}-{self.digest}")
        return slug


def infer_task(summary: pd.DataFrame) -> pd.Series:
    """The `task` column; where missing (runs from before it was recorded), the last task (in
    TASKS order) whose primary test metric the run reports, else the first task."""
    task = summary["task"] if "task" in summary.columns else pd.Series(pd.NA, index=summary.index)
    guessed = pd.Series(next(iter(TASKS)), index=summary.index)
    for name, facts in TASKS.items():
        column = f"test_{facts.metric}"
        if column in summary.columns:
            guessed = guessed.where(summary[column].isna(), name)
    return task.where(task.isin(list(TASKS)), guessed).astype("str")


def is_setting_column(column: str) -> bool:
    """A cfg.* column that may change results and is not a loss's identity, the pairing key or
    an execution key (config.EXECUTION_KEYS, a key or a whole group such as logger)."""
    key = column.removeprefix("cfg.")
    return (column.startswith("cfg.") and not column.startswith(("cfg.loss.", QUESTION))
            and column not in PAIRING
            and not any(key == k or key.startswith(f"{k}.") for k in EXECUTION_KEYS))


def setting_text(rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The columns' values as text, TUNED where the run's TUNED_KEYS name the column's key."""
    text = rows[columns].map(format_value)
    if TUNED_KEYS not in rows:
        return text
    tuned = rows[TUNED_KEYS].fillna("").astype("str").str.split(",")
    for column in columns:
        key = column.removeprefix("cfg.")
        text.loc[tuned.map(lambda keys: key in keys), column] = TUNED
    return text


def follows_seed(block: pd.DataFrame, column: str) -> bool:
    """A split seed equal to each run's seed (dataset.split_seed=${seed}: a split per seed) is
    part of the pairing key, not a setting."""
    return (column == SPLIT_SEED and "seed" in block
            and (pd.to_numeric(block[column], errors="coerce") == block["seed"]).all())


def setting_columns(block: pd.DataFrame) -> list[str]:
    """The setting columns whose value is not the same for every run of the block."""
    columns = sorted(filter(is_setting_column, block.columns))
    text = setting_text(block, columns)
    return [column for column in columns if text[column].nunique() > 1 and not follows_seed(block, column)]


def naming_columns(block: pd.DataFrame, columns: list[str], given: tuple[str, ...] = ()) -> list[str]:
    """The setting columns not implied by the ones kept before them (in TITLE_ORDER first), nor
    by the `given` columns (which name the runs already; not returned)."""
    ordered = sorted(columns, key=lambda c: (TITLE_ORDER.index(c) if c in TITLE_ORDER
                                             else len(TITLE_ORDER), c))
    text = setting_text(block, [*given, *ordered])
    kept: list[str] = list(given)
    for column in ordered:
        implied = kept and (text.groupby([text[k] for k in kept])[column].nunique() <= 1).all()
        if not implied:
            kept.append(column)
    return kept[len(given):]


def find_groups(completed: pd.DataFrame) -> list[Group]:
    runs = completed.copy()
    runs["task"] = infer_task(runs)
    for column in ("dataset", "data_source", "loss"):
        runs[column] = (runs[column] if column in runs.columns else pd.NA)
        runs[column] = runs[column].fillna("unknown").astype("str")
    runs["seed"] = runs["seed"] if "seed" in runs.columns else 0
    groups = []
    for (dataset, source, task), block in runs.groupby(["dataset", "data_source", "task"], sort=True):
        columns = setting_columns(block)
        if not columns:
            groups.append(Group(dataset, source, task, (), block.sort_values("run")))
            continue
        keys = setting_text(block, columns)
        naming = naming_columns(block, columns)
        for values, sub in block.groupby([keys[c] for c in columns], sort=False):
            value = dict(zip(columns, values))
            settings = tuple((c.removeprefix("cfg."), value[c]) for c in columns)
            named = tuple((c.removeprefix("cfg."), value[c]) for c in naming)
            groups.append(Group(dataset, source, task, settings, sub.sort_values("run"), named))
    groups.sort(key=lambda g: (g.dataset, g.data_source, g.task,
                               [value_sort_key(v) for _, v in g.named],
                               [value_sort_key(v) for _, v in g.settings]))
    seen: dict[str, int] = {}
    for g in groups:
        slug = g.base_slug()
        seen[slug] = seen.get(slug, 0) + 1
        g.slug = slug if seen[slug] == 1 else f"{slug}-{seen[slug]}"
    return groups


def short_title(group: Group, siblings: list[Group]) -> str:
    """A group named by its data and, in words (names.py), only the settings that differ between
    its study's groups of the same data."""
    siblings = [g for g in siblings if (g.dataset, g.data_source) == (group.dataset, group.data_source)]
    differ = {k for g in siblings for k, v in g.settings
              if any(dict(h.settings).get(k) != v for h in siblings)}
    named = setting_words((k, v) for k, v in group.settings if k in differ)
    return f"{group.dataset} / {group.data_source}" + (f", {', '.join(named)}" if named else "")
