"""The answer to "which loss for this data?": the first section of a which_loss study's report.

Read off the group's paired comparisons against the baseline (report/paired.py), in its primary
view, on the metric its verdicts read: the loss with the largest significant gain, or the
baseline when nothing beats it; what to avoid: losses whose runs diverged (comparison runs or
tuning trials), that are significantly worse, or significantly worse calibrated (the task's calibration score, tasks.TaskFacts).
No new statistics: every number here is a row of the tables further down.
"""

from __future__ import annotations

from typing import Any, Optional

import pandas as pd

from lossbench.training.metrics import METRICS
from lossbench.report.document import Bullets, Paragraph, Section
from lossbench.report.tables import fmt_ci, fmt_p

WHICH_LOSS = "which_loss"  # the preset (conf/experiment/which_loss.yaml) whose report opens with this


def which_loss_groups(results: list[Any]) -> list[Any]:
    """The analysed groups (sections.GroupResults) made of which_loss comparison runs."""
    return [r for r in results if "experiment" in r.group.runs
            and (r.group.runs["experiment"].astype(str) == WHICH_LOSS).any()]


def evidence(row: Any, baseline: str) -> str:
    """`x` vs `ce`: acc +0.0146 [+0.0087, +0.0206], p adj 0.0003 (holm), 5 seeds."""
    return (f"`{row.loss}` vs `{baseline}`: {row.metric} {fmt_ci(row.diff, row.diff_low, row.diff_high, '+.4f')}, "
            f"p adj {fmt_p(row.p_adj)} ({row.adjust}), {int(row.n_seeds)} seeds")


def rows_of(paired: pd.DataFrame, metric: str, view: str) -> pd.DataFrame:
    return paired[(paired["metric"] == metric) & (paired["view"] == view)]


def diverged_losses(r: Any, tuning: Optional[pd.DataFrame]) -> dict[str, str]:
    """loss -> how many of its runs diverged: comparison runs, then tuning trials."""
    found: dict[str, list[str]] = {}
    if not r.divergence.empty:
        for row in r.divergence.itertuples(index=False):
            if row.diverged:
                found.setdefault(row.loss, []).append(f"{row.diverged} of {row.runs} comparison runs")
    if tuning is not None and not tuning.empty:
        mine = tuning[tuning["input_dir"].isin(r.group.runs["input_dir"].unique())] if "input_dir" in tuning else tuning
        for loss, trials in mine.groupby("loss_name", sort=False):
            count = int((trials["status"] == "diverged").sum())
            if count:
                found.setdefault(loss, []).append(f"{count} of {len(trials)} tuning trials")
    return {loss: " and ".join(parts) for loss, parts in found.items()}


def avoid_items(r: Any, primary: pd.DataFrame, calibration: pd.DataFrame,
                tuning: Optional[pd.DataFrame], keep: str = "") -> list[str]:
    """One line per loss to avoid, each reason with its evidence; `keep` (the recommended loss)
    is left out: its calibration is said beside the recommendation."""
    baseline = r.group.baseline
    reasons: dict[str, list[str]] = {}
    for loss, text in diverged_losses(r, tuning).items():
        reasons.setdefault(loss, []).append(f"diverged in {text} (a non-finite loss or gradient)")
    for row in primary[primary["verdict"] == "worse"].itertuples(index=False):
        reasons.setdefault(row.loss, []).append(f"worse, {evidence(row, baseline)}")
    for row in calibration[calibration["verdict"] == "worse"].itertuples(index=False):
        score = METRICS[row.metric].label or row.metric
        reasons.setdefault(row.loss, []).append(f"worse calibrated (test {score} higher), {evidence(row, baseline)}")
    return [f"`{loss}`: " + "; ".join(why) for loss, why in reasons.items() if loss != keep]


