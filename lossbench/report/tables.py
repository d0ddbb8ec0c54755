"""The numbers of one group as tidy DataFrames (raw floats, written as CSV), and their display form.

Every statistic is over seeds: several completed runs with the same (loss, seed) in a group (a
rerun) are averaged into one value first, so "n" always counts seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lossbench.report.groups import Group, loss_sort_key
from lossbench.report.stats import paired_test, t_interval


def per_seed(runs: pd.DataFrame, column: str) -> pd.Series:
    """One value per seed (duplicates averaged), indexed by seed, sorted."""
    values = pd.to_numeric(runs[column], errors="coerce").astype(float)
    return values.groupby(runs["seed"]).mean().sort_index()


def duplicate_seeds(group: Group) -> list[str]:
    """'bce seed 0 (2 runs)' for every (loss, seed) with more than one run in the group."""
    counts = group.runs.groupby(["loss", "seed"]).size()
    return [f"{loss} seed {seed} ({n} runs)" for (loss, seed), n in counts.items() if n > 1]


def metric_columns(group: Group) -> list[str]:
    return [m for m in group.kind.metrics if f"test_{m}" in group.runs.columns]


def final_metrics(group: Group) -> pd.DataFrame:
    """Per loss: n seeds and, per test metric, mean and 95% t-CI over seeds."""
    rows = []
    for loss in group.losses:
        runs = group.runs[group.runs["loss"] == loss]
        row = {"loss": loss, "n_seeds": runs["seed"].nunique()}
        for metric in metric_columns(group):
            ci = t_interval(per_seed(runs, f"test_{metric}").to_numpy())
            row |= {f"{metric}_mean": ci.mean, f"{metric}_ci_low": ci.low,
                    f"{metric}_ci_high": ci.high, f"{metric}_n": ci.n}
        rows.append(row)
    return pd.DataFrame(rows)


def seed_values(group: Group, metric: str) -> pd.DataFrame:
    """Long table (loss, seed, value) of a test metric: the points behind the dot plot."""
    frames = []
    for loss in group.losses:
        values = per_seed(group.runs[group.runs["loss"] == loss], f"test_{metric}")
        frames.append(pd.DataFrame({"loss": loss, "seed": values.index, "value": values.to_numpy()}))
    return pd.concat(frames, ignore_index=True)


def paired_comparisons(group: Group) -> pd.DataFrame:
    """Each loss minus the baseline, paired by seed, per test metric."""
    baseline = group.baseline
    base_runs = group.runs[group.runs["loss"] == baseline]
    rows = []
    if base_runs.empty:
        return pd.DataFrame(rows)
    for loss in group.losses:
        if loss == baseline:
            continue
        runs = group.runs[group.runs["loss"] == loss]
        for metric in metric_columns(group):
            x, b = per_seed(runs, f"test_{metric}"), per_seed(base_runs, f"test_{metric}")
            common = x.index.intersection(b.index).sort_values()
            p = paired_test(x[common].to_numpy(), b[common].to_numpy())
            rows.append({
                "loss": loss, "baseline": baseline, "metric": metric, "n_pairs": p.n,
                "mean_diff": p.mean_diff, "ci_low": p.low, "ci_high": p.high,
                "effect_size_dz": p.effect_size, "ttest_p": p.t_p, "wilcoxon_p": p.wilcoxon_p,
                "significant": p.significant, "identical": p.identical, "note": p.note,
            })
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for column in ("ttest_p", "wilcoxon_p"):
        frame[column] = frame[column].astype(float)  # None -> NaN; the note says why
    return frame


def curves(group: Group, runs: pd.DataFrame) -> pd.DataFrame:
    """Per loss, curve and epoch: mean and 95% t-CI over seeds, plus min and max.

    Curves: train loss_value, test loss_value, test <primary metric>.
    """
    if "split" not in runs.columns:
        return pd.DataFrame()
    rows = runs[runs["run"].isin(group.runs["run"])].merge(
        group.runs[["run", "loss", "seed"]], on="run", suffixes=("_metrics", "")
    )
    wanted = [("train", "loss_value"), ("test", "loss_value"), ("test", group.kind.metric)]
    out = []
    for loss in group.losses:
        for split, column in wanted:
            part = rows[(rows["loss"] == loss) & (rows["split"] == split)]
            if column not in part.columns or part.empty:
                continue
            by_seed = part.groupby(["epoch", "seed"])[column].mean()
            for epoch, values in by_seed.groupby(level="epoch", sort=True):
                ci = t_interval(values.to_numpy())
                finite = values[np.isfinite(values)]
                out.append({
                    "loss": loss, "split": split, "column": column, "epoch": int(epoch),
                    "n_seeds": ci.n, "mean": ci.mean, "ci_low": ci.low, "ci_high": ci.high,
                    "min": finite.min() if len(finite) else math.nan,
                    "max": finite.max() if len(finite) else math.nan,
                })
    return pd.DataFrame(out)


def reliability(group: Group, calibration: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reliability bins pooled over seeds (counts summed), and the pooled ECE per loss.

    Pooled bin confidence / accuracy are count-weighted means over runs;
    ECE = sum_b count_b * |accuracy_b - confidence_b| / sum_b count_b.
    """
    if "bin" not in calibration.columns:
        return pd.DataFrame(), pd.DataFrame()
    if "scheme" in calibration.columns:  # equal-mass bins differ from run to run: never pooled by index
        calibration = calibration[calibration["scheme"] == "equal_width"]
    rows = calibration[calibration["run"].isin(group.runs["run"])].merge(
        group.runs[["run", "loss", "seed"]], on="run", suffixes=("_calibration", "")
    )
    if rows.empty:
        return pd.DataFrame(), pd.DataFrame()
    rows = rows.assign(
        conf_sum=rows["confidence"].fillna(0) * rows["count"],
        acc_sum=rows["accuracy"].fillna(0) * rows["count"],
    )
    bins = rows.groupby(["loss", "bin"], sort=False).agg(
        bin_lower=("bin_lower", "first"), bin_upper=("bin_upper", "first"),
        count=("count", "sum"), conf_sum=("conf_sum", "sum"), acc_sum=("acc_sum", "sum"),
    ).reset_index()
    nonempty = bins["count"] > 0
    bins["confidence"] = (bins["conf_sum"] / bins["count"]).where(nonempty)
    bins["accuracy"] = (bins["acc_sum"] / bins["count"]).where(nonempty)
    bins = bins.drop(columns=["conf_sum", "acc_sum"])
    bins = bins.sort_values(["loss", "bin"], key=_loss_key).reset_index(drop=True)
    ece = []
    for loss in group.losses:
        b = bins[(bins["loss"] == loss) & (bins["count"] > 0)]
        total = b["count"].sum()
        gap = (b["count"] * (b["accuracy"] - b["confidence"]).abs()).sum()
        ece.append({"loss": loss, "n_seeds": rows.loc[rows["loss"] == loss, "seed"].nunique(),
                    "count": int(total), "pooled_ece": gap / total if total else math.nan})
    return bins, pd.DataFrame(ece)


