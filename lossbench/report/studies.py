"""Which question a run answers, read from its configuration, and the figures that span a study.

A study is one of the report's questions (STUDIES, in page order). A run belongs to the study its
preset declares (question.study); for runs collected before presets declared one, load.py derives
it once where the tables are read (load.declared_studies).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lossbench.config import Study
from lossbench.training.metrics import MEMORISATION, METRICS
from lossbench.report import figures
from lossbench.report.document import Figure, Table
from lossbench.report.groups import TUNED_KEYS, format_value, loss_sort_key, value_sort_key
from lossbench.report.load import STUDY
from lossbench.report.stats import t_interval
from lossbench.report.tables import fmt_ci
from lossbench.tasks import TASKS, TaskFacts

STUDIES = {  # key -> section title, in page order; Study.stability is the Stability section's
    Study.shared.value: "Losses at shared settings",
    Study.tuned.value: "Losses tuned per loss",
    Study.noise.value: "Label noise",
    Study.imbalance.value: "Class imbalance",
    Study.images.value: "Multi-label images",
    Study.binary.value: "Binary task",
}
NOISE, NOISE_KIND = "cfg.dataset.label_noise", "cfg.dataset.noise_kind"
RATIO = "cfg.dataset.imbalance_ratio"
VIEW_EPOCH = "view_epoch"  # the epoch a run's question's view reads (sections.in_view)
COLOURS = "The baseline and the question's comparisons are in colour, every other loss in grey."


def numeric(summary: pd.DataFrame, column: str, default: float) -> pd.Series:
    if column not in summary:
        return pd.Series(default, index=summary.index, dtype=float)
    return pd.to_numeric(summary[column], errors="coerce").fillna(default)


def tuned_runs(summary: pd.DataFrame) -> pd.Series:
    """Runs of a tuned comparison: of the tuned study, or compared at the settings a
    tuning.parquet beside them chose (their TUNED_KEYS: experiment=which_loss)."""
    keys = summary[TUNED_KEYS].fillna("").astype("str") if TUNED_KEYS in summary else ""
    return (study_of(summary) == Study.tuned.value) | (keys != "")


def study_of(summary: pd.DataFrame) -> pd.Series:
    """The study of every summary row (any status), as declared (load.declared_studies fills
    what old runs lack); shared where none is."""
    declared = summary[STUDY].astype("str") if STUDY in summary else pd.Series("", index=summary.index)
    return declared.where(declared.isin([*STUDIES, Study.stability.value]), Study.shared.value)


def per_seed_points(runs: pd.DataFrame, column: str, keys: list[str]) -> pd.DataFrame:
    """Per (keys, loss): mean and 95% t-CI over seeds of a summary column (seed duplicates
    averaged first)."""
    if column not in runs:
        return pd.DataFrame()
    values = runs.assign(value=pd.to_numeric(runs[column], errors="coerce"))
    by_seed = values.groupby(keys + ["loss", "seed"], sort=False)["value"].mean().reset_index()
    rows = []
    for key, part in by_seed.groupby(keys + ["loss"], sort=False):
        ci = t_interval(part["value"].to_numpy())
        rows.append({**dict(zip(keys + ["loss"], key)), "n_seeds": ci.n, "mean": ci.mean,
                     "ci_low": ci.low, "ci_high": ci.high})
    return pd.DataFrame(rows)


def ordered(points: pd.DataFrame, x: str) -> pd.DataFrame:
    points = points.assign(loss_key=points["loss"].map(loss_sort_key))
    return points.sort_values(["loss_key", x], kind="stable").drop(columns="loss_key").reset_index(drop=True)


def condition_table(points: pd.DataFrame, x_label: str) -> pd.DataFrame:
    """Display: one row per loss, one column per (panel, x) with mean [95% CI]."""
    columns = sorted({(p, x) for p, x in zip(points["panel"], points["x"])},
                     key=lambda px: (px[0], value_sort_key(format_value(px[1]))))
    rows = []
    for loss in dict.fromkeys(points["loss"]):
        row = {"loss": loss}
        for panel, x in columns:
            hit = points[(points["loss"] == loss) & (points["panel"] == panel) & (points["x"] == x)]
            name = f"{panel}, {x_label} {format_value(x)}" if panel else f"{x_label} {format_value(x)}"
            row[name] = ("—" if hit.empty else
                         fmt_ci(hit["mean"].iloc[0], hit["ci_low"].iloc[0], hit["ci_high"].iloc[0], ".3f")
                         + f" (n={int(hit['n_seeds'].iloc[0])})")
        rows.append(row)
    return pd.DataFrame(rows)


def facts(runs: pd.DataFrame) -> TaskFacts:
    """The task of a study's runs (each group's `task`; a study of one task)."""
    return TASKS[runs["task"].iloc[0]]


def noise_blocks(runs: pd.DataFrame, metrics: pd.DataFrame, highlight: list[str]) -> list:
    """Accuracy vs noise rate per loss (panels: noise kind), then the memorisation curves; the
    losses in `highlight` (baseline, declared comparisons) in colour."""
    runs = runs.assign(x=numeric(runs, NOISE, 0),
                       panel=runs[NOISE_KIND].astype("str") if NOISE_KIND in runs else "symmetric")
    runs.loc[runs["x"] == 0, "panel"] = "symmetric"  # rate 0 is clean data, the start of each curve
    points = per_seed_points(runs, f"test_{facts(runs).metric}", ["panel", "x"])
    if points.empty:
        return []
    points = ordered(points, "x")
    clean = points[points["x"] == 0]  # every kind's curve starts at the clean runs
    drawn = ordered(pd.concat([points] + [clean.assign(panel=kind) for kind in
                                          dict.fromkeys(points["panel"]) if kind != "symmetric"],
                              ignore_index=True), "x")
    blocks = [Table("noise-acc", condition_table(points, "noise"), points,
                    "Test accuracy (clean test labels) in the question's view (the paired "
                    "comparisons and the Summary read the same) per loss and "
                    "training-label noise: "
                    "mean [95% t-CI] over seeds, n = seeds."),
              Figure("noise-acc-vs-rate", figures.condition_curves(drawn, "training-label noise rate",
                                                           "test accuracy", highlight=highlight),
                     "Test accuracy vs noise rate per loss, one panel per noise kind (each starts "
                     "at the clean runs, rate 0); error bars = 95% t-CI over seeds. " + COLOURS,
                     drawn)]
    curves = memorisation_curves(runs, metrics)
    if not curves.empty:
        blocks.append(Figure("noise-memorisation", figures.memorisation(curves, highlight),
                             "Memorisation: accuracy of the flipped training examples against "
                             "their true label (solid: the loss resisted the noise) and their noisy "
                             "label (dashed: it memorised it), mean over seeds per epoch. "
                             + COLOURS, curves))
    return blocks


def memorisation_curves(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    columns = list(MEMORISATION)
    if not set(columns) <= set(metrics.columns):
        return pd.DataFrame()
    train = metrics[(metrics["split"] == "train") & metrics["run"].isin(runs["run"])]
    train = train.merge(runs[["run", "panel", "x"]].rename(columns={"x": "rate"}), on="run")
    train = train.merge(runs[["run", "loss"]], on="run", suffixes=("_metrics", ""))
    train = train[train["rate"] > 0]
    if train.empty:
        return pd.DataFrame()
    train["panel"] = train["panel"] + " " + train["rate"].map(format_value)
    long = train.melt(id_vars=["panel", "rate", "loss", "epoch"], value_vars=columns,
                      var_name="column", value_name="value")
    curves = long.groupby(["panel", "rate", "loss", "column", "epoch"], sort=False)["value"].mean()
    curves = curves.reset_index(name="mean")
    curves["loss_key"] = curves["loss"].map(loss_sort_key)
    return (curves.sort_values(["rate", "panel", "loss_key", "column", "epoch"], kind="stable")
            .drop(columns="loss_key").reset_index(drop=True))


def imbalance_blocks(runs: pd.DataFrame, highlight: list[str]) -> list:
    """Balanced accuracy and rare-class recall vs imbalance ratio per loss; the losses in
    `highlight` (baseline, declared comparisons) in colour."""
    runs = runs.assign(x=numeric(runs, RATIO, 1))
    parts = []
    for metric in facts(runs).balance:
        points = per_seed_points(runs, f"test_{metric}", ["x"])
        if not points.empty:
            parts.append(points.assign(panel=METRICS[metric].label))
    if not parts:
        return []
    points = ordered(pd.concat(parts, ignore_index=True), "x")
    return [Table("imbalance", condition_table(points, "ratio"), points,
                  "Test balanced accuracy and rare-class recall (the test set is balanced) in the "
                  "question's view (the paired comparisons and the Summary read the same) per "
                  "loss and imbalance ratio: mean [95% t-CI] over seeds, n = seeds."),
            Figure("imbalance", figures.condition_curves(points, "imbalance ratio (log scale)",
                                                         "test metric", log_x=True,
                                                         highlight=highlight),
                   "Balanced accuracy and recall of the rarest third of the classes vs imbalance "
                   "ratio per loss; error bars = 95% t-CI over seeds. " + COLOURS, points)]


def ap_points(runs: pd.DataFrame, per_class: pd.DataFrame | None) -> pd.DataFrame:
    """Per (loss, label): mean over seeds of the test AP at the epoch of the question's view
    (runs' VIEW_EPOCH) and the training positives."""
    if per_class is None or "ap" not in per_class.columns:
        return pd.DataFrame()
    rows = per_class[per_class["split"] == "test"]
    rows = rows.merge(runs[["run", "loss", VIEW_EPOCH]], on="run", suffixes=("_rows", ""))
    rows = rows[rows["epoch"] == rows[VIEW_EPOCH]]
    if rows.empty:
        return pd.DataFrame()
    points = rows.groupby(["loss", "class"], sort=False).agg(
        ap=("ap", "mean"), train_count=("train_count", "mean"), n_runs=("run", "nunique"))
    points = points.reset_index()
    points["loss_key"] = points["loss"].map(loss_sort_key)
    return (points.sort_values(["loss_key", "class"], kind="stable").drop(columns="loss_key")
            .reset_index(drop=True))


def images_blocks(runs: pd.DataFrame, per_class: pd.DataFrame | None) -> list:
    points = ap_points(runs, per_class)
    if points.empty:
        return []
    wide = points.pivot(index="class", columns="loss", values="ap")
    counts = points.groupby("class")["train_count"].mean()
    shown = pd.DataFrame({"label": wide.index.astype(str),
                          "training positives": counts.reindex(wide.index).map(lambda v: f"{v:.0f}")})
    for loss in sorted(wide.columns, key=loss_sort_key):
        shown[f"AP {loss}"] = wide[loss].map(lambda v: "—" if math.isnan(v) else f"{v:.3f}")
    return [Table("images-ap-per-label", shown.reset_index(drop=True), points,
                  "Test average precision per label in the question's view (the epoch the "
                  "paired comparisons and the Summary read), mean over seeds, with the label's "
                  "training positives."),
            Figure("images-ap-per-label", figures.ap_vs_frequency(points),
                   "Per-label test AP vs the label's training positives, one line per loss (mean "
                   "over seeds).", points)]


def study_blocks(key: str, runs: pd.DataFrame, metrics: pd.DataFrame,
                 per_class: pd.DataFrame | None, highlight: list[str]) -> list:
    """The table and figure that span a study's groups; [] for studies without one. `highlight`:
    the losses its figures draw in colour (the baseline, then the declared comparisons)."""
    if key == "noise":
        return noise_blocks(runs, metrics, highlight)
    if key == "imbalance":
        return imbalance_blocks(runs, highlight)
    if key == "images":
        return images_blocks(runs, per_class)
    return []


def primary_table(results, metric_of) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Display and data of the primary metric per loss (rows) and group (columns) of a study."""
    rows, data = {}, []
    for r in results:
        metric = metric_of(r)
        if f"{metric}_mean" not in r.final:
            continue
        for _, f in r.final[r.final["view"] == r.views.primary].iterrows():
            cell = fmt_ci(f[f"{metric}_mean"], f[f"{metric}_ci_low"], f[f"{metric}_ci_high"], ".4f")
            rows.setdefault(f["loss"], {"loss": f["loss"]})[f"{r.title}: {metric}"] = (
                f"{cell} (n={int(f['n_seeds'])})")
            data.append({"group": r.title, "loss": f["loss"], "metric": metric, "view": f["view"],
                         "n_seeds": int(f["n_seeds"]), "mean": f[f"{metric}_mean"],
                         "ci_low": f[f"{metric}_ci_low"], "ci_high": f[f"{metric}_ci_high"]})
    order = sorted(rows, key=loss_sort_key)
    shown = pd.DataFrame([rows[loss] for loss in order]).fillna("—") if rows else pd.DataFrame()
    return shown, pd.DataFrame(data)


def wall_hours(summary: pd.DataFrame) -> float:
    if "wall_time_s" not in summary:
        return math.nan
    return float(np.nansum(pd.to_numeric(summary["wall_time_s"], errors="coerce"))) / 3600