def answer(r: Any, primary: pd.DataFrame, calibration: pd.DataFrame) -> list[Any]:
    baseline, metric = r.group.baseline, r.group.verdict_metric
    better = primary[primary["verdict"] == "better"]
    if better.empty:
        tested = primary[~primary["identical"] & primary["diff"].notna()]
        largest = tested.loc[[tested["diff"].abs().idxmax()]] if not tested.empty else tested
        closest = "".join(f" The largest difference: {evidence(row, baseline)}."
                          for row in largest.itertuples(index=False))
        return [Paragraph(f"**`{baseline}` is as good as anything tested**: no loss beat it "
                          f"significantly on test {metric}.{closest}")]
    # every metric a verdict reads here is higher-is-better (acc, balanced_acc, map)
    ranked = better.sort_values("diff", ascending=False)
    best = next(ranked.itertuples(index=False))
    worse_calibrated = calibration[(calibration["loss"] == best.loss) & (calibration["verdict"] == "worse")]
    caveat = "".join(f" Its probabilities are worse calibrated than `{baseline}`'s ({evidence(row, baseline)}): "
                     f"take its decisions, or recalibrate it (temperature scaling) before using its "
                     f"probabilities." for row in worse_calibrated.itertuples(index=False))
    blocks: list[Any] = [Paragraph(f"**Use `{best.loss}`**: it beats `{baseline}` on test {metric}. "
                                   f"Evidence: {evidence(best, baseline)}.{caveat}")]
    if len(ranked) > 1:
        blocks.append(Paragraph("Also significantly better than the baseline (not tested against "
                                "each other): " + "; ".join(evidence(row, baseline)
                                                           for row in ranked.iloc[1:].itertuples(index=False)) + "."))
    return blocks


def coverage(r: Any, tuning: Optional[pd.DataFrame], view: str) -> str:
    runs = r.group.runs
    budget = (f"each tuned with {int(tuning['budget'].iloc[0])} trials on the validation split"
              if tuning is not None and not tuning.empty else "at the settings given")
    model = runs["cfg.model.name"].iloc[0] if "cfg.model.name" in runs else "the model"
    epochs = runs["cfg.trainer.epochs"].iloc[0] if "cfg.trainer.epochs" in runs else "?"
    return (f"For {r.group.dataset} / {r.group.data_source} ({r.group.kind.label}), model `{model}`, "
            f"{epochs} epoch{'' if str(epochs) == '1' else 's'}: {len(r.group.losses)} losses, {budget}, then compared on the test split "
            f"over {runs['seed'].nunique()} seeds (each on its own data split), in the `{view}` view; "
            "p adjusted within each metric, a verdict needs p adj < 0.05 and a CI excluding 0. It "
            "holds for this data, model and budget; the sections below have every number.")


def recommendation_section(results: list[Any], tuning: Optional[pd.DataFrame]) -> Optional[Section]:
    """The report's first section for a which_loss study; None for any other report."""
    blocks: list[Any] = []
    for r in which_loss_groups(results):
        view = r.views.primary
        if r.paired.empty:
            blocks.append(Paragraph(f"{r.group.title}: no paired comparison (a single loss, or no "
                                    "completed runs of the baseline), so no recommendation."))
            continue
        primary = rows_of(r.paired, r.group.verdict_metric, view)
        calibration = rows_of(r.paired, r.group.kind.calibration, view)
        said = answer(r, primary, calibration)
        best = primary[primary["verdict"] == "better"].sort_values("diff", ascending=False)["loss"]
        avoid = avoid_items(r, primary, calibration, tuning, keep=best.iloc[0] if len(best) else "")
        blocks += said
        blocks.append(Paragraph("Avoid:" if avoid else f"Nothing to avoid: no loss diverged, or was "
                                f"significantly worse or worse calibrated than `{r.group.baseline}`."))
        if avoid:
            blocks.append(Bullets(avoid))
        blocks.append(Paragraph(coverage(r, tuning, view)))
    return Section("Recommendation", blocks) if blocks else None