def _loss_key(column: pd.Series) -> pd.Series:
    if column.name == "loss":
        return column.map(lambda loss: loss_sort_key(loss))
    return column


def epoch_times(group: Group, runs: pd.DataFrame) -> pd.DataFrame:
    """Per loss: mean train epoch_time_s (each run's mean over its epochs), 95% t-CI over seeds."""
    if "split" not in runs.columns:
        return pd.DataFrame()
    train = runs[(runs["split"] == "train") & runs["run"].isin(group.runs["run"])]
    if "epoch_time_s" not in train.columns or train.empty:
        return pd.DataFrame()
    per_run = train.groupby("run")["epoch_time_s"].mean()
    info = group.runs.set_index("run")[["loss", "seed"]].join(per_run, how="inner")
    rows = []
    for loss in group.losses:
        values = info[info["loss"] == loss].groupby("seed")["epoch_time_s"].mean().sort_index()
        ci = t_interval(values.to_numpy())
        rows.append({"loss": loss, "n_seeds": ci.n, "epoch_time_s_mean": ci.mean,
                     "ci_low": ci.low, "ci_high": ci.high})
    return pd.DataFrame(rows)


def excluded_runs(summary: pd.DataFrame) -> pd.DataFrame:
    """Runs left out of the statistics (status other than completed), sorted by run."""
    excluded = summary[summary["status"] != "completed"].sort_values("run")
    columns = ["run", "status", "loss", "dataset", "data_source", "seed",
               "epochs_completed", "epochs", "error"]
    return excluded[[c for c in columns if c in excluded.columns]].reset_index(drop=True)


# ---- display: fixed float formats, so the markdown is byte-for-byte reproducible ----

def fmt(value, spec: str = ".4f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value, spec)


def fmt_p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    return "<0.0001" if p < 0.0001 else f"{p:.4f}"


def fmt_ci(mean, low, high, spec: str = ".4f") -> str:
    if isinstance(low, float) and math.isnan(low):
        return fmt(mean, spec)
    return f"{fmt(mean, spec)} [{fmt(low, spec)}, {fmt(high, spec)}]"


def show_final(final: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    rows = []
    for _, r in final.iterrows():
        row = {"loss": r["loss"], "n seeds": str(int(r["n_seeds"]))}
        for m in metrics:
            cell = fmt_ci(r[f"{m}_mean"], r[f"{m}_ci_low"], r[f"{m}_ci_high"])
            if int(r[f"{m}_n"]) != int(r["n_seeds"]):
                cell += f" (n={int(r[f'{m}_n'])})"
            row[f"{m} (95% CI)"] = cell
        rows.append(row)
    return pd.DataFrame(rows)


def show_paired(paired: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in paired.iterrows():
        rows.append({
            "loss": r["loss"], "metric": r["metric"], "n pairs": str(int(r["n_pairs"])),
            "difference vs " + r["baseline"] + " (95% CI)": fmt_ci(
                r["mean_diff"], r["ci_low"], r["ci_high"], "+.4f"),
            "t-test p": fmt_p(r["ttest_p"]), "Wilcoxon p": fmt_p(r["wilcoxon_p"]),
            "note": r["note"],
        })
    return pd.DataFrame(rows)


def show_times(times: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([
        {"loss": r["loss"], "n seeds": str(int(r["n_seeds"])),
         "s / epoch (95% CI)": fmt_ci(r["epoch_time_s_mean"], r["ci_low"], r["ci_high"], ".3f")}
        for _, r in times.iterrows()
    ])


def show_ece(ece: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([
        {"loss": r["loss"], "n seeds": str(int(r["n_seeds"])), "predictions": str(int(r["count"])),
         "pooled ECE": fmt(r["pooled_ece"])}
        for _, r in ece.iterrows()
    ])


def show_excluded(excluded: pd.DataFrame) -> pd.DataFrame:
    def text(value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        value = " ".join(str(value).split())  # one line: errors can hold tracebacks
        return value if len(value) <= 300 else value[:297] + "..."

    return excluded.map(text)
