"""The Stability section: shown when any run logged steps.parquet, or a probe dir is given.

Unlike the comparisons, it looks at every run, diverged ones included: a run that diverged under
float16 or a large logit scale is the result here. A run's setting is the STRESS columns of
summary.parquet that vary (all of them when none does), then the other setting columns that vary
and are not implied by those before them (with_settings). Each group opens with its verdict table (stability_verdicts.py), then
the heatmap and the gradient norms; the long non-finite event tables and the probe's
per-threshold explanations go to the appendix (`stability_appendix`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lossbench.report import figures
from lossbench.report.document import Figure, Paragraph, Section, Table, Verbatim
from lossbench.report.groups import (infer_task, loss_sort_key, naming_columns, setting_columns, setting_text,
                                     value_sort_key)
from lossbench.report.load import PAIRS, Inputs
from lossbench.report.stability_verdicts import rule, show_verdicts, verdict_table
from lossbench.tasks import TASKS, fallback_baseline

STRESS = ("cfg.trainer.precision", "cfg.trainer.loss_scaling", "cfg.model.logit_scale", "cfg.optim.lr")
LR = "cfg.optim.lr"
MAX_PANELS = 24  # grad-norm panels per group; more settings than this are listed, not drawn


def with_settings(summary: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Summary rows with a `setting` label built from the stress columns that vary, then from
    any other setting column that varies (label noise, imbalance, ...: groups.setting_columns)
    and is not implied by those before it: runs that differ in more than the loss and the seed
    are never pooled into one cell, one verdict or one mean."""
    runs = summary.copy()
    runs["task"] = infer_task(runs)
    columns = [c for c in STRESS if c in runs.columns]
    stress = setting_text(runs, columns)
    varying = [c for c in columns if stress[c].nunique() > 1] or columns
    varying += naming_columns(runs, [c for c in setting_columns(runs) if c not in STRESS], tuple(varying))
    if varying:
        text = setting_text(runs, varying)
        runs["setting"] = text.apply(
            lambda r: ", ".join(f"{key_label(c)}={r[c]}" for c in varying), axis=1)
        runs["setting_key"] = text.apply(lambda r: tuple(value_sort_key(v) for v in r), axis=1)
    else:
        runs["setting"], runs["setting_key"] = "default", [()] * len(runs)
    return runs, varying


def key_label(column: str) -> str:
    """A setting's key as its label shows it: a stress key by its last part (`lr`), any other by
    its whole key (`dataset.label_noise`: `model.name` and `optim.name` would both read `name`)."""
    return column.rsplit(".", 1)[-1] if column in STRESS else column.removeprefix("cfg.")


def ordered_settings(runs: pd.DataFrame) -> list[str]:
    firsts = runs.drop_duplicates("setting").sort_values("setting_key", kind="stable")
    return list(firsts["setting"])


