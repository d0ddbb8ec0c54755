"""The "versus published" table: runs of a preset that names a published table (`published:
NAME` in the preset, results/published/NAME.csv) beside that table, cell by cell.

Per (loss, noise kind, noise rate, data source): lossbench's mean test accuracy over seeds with
its 95% Student-t interval (report.stats.t_interval), the published mean ± std, their difference,
and whether the published mean lies inside lossbench's interval. Accuracy in percent, as published.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

import lossbench
from lossbench.report.document import Paragraph, Section, Table
from lossbench.report.stats import t_interval

PUBLISHED_DIR = Path(lossbench.__file__).resolve().parents[1] / "results" / "published"
KEYS = ["cfg.loss.name", "cfg.dataset.noise_kind", "cfg.dataset.label_noise"]
MEAN, STD = "_mean_pct", "_std_pct"  # a published table's <metric>_mean_pct names its metric


def published_metric(published: pd.DataFrame) -> str:
    return next(c for c in published.columns if c.endswith(MEAN)).removesuffix(MEAN)


def read_published(name: str, directory: Path = PUBLISHED_DIR) -> pd.DataFrame | None:
    path = directory / f"{name}.csv"
    return pd.read_csv(path, comment="#") if path.is_file() else None


def versus(runs: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """One row per (loss, noise, data source) of `runs` (completed runs of one preset) that the
    published table has."""
    metric, rows = published_metric(published), []
    for (name, kind, rate, label, source), cell in runs.groupby(KEYS + ["loss", "data_source"], sort=True):
        match = published[(published["loss"] == name) & (published["noise_kind"] == kind)
                          & ((published["label_noise"] - float(rate)).abs() < 1e-9)]
        if match.empty:
            continue
        ci = t_interval(cell.groupby("seed")[f"test_{metric}"].mean() * 100)
        mean, std = float(match[metric + MEAN].iloc[0]), float(match[metric + STD].iloc[0])
        inside = None if math.isnan(ci.low) else bool(ci.low <= mean <= ci.high)  # no interval from 1 seed
        rows.append({"loss": label, "noise_kind": kind, "label_noise": float(rate), "data_source": source,
                     "seeds": ci.n, "lossbench_mean": ci.mean, "lossbench_low": ci.low,
                     "lossbench_high": ci.high, "published_mean": mean, "published_std": std,
                     "difference": ci.mean - mean, "published_in_ci": inside})
    return pd.DataFrame(rows)


def _display(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "loss": table["loss"], "noise": table["noise_kind"] + " " + table["label_noise"].map("{:g}".format),
        "data": table["data_source"], "seeds": table["seeds"],
        "lossbench mean [95% CI]": [f"{m:.2f} [{lo:.2f}, {hi:.2f}]" if lo == lo else f"{m:.2f} (one seed: no interval)"
                                    for m, lo, hi in zip(table["lossbench_mean"], table["lossbench_low"],
                                                         table["lossbench_high"])],
        "published mean ± std": [f"{m:.2f} ± {s:.2f}" for m, s in zip(
            table["published_mean"], table["published_std"])],
        "difference": table["difference"].map("{:+.2f}".format),
        "published in CI": table["published_in_ci"].map({True: "yes", False: "no"}).fillna("n/a (1 seed)"),
    })


def published_section(completed: pd.DataFrame, directory: Path = PUBLISHED_DIR) -> Section | None:
    """A section with one table per published table named by the completed runs; None if none is."""
    if "cfg.published" not in completed or completed["cfg.published"].isna().all():
        return None
    section = Section("Versus published")
    for name, runs in completed.dropna(subset=["cfg.published"]).groupby("cfg.published"):
        published = read_published(name, directory)
        if published is None:
            section.blocks.append(Paragraph(f"Runs name the published table `{name}`, but "
                                            f"results/published/{name}.csv is not in this checkout."))
            continue
        table = versus(runs, published)
        if table.empty:
            continue
        caption = (f"Test accuracy (%) at the last epoch: lossbench's mean [95% t-CI over seeds] beside "
                   f"`{name}` (results/published/{name}.csv, mean ± std over its runs); difference = "
                   "lossbench − published.")
        if (table["data_source"] != "full").any():
            caption += (" Rows on the `sample` data trained on lossbench's offline sample (MNIST's: 4,000 "
                        "training digits), not the full training set of the published runs: a different "
                        "experiment, shown for the trend, not as a reproduction.")
        section.blocks.append(Table(f"versus_published_{name}", _display(table), table, caption))
    return section if section.blocks else None
