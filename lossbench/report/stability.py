"""The Stability section: shown when any run logged steps.parquet, or a probe dir is given.

Unlike the comparisons, it looks at every run, diverged ones included: a run that diverged under
float16 or a large logit scale is the result here. Stress settings are the columns
cfg.trainer.precision, cfg.model.logit_scale and cfg.optim.lr of summary.parquet. Each group opens
with a generated Findings paragraph (stability_findings.py): where bce and bce_logits part ways.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from lossbench.report import figures
from lossbench.report.document import Figure, Paragraph, Section, Table, Verbatim
from lossbench.report.groups import TASKS, format_value, infer_task, loss_sort_key, value_sort_key
from lossbench.report.load import Inputs
from lossbench.report.stability_findings import findings_paragraph
from lossbench.report.tables import fmt

STRESS = ("cfg.trainer.precision", "cfg.model.logit_scale", "cfg.optim.lr")
MAX_PANELS = 24  # grad-norm panels per group; more settings than this are listed, not drawn


def with_settings(summary: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Summary rows with a `setting` label built from the stress columns that vary."""
    runs = summary.copy()
    runs["task"] = infer_task(runs)
    columns = [c for c in STRESS if c in runs.columns]
    varying = [c for c in columns if runs[c].map(format_value).nunique() > 1] or columns
    if varying:
        text = runs[varying].map(format_value)
        runs["setting"] = text.apply(
            lambda r: ", ".join(f"{c.rsplit('.', 1)[-1]}={r[c]}" for c in varying), axis=1)
        runs["setting_key"] = text.apply(lambda r: tuple(value_sort_key(v) for v in r), axis=1)
    else:
        runs["setting"], runs["setting_key"] = "default", [()] * len(runs)
    return runs, varying


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
    """Per (setting, loss, step): median, min and max of the finite gradient norms over runs."""
    rows = steps.merge(runs[["run", "loss", "setting"]], on="run", suffixes=("_steps", ""))
    rows = rows[np.isfinite(rows["grad_norm"]) & (rows["grad_norm"] > 0)]
    if rows.empty:
        return pd.DataFrame()
    out = rows.groupby(["setting", "loss", "step"], sort=True)["grad_norm"].agg(
        ["median", "min", "max", "count"]).reset_index()
    return out.rename(columns={"count": "n_runs"})


def heat(runs: pd.DataFrame, metric: str, losses: list[str], settings: list[str]):
    """Mean final test metric of completed runs (settings x losses); labels add 'k/n div.' where
    runs diverged."""
    values = pd.DataFrame(np.nan, index=settings, columns=losses)
    labels = pd.DataFrame("", index=settings, columns=losses)
    for (loss, setting), part in runs.groupby(["loss", "setting"]):
        done = part[part["status"] == "completed"]
        column = f"test_{metric}"
        mean = done[column].mean() if column in done.columns and len(done) else np.nan
        values.loc[setting, loss] = mean
        text = fmt(float(mean), ".3f") if not pd.isna(mean) else "none completed"
        diverged = int((part["status"] == "diverged").sum())
        if diverged:
            text += f" ({diverged}/{len(part)} div.)"
        labels.loc[setting, loss] = text
    return values, labels


def group_section(title: str, slug: str, runs: pd.DataFrame, steps: pd.DataFrame | None,
                  metric: str) -> Section:
    losses = sorted(runs["loss"].unique(), key=loss_sort_key)
    settings = ordered_settings(runs)
    blocks = []
    text = findings_paragraph(runs, steps, metric)
    if text:
        blocks.append(Paragraph(text))
    if steps is not None:
        mine = steps[steps["run"].isin(runs["run"])]
        if len(mine):
            events = event_table(runs, mine)
            blocks.append(Table(f"{slug}-nonfinite-events", show_events(events), events,
                                "Non-finite events per loss and stress setting, every run "
                                "included (counts are the runs' final cumulative counts)."))
            curves = grad_curves(runs, mine)
            if not curves.empty:
                panels = [s for s in settings if s in set(curves["setting"])][:MAX_PANELS]
                blocks.append(Figure(
                    f"{slug}-grad-norm", figures.grad_norm_curves(curves, panels, losses),
                    "Gradient norm per logged step, one panel per stress setting: line = median "
                    "over runs, band = min-max over runs; non-finite values left out.", curves))
                if len(settings) > MAX_PANELS:
                    blocks.append(Paragraph(f"Only the first {MAX_PANELS} of {len(settings)} "
                                            "settings are drawn; the CSV holds all."))
    values, labels = heat(runs, metric, losses, settings)
    data = values.reset_index(names="setting")
    blocks.append(Figure(f"{slug}-{metric}-heatmap",
                         figures.heatmap(values, labels, f"final test {metric} by stress setting and loss"),
                         f"Mean final test {metric} of completed runs by loss and stress setting; "
                         "'k/n div.' counts runs that diverged; grey = no completed run.", data))
    return Section(title, blocks)


def probe_section(probe: Path) -> Section:
    blocks = []
    image, thresholds = probe / "probe.png", probe / "thresholds.md"
    if image.exists():
        blocks.append(Figure("probe", image.read_bytes(), "Probe: loss and gradient of each loss "
                             "over the logit range, per dtype (probe.png)."))
    if thresholds.exists():  # its headings go below this section's
        text = re.sub(r"^(#+) ", r"###\1 ", thresholds.read_text(), flags=re.MULTILINE)
        blocks.append(Verbatim(text))
    missing = [p.name for p in (image, thresholds) if not p.exists()]
    if missing:
        blocks.append(Paragraph(f"Missing from the probe dir: {', '.join(missing)}."))
    return Section("Probe", blocks)


def stability_section(inputs: Inputs, probe: Path | None = None) -> Section | None:
    if inputs.steps is None and probe is None:
        return None
    # a run without identity (unreadable summary.json) is only listed under Excluded runs
    known = inputs.summary[inputs.summary["dataset"].notna()] if "dataset" in inputs.summary else None
    if known is None or known.empty:
        return None if probe is None else Section("Stability", subsections=[probe_section(probe)])
    runs, varying = with_settings(known)
    constant = len(varying) == 0 or runs[varying].map(format_value).drop_duplicates().shape[0] == 1
    intro = ("Every run is included here, diverged ones too. Stress settings (the columns "
             "cfg.trainer.precision, cfg.model.logit_scale, cfg.optim.lr): "
             + ("none logged" if not varying else "the same in every run" if constant
                else "varied: " + ", ".join(c.removeprefix("cfg.") for c in varying)) + ".")
    section = Section("Stability", [Paragraph(intro)])
    for fill in ("data_source", "loss"):
        runs[fill] = runs[fill].fillna("unknown").astype("str") if fill in runs else "unknown"
    for (dataset, source, task), part in runs.groupby(["dataset", "data_source", "task"], sort=True):
        kind = TASKS[task]
        section.subsections.append(group_section(
            f"{dataset} / {source} ({kind.label})", f"stability-{dataset}-{source}-{task}",
            part, inputs.steps, kind.metric))
    if probe is not None:
        section.subsections.append(probe_section(probe))
    return section