def event_table(runs: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """Per (loss, setting): runs, how they ended, and the non-finite events their steps logged."""
    last = steps.sort_values(["run", "step"]).groupby("run").tail(1).set_index("run")
    bad = steps[(steps["nonfinite_loss"] > 0) | (steps["nonfinite_grad"] > 0)]
    first_bad = bad.groupby("run")["step"].min()
    rows = []
    for (loss, setting), part in runs.groupby(["loss", "setting"], sort=False):
        logged = last.reindex(part["run"]).dropna(how="all")
        rows.append({
            "loss": loss, "setting": setting, "runs": len(part),
            "completed": int((part["status"] == "completed").sum()),
            "diverged": int((part["status"] == "diverged").sum()),
            "other": int((~part["status"].isin(["completed", "diverged"])).sum()),
            "runs_with_nonfinite": int(first_bad.reindex(part["run"]).notna().sum()),
            "nonfinite_loss": int(logged["nonfinite_loss"].sum()) if len(logged) else 0,
            "nonfinite_grad": int(logged["nonfinite_grad"].sum()) if len(logged) else 0,
            "skipped_steps": int(logged["skipped_steps"].sum()) if len(logged) else 0,
            "first_nonfinite_step": first_bad.reindex(part["run"]).min(),
            "setting_key": part["setting_key"].iloc[0],
        })
    table = pd.DataFrame(rows)
    table["loss_key"] = table["loss"].map(loss_sort_key)
    table = table.sort_values(["loss_key", "setting_key"], kind="stable")
    return table.drop(columns=["loss_key", "setting_key"]).reset_index(drop=True)


def show_events(events: pd.DataFrame) -> pd.DataFrame:
    shown = events.copy()
    shown["first_nonfinite_step"] = shown["first_nonfinite_step"].map(
        lambda v: "" if pd.isna(v) else str(int(v)))
    return shown.astype("str")


def grad_curves(runs: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, loss, step): median, min and max of the finite gradient norms over runs, zeros
    included: BCELoss on saturated sigmoids has a gradient of exactly 0 (its logs clamp at -100),
    and the figure draws it on its bottom edge."""
    rows = steps.merge(runs[["run", "loss", "setting"]], on="run", suffixes=("_steps", ""))
    rows = rows[np.isfinite(rows["grad_norm"])]
    if rows.empty:
        return pd.DataFrame()
    out = rows.groupby(["setting", "loss", "step"], sort=True)["grad_norm"].agg(
        ["median", "min", "max", "count"]).reset_index()
    return out.rename(columns={"count": "n_runs"})


def divergence_steps(runs: pd.DataFrame) -> pd.DataFrame:
    """(setting, loss, step, kind) of every diverged run: summary.json's first non-finite step."""
    if "first_nonfinite_step" not in runs:
        return pd.DataFrame(columns=["setting", "loss", "step", "kind"])
    diverged = runs[(runs["status"] == "diverged") & runs["first_nonfinite_step"].notna()]
    return pd.DataFrame({"setting": diverged["setting"], "loss": diverged["loss"],
                         "step": diverged["first_nonfinite_step"].astype(int),
                         "kind": diverged.get("first_nonfinite")}).reset_index(drop=True)


def heat_cells(runs: pd.DataFrame, varying: list[str], metric: str) -> pd.DataFrame:
    """Per (lr panel, the setting's other columns, loss): runs, completed, diverged, and the mean and
    sd of the final metric over the completed runs."""
    rows_by = [c for c in varying if c != LR]
    text = setting_text(runs, varying) if varying else pd.DataFrame(index=runs.index)
    runs = runs.assign(
        panel=text[LR].map(lambda v: f"lr={v}") if LR in varying else "every run",
        row=text[rows_by].apply(lambda r: ", ".join(f"{key_label(c)}={r[c]}"
                                                    for c in rows_by), axis=1)
        if rows_by else "default",
        value=pd.to_numeric(runs[f"test_{metric}"], errors="coerce")
        if f"test_{metric}" in runs else np.nan)
    ended = runs[runs["status"].isin(["completed", "diverged"])].sort_values("setting_key", kind="stable")
    cells = []
    for (panel, row, loss), part in ended.groupby(["panel", "row", "loss"], sort=False):
        done = part.loc[part["status"] == "completed", "value"].dropna()
        cells.append({"panel": panel, "row": row, "loss": loss, "n": len(part),
                      "n_completed": len(done), "n_diverged": int((part["status"] == "diverged").sum()),
                      "mean": done.mean() if len(done) else math.nan,
                      "sd": done.std(ddof=1) if len(done) > 1 else math.nan})
    table = pd.DataFrame(cells)
    if table.empty:
        return table
    order = sorted(table["loss"].unique(), key=loss_sort_key)
    table["loss_key"] = table["loss"].map(order.index)
    return table.sort_values(["loss_key"], kind="stable").drop(columns="loss_key").reset_index(drop=True)


def group_section(group: "StressGroup", steps: pd.DataFrame | None) -> Section:
    title, slug, runs, verdicts = group.title, group.slug, group.runs, group.verdicts
    metric = TASKS[group.task].metric
    losses = sorted(runs["loss"].unique(), key=loss_sort_key)
    settings = ordered_settings(runs)
    blocks = []
    if not verdicts.empty:
        blocks.append(Table(f"{slug}-verdicts", show_verdicts(verdicts, metric), verdicts, rule(metric)))
    cells = heat_cells(runs, group.varying, metric)
    if not cells.empty:
        blocks.append(Figure(
            f"{slug}-{metric}-heatmap", figures.heatmap(cells, metric),
            f"Final test {metric} by loss and stress setting, one panel per learning rate: mean ± sd "
            "over the completed runs, n = completed runs, 'k/n div.' = runs that diverged (their "
            "cell's mean is over the survivors only). Colour zoomed to the cells above Tukey's lower "
            "fence (Q1 - 1.5 IQR); darker grey = below it, light grey = no completed run.", cells))
    mine = steps[steps["run"].isin(runs["run"])] if steps is not None else pd.DataFrame()
    curves = grad_curves(runs, mine) if len(mine) else pd.DataFrame()
    if not curves.empty:
        panels = [s for s in settings if s in set(curves["setting"])][:MAX_PANELS]
        blocks.append(Figure(
            f"{slug}-grad-norm",
            figures.grad_norm_curves(curves, panels, losses, divergence_steps(runs)),
            "Gradient norm per logged step, one panel per stress setting: line = median over "
            "runs, thin lines = min and max (log scale, the top cut at the 99th percentile); "
            "non-finite values left out, x = a diverged run's first non-finite step; a norm more "
            "than two decades under the healthy range (a saturated loss's vanishing or zero "
            "gradient) is drawn on the bottom edge. The sigmoid losses (bce, bce_logits) average over N·C "
            "outputs where the softmax losses average over N samples, so their norms sit about C "
            "times lower at the same fit: compare shapes, not levels, across families."
            + (f" Only the first {MAX_PANELS} of {len(settings)} settings are drawn; the CSV "
               "holds all." if len(settings) > MAX_PANELS else ""), curves))
    return Section(title, blocks)


def probe_section(probe: Path) -> Section:
    image, thresholds = probe / "probe.png", probe / "thresholds.md"
    blocks = []
    if image.exists():
        blocks.append(Figure("probe", image.read_bytes(), "Probe: loss and gradient of each loss "
                             "over the logit range, per dtype (probe.png); per-threshold "
                             "explanations in the appendix."))
    missing = [p.name for p in (image, thresholds) if not p.exists()]
    if missing:
        blocks.append(Paragraph(f"Missing from the probe dir: {', '.join(missing)}."))
    return Section("Probe", blocks)


@dataclass
class StressGroup:
    """One (dataset, source, task) of the stress runs, each run's `setting` named by the columns
    `varying` (with_settings), and its verdict table (made once: the Summary reads it too)."""
    title: str
    slug: str
    runs: pd.DataFrame
    task: str
    varying: list[str]
    verdicts: pd.DataFrame


def stress_groups(inputs: Inputs) -> tuple[list[StressGroup], list[str]]:
    """The stress groups of the runs with identity, and the stress columns that vary anywhere."""
    known = inputs.summary[inputs.summary["dataset"].notna()] if "dataset" in inputs.summary else None
    if known is None or known.empty:
        return [], []
    known = known.assign(task=infer_task(known))
    for fill in ("data_source", "loss"):
        known[fill] = known[fill].fillna("unknown").astype("str") if fill in known else "unknown"
    groups, anywhere = [], []
    for (dataset, source, task), part in known.groupby(["dataset", "data_source", "task"], sort=True):
        runs, varying = with_settings(part)
        text = setting_text(runs, varying)
        anywhere += [c for c in varying if c not in anywhere and text[c].nunique() > 1]
        kind = TASKS[task]
        losses = sorted(runs["loss"].unique(), key=loss_sort_key)
        verdicts = verdict_table(runs, fallback_baseline(losses, kind.baseline), kind.metric,
                                 declared_pairs(runs))
        groups.append(StressGroup(f"{dataset} / {source} ({kind.label})",
                                  f"stability-{dataset}-{source}-{task}", runs, task, varying, verdicts))
    return groups, [c for c in STRESS if c in anywhere]


def declared_pairs(runs: pd.DataFrame) -> dict[str, str]:
    """question.pairs as the runs declare it (load.declare_old_runs fills it for old runs):
    loss -> its second reference, where every run that declares one agrees."""
    pairs = {}
    for column in (c for c in runs.columns if c.startswith(PAIRS)):
        values = runs[column].dropna().astype("str").unique()
        if len(values) == 1:
            pairs[column.removeprefix(PAIRS)] = values[0]
    return pairs


def stability_section(inputs: Inputs, groups: list[StressGroup], varying: list[str],
                      probe: Path | None = None) -> Section | None:
    if inputs.steps is None and probe is None:
        return None
    section = Section("Stability")
    if groups:
        conditions = list(dict.fromkeys(c for g in groups for c in g.varying if c not in STRESS))
        section.blocks.append(Paragraph(
            "Every run is included here, diverged ones too; stress settings "
            + ("varied: " + ", ".join(f"`{c.removeprefix('cfg.')}`" for c in varying) if varying
               else "the same in every run") + "."
            + (" Other settings varied" + (" too" if varying else "") + ", and each combination of their "
               "values is a setting of its own (never pooled): "
               + ", ".join(f"`{c.removeprefix('cfg.')}`" for c in conditions) + "." if conditions else "")))
    section.subsections += [group_section(group, inputs.steps) for group in groups]
    if probe is not None:
        section.subsections.append(probe_section(probe))
    return section if section.blocks or section.subsections else None


def stability_appendix(inputs: Inputs, groups: list[StressGroup], probe: Path | None = None) -> list[Section]:
    """The long tables: non-finite events per group, and the probe's per-threshold explanations."""
    out = []
    if inputs.steps is not None:
        for title, slug, part in ((g.title, g.slug, g.runs) for g in groups):
            mine = inputs.steps[inputs.steps["run"].isin(part["run"])]
            if len(mine):
                events = event_table(part, mine)
                out.append(Section(f"Non-finite events: {title}", [Table(
                    f"{slug}-nonfinite-events", show_events(events), events,
                    "Non-finite events per loss and stress setting, every run included (counts "
                    "are the runs' final cumulative counts).")]))
    thresholds = probe / "thresholds.md" if probe is not None else None
    if thresholds is not None and thresholds.exists():  # its headings go below this section's
        text = re.sub(r"^(#+) ", r"###\1 ", thresholds.read_text(), flags=re.MULTILINE)
        out.append(Section("Probe thresholds", [Verbatim(text)]))
    return out
