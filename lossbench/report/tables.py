"""The numbers of one group as tidy DataFrames (raw floats, written as CSV), and their display form.

Every statistic is over seeds: several completed runs with the same (loss, seed) in a group (a
rerun) are averaged into one value first, so "n" always counts seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lossbench.report.groups import Group, loss_sort_key
from lossbench.losses import LOSSES
from lossbench.training.metrics import CRITERION
from lossbench.report.stats import (ADJUSTMENTS, adjust, divergence_test, ece_bootstrap, ece_floor,
                                    t_interval)


def per_seed(runs: pd.DataFrame, column: str) -> pd.Series:
    """One value per seed (duplicates averaged), indexed by seed, sorted."""
    values = pd.to_numeric(runs[column], errors="coerce").astype(float)
    return values.groupby(runs["seed"]).mean().sort_index()


def duplicate_seeds(group: Group) -> list[str]:
    """'bce seed 0 (2 runs)' for every (loss, seed) with more than one run in the group."""
    counts = group.runs.groupby(["loss", "seed"]).size()
    return [f"{loss} seed {seed} ({n} runs)" for (loss, seed), n in counts.items() if n > 1]


def metric_columns(group: Group) -> list[str]:
    return [m for m in group.metrics if f"test_{m}" in group.runs.columns]


def final_metrics(group: Group, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per view and loss: n seeds, the epochs the view read, and per test metric the mean and
    95% t-CI over seeds."""
    rows = []
    for view, frame in frames.items():
        for loss in group.losses:
            runs = frame[frame["loss"] == loss]
            if runs.empty:
                continue
            epochs = pd.to_numeric(runs["epoch"], errors="coerce")
            row = {"view": view, "loss": loss, "n_seeds": runs["seed"].nunique(),
                   "epoch_min": epochs.min(), "epoch_max": epochs.max()}
            for metric in metric_columns(group):
                column = f"test_{metric}"
                values = per_seed(runs, column).to_numpy() if column in runs.columns else []
                ci = t_interval(values)
                row |= {f"{metric}_mean": ci.mean, f"{metric}_ci_low": ci.low,
                        f"{metric}_ci_high": ci.high, f"{metric}_n": ci.n}
            rows.append(row)
    return pd.DataFrame(rows)


def seed_values(group: Group, frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Long table (loss, seed, value) of a test metric in one view: the dot plot's points."""
    frames = []
    for loss in group.losses:
        values = per_seed(frame[frame["loss"] == loss], f"test_{metric}")
        frames.append(pd.DataFrame({"loss": loss, "seed": values.index, "value": values.to_numpy()}))
    return pd.concat(frames, ignore_index=True)


def divergence(group: Group, excluded: pd.DataFrame, method: str = "holm") -> pd.DataFrame:
    """Per loss with a diverged run (or when the baseline has one): diverged / ended runs of it
    and of the baseline, Fisher's exact p, adjusted over the group's losses. Ended = completed or
    diverged; failed or interrupted runs have no training outcome."""
    diverged = excluded[excluded["status"] == "diverged"].groupby("loss").size()
    if diverged.empty:
        return pd.DataFrame()
    completed = group.runs.groupby("loss").size()
    ended = completed.add(diverged, fill_value=0).astype(int)
    diverged = diverged.reindex(ended.index, fill_value=0).astype(int)
    base = group.baseline
    if base not in ended.index:
        return pd.DataFrame()
    rows = [{"loss": loss, "diverged": int(diverged[loss]), "runs": int(ended[loss]),
             "baseline": base, "baseline_diverged": int(diverged[base]),
             "baseline_runs": int(ended[base]),
             "p_fisher": divergence_test(diverged[loss], ended[loss], diverged[base], ended[base])}
            for loss in sorted(ended.index, key=loss_sort_key)
            if loss != base and (diverged[loss] or diverged[base])]
    table = pd.DataFrame(rows)
    if not table.empty:
        table["p_adj"] = adjust(table["p_fisher"].to_numpy(), method)
        table["adjust"] = method
    return table


def curves(group: Group, runs: pd.DataFrame) -> pd.DataFrame:
    """Per loss, curve and epoch: mean and 95% t-CI over seeds, plus min and max.

    Curves: the criterion's value on train and test, the task's common test metrics (on a scale
    every loss shares: tasks.TaskFacts.common), test <primary metric>.
    """
    if "split" not in runs.columns:
        return pd.DataFrame()
    rows = runs[runs["run"].isin(group.runs["run"])].merge(
        group.runs[["run", "loss", "seed"]], on="run", suffixes=("_metrics", "")
    )
    wanted = [("train", CRITERION), ("test", CRITERION),
              *(("test", m) for m in group.kind.common), ("test", group.kind.metric)]
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
                    "count": int(total), "pooled_ece": gap / total if total else math.nan,
                    **ece_uncertainty(rows[rows["loss"] == loss]),
                    "probabilistic": LOSSES[loss].probabilistic if loss in LOSSES else True})
    return bins, pd.DataFrame(ece)


def ece_uncertainty(rows: pd.DataFrame) -> dict:
    """One loss's per-run reliability bins -> the mean per-run ECE with its bootstrap CI over
    seeds and test examples (stats.ece_bootstrap), and the ECE a perfectly calibrated model
    scores at this test size (stats.ece_floor), averaged over the runs: each run's confidences
    (bin means, repeated by bin count) give its own floor, as each run gives its own ECE."""
    every_bin = sorted(rows["bin"].unique())
    by_run = {name: rows.set_index(["run", "bin"])[name].unstack("bin").reindex(columns=every_bin)
              for name in ("count", "confidence", "accuracy")}
    counts = by_run["count"].fillna(0).to_numpy()
    if not len(counts):
        return {"ece_mean": math.nan, "ece_ci_low": math.nan, "ece_ci_high": math.nan,
                "ece_floor": math.nan}
    ci = ece_bootstrap(counts, by_run["confidence"].to_numpy(), by_run["accuracy"].to_numpy())
    floors = [ece_floor(np.repeat(np.nan_to_num(confidence), count.astype(int))).mean
              for confidence, count in zip(by_run["confidence"].to_numpy(), counts)]
    return {"ece_mean": ci.mean, "ece_ci_low": ci.low, "ece_ci_high": ci.high,
            "ece_floor": float(np.mean(floors))}


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
    """`value` in `spec`; a non-zero value that would print as 0 (-0.0000) gets two significant
    digits instead (-3.2e-06), and an exact 0 prints unsigned."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return format(0.0, spec.lstrip("+"))
    text = format(value, spec)
    if spec.endswith("f") and not any(digit in text for digit in "123456789"):
        return format(value, spec.split(".")[0] + ".1e")
    return text


def fmt_p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    return "<0.0001" if p < 0.0001 else f"{p:.4f}"


def fmt_ci(mean, low, high, spec: str = ".4f") -> str:
    if isinstance(low, float) and math.isnan(low):
        return fmt(mean, spec)
    return f"{fmt(mean, spec)} [{fmt(low, spec)}, {fmt(high, spec)}]"


def epochs_text(low, high) -> str:
    if isinstance(low, float) and math.isnan(low):
        return "—"
    return f"{int(low)}" if low == high else f"{int(low)}–{int(high)}"


def show_final(final: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One view's rows of final_metrics."""
    rows = []
    for _, r in final.iterrows():
        row = {"loss": r["loss"], "n seeds": str(int(r["n_seeds"])),
               "epoch": epochs_text(r["epoch_min"], r["epoch_max"])}
        for m in metrics:
            cell = fmt_ci(r[f"{m}_mean"], r[f"{m}_ci_low"], r[f"{m}_ci_high"])
            if int(r[f"{m}_n"]) != int(r["n_seeds"]):
                cell += f" (n={int(r[f'{m}_n'])})"
            row[f"{m} (95% CI)"] = cell
        rows.append(row)
    return pd.DataFrame(rows)


def improvement_text(r) -> str:
    """P(improvement) with its CI, two decimals."""
    if isinstance(r["p_improvement_low"], float) and math.isnan(r["p_improvement_low"]):
        return fmt(r["p_improvement"], ".2f")
    return fmt_ci(r["p_improvement"], r["p_improvement_low"], r["p_improvement_high"], ".2f")


def show_paired(paired: pd.DataFrame) -> pd.DataFrame:
    """One view's rows of the paired table; an identity check shows once, not once per metric.
    McNemar (test examples pooled over seeds) and Wilcoxon are diagnostics: no verdict reads
    them."""
    adjusted = f"p adj ({ADJUSTMENTS[paired['adjust'].iloc[0]]})"
    rows = []
    for (loss, identical), part in paired.groupby(["loss", "identical"], sort=False):
        if identical:
            r = part.iloc[0]
            rows.append({"loss": loss, "metric": "all", "n seeds": str(int(r["n_seeds"])),
                         "difference (95% CI)": "identical", "k/n": "—", "P(improvement)": "—",
                         "seed t p": "—", adjusted: "—", "verdict": "identical", "MDE": "—",
                         "McNemar p (diagnostic)": "—", "note": r["note"]})
            continue
        for _, r in part.iterrows():
            rows.append({
                "loss": loss, "metric": r["metric"], "n seeds": str(int(r["n_seeds"])),
                "difference (95% CI)": fmt_ci(r["diff"], r["diff_low"], r["diff_high"], "+.4f"),
                "k/n": r["k_of_n"], "P(improvement)": improvement_text(r),
                "seed t p": fmt_p(r["p_t"]), adjusted: fmt_p(r["p_adj"]), "verdict": r["verdict"],
                "MDE": fmt(r["mde"]) if r["verdict"] == "inconclusive" else "—",
                "McNemar p (diagnostic)": fmt_p(r["p_mcnemar"]), "note": r["note"],
            })
    return pd.DataFrame(rows)


def show_verdicts(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The Summary's verdict table: one row per stated verdict."""
    adjusted = f"p adj ({ADJUSTMENTS[verdicts['adjust'].iloc[0]]})"
    return pd.DataFrame([{
        "question": r["question"], "group": r["group"],
        "comparison": f"{r['loss']} − {r['baseline']}", "metric": f"{r['metric']} ({r['view']})",
        "difference (95% CI)": fmt_ci(r["difference"], r["ci_low"], r["ci_high"], "+.4f"),
        "k/n": r["k_of_n"], "P(improvement)": improvement_text(r), adjusted: fmt_p(r["p_adj"]),
        "verdict": r["verdict"] or "not tested",
        "MDE": fmt(r["mde"]) if r["verdict"] == "inconclusive" else "—",
    } for _, r in verdicts.iterrows()])


def show_times(times: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([
        {"loss": r["loss"], "n seeds": str(int(r["n_seeds"])),
         "s / epoch (95% CI)": fmt_ci(r["epoch_time_s_mean"], r["ci_low"], r["ci_high"], ".3f")}
        for _, r in times.iterrows()
    ])


def show_ece(ece: pd.DataFrame) -> pd.DataFrame:
    """ECE beside what chance gives a perfectly calibrated model; losses whose outputs are not
    probabilities are marked, their ECE describes a read-out."""
    return pd.DataFrame([
        {"loss": r["loss"], "n seeds": str(int(r["n_seeds"])), "predictions": str(int(r["count"])),
         "pooled ECE": fmt(r["pooled_ece"]),
         "ECE per run (95% CI)": fmt_ci(r["ece_mean"], r["ece_ci_low"], r["ece_ci_high"]),
         "calibrated model's ECE": fmt(r["ece_floor"]),
         "outputs": "probabilities" if r["probabilistic"] else "not probabilities: not ranked"}
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
