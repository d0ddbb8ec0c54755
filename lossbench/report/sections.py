"""Assemble the report: the numbers of each group, then the sections in page order.

Extension point: a section is a function of the Inputs (and options) returning a Section or None
(nothing to show). `build_document` lists them in page order; the Stability section is one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lossbench.report import figures, tables
from lossbench.report.document import Bullets, Document, Figure, Paragraph, Section, Table
from lossbench.report.findings import findings, no_comparison, plural
from lossbench.report.groups import Group, find_groups
from lossbench.report.load import Inputs
from lossbench.report.stability import stability_section
from lossbench.report.stats import WILCOXON_MIN_PAIRS

METHOD = (
    "Statistics use completed runs only. 95% CIs are Student-t intervals over seeds "
    "(mean ± t·s/√n, scipy.stats.t); a (loss, seed) with several runs in a group is averaged "
    "first. Paired comparisons pair each loss with the baseline (`ce` single-label, `bce_logits` "
    "multi-label) by seed: mean difference with its t-CI, paired t-test (scipy.stats.ttest_rel) "
    "and Wilcoxon signed-rank test (scipy.stats.wilcoxon, two-sided, zero differences dropped; it "
    f"cannot reach p<0.05 with fewer than {WILCOXON_MIN_PAIRS} non-zero pairs). No correction for "
    "multiple comparisons. Learning-curve bands are mean ± 95% t-CI over seeds."
)


@dataclass
class GroupResults:
    group: Group
    final: pd.DataFrame
    points: pd.DataFrame  # per-seed primary metric
    paired: pd.DataFrame
    curves: pd.DataFrame
    bins: pd.DataFrame
    ece: pd.DataFrame
    times: pd.DataFrame
    excluded: pd.DataFrame  # the group's runs that did not complete


def analyse(group: Group, inputs: Inputs) -> GroupResults:
    bins, ece = tables.reliability(group, inputs.calibration)
    return GroupResults(
        group=group,
        final=tables.final_metrics(group),
        points=tables.seed_values(group, group.kind.metric)
        if f"test_{group.kind.metric}" in group.runs.columns else pd.DataFrame(),
        paired=tables.paired_comparisons(group),
        curves=tables.curves(group, inputs.runs),
        bins=bins,
        ece=ece,
        times=tables.epoch_times(group, inputs.runs),
        excluded=group.members(inputs.excluded),
    )


def count_text(summary: pd.DataFrame) -> str:
    counts = summary["status"].value_counts()
    order = sorted(counts.index, key=lambda s: (s != "completed", s))
    return f"{len(summary)} runs: " + ", ".join(f"{counts[s]} {s}" for s in order)


def describe_sources(inputs: Inputs) -> str:
    return "; ".join(f"`{label}` ({count_text(inputs.summary[inputs.summary['source'] == label])})"
                     for label in inputs.sources)


def overview(inputs: Inputs, results: list[GroupResults], stress: Inputs | None) -> Section:
    groups = [f"{r.group.title}: {plural(len(r.group.runs), 'completed run')}, losses "
              + ", ".join(f"`{loss}`" for loss in r.group.losses) for r in results]
    excluded = len(inputs.excluded)
    blocks = [
        Paragraph("Inputs: " + describe_sources(inputs) + "."),
        Paragraph(METHOD),
        Paragraph(f"{plural(excluded, 'run')} left out of the statistics, listed under "
                  "Excluded runs."
                  if excluded else "Every run completed; none left out."),
        Paragraph("Groups (each compared on its own; full data and samples are never mixed):"),
        Bullets(groups),
    ]
    if stress is not None:
        blocks.insert(1, Paragraph("Stress sweeps, in the Stability section only: "
                                   + describe_sources(stress) + "."))
    return Section("Overview", blocks)


def findings_section(results: list[GroupResults]) -> Section:
    subsections = [
        Section(r.group.title, [Bullets(findings(r.group, r.final, r.paired, r.ece, r.excluded))])
        for r in results
    ]
    return Section("Findings", [Paragraph("Generated from the tables below.")], subsections)


def group_section(r: GroupResults) -> Section:
    g, kind, slug = r.group, r.group.kind, r.group.slug
    metrics = tables.metric_columns(g)
    subsections = []
    intro = []
    if g.settings:
        intro.append(Paragraph("Settings of this group (config values that differ between "
                               "runs of this dataset, so each combination is compared on its "
                               "own): "
                               + ", ".join(f"`{k}={v}`" for k, v in g.settings) + "."))

    blocks = [Table(f"{slug}-final-metrics", tables.show_final(r.final, metrics), r.final,
                    "Final test metrics (last epoch), mean and 95% t-CI over seeds.")]
    duplicates = tables.duplicate_seeds(g)
    if duplicates:
        blocks.append(Paragraph("Averaged before the statistics (several runs of one loss and "
                                "seed): " + ", ".join(duplicates) + "."))
    if not r.points.empty:
        blocks.append(Figure(f"{slug}-final-{kind.metric}",
                             figures.final_metric(r.final, r.points, kind.metric),
                             f"Final test {kind.metric} per loss: mean with 95% t-CI, grey dots "
                             "are single seeds.", r.points))
    subsections.append(Section("Final test metrics", blocks))

    if r.paired.empty:
        blocks = [Paragraph(no_comparison(g))]
    else:
        blocks = [Table(f"{slug}-paired-vs-{g.baseline}", tables.show_paired(r.paired),
                        r.paired, f"Each loss minus `{g.baseline}`, paired by seed.")]
        if g.baseline != kind.baseline:
            blocks.insert(0, Paragraph(f"The {kind.label} baseline `{kind.baseline}` has no "
                                       f"completed run in this group: compared against "
                                       f"`{g.baseline}` instead."))
    subsections.append(Section(f"Paired comparison vs {g.baseline}", blocks))

    if not r.curves.empty:
        subsections.append(Section("Learning curves", [Figure(
            f"{slug}-learning-curves", figures.learning_curves(r.curves, g.losses, kind.metric),
            f"Train loss, test loss and test {kind.metric} per epoch; line = mean over seeds, "
            "band = 95% t-CI over seeds (no band with one seed).", r.curves)]))

    if not r.bins.empty:
        subsections.append(Section("Calibration", [
            Figure(f"{slug}-reliability", figures.reliability(r.bins, r.ece, g.losses),
                   "Reliability diagrams: per confidence bin (15 equal-width bins), accuracy vs "
                   "mean confidence, counts pooled over seeds; dotted = perfect calibration. ECE "
                   "in the legend is computed from the pooled bins.", r.bins),
            Table(f"{slug}-pooled-ece", tables.show_ece(r.ece), r.ece),
        ]))

    if not r.times.empty:
        subsections.append(Section("Time per epoch", [
            Table(f"{slug}-epoch-time", tables.show_times(r.times), r.times,
                  "Train time per epoch (each run's mean over its epochs), mean and 95% t-CI "
                  "over seeds."),
            Figure(f"{slug}-epoch-time", figures.epoch_time(r.times),
                   "Seconds per train epoch per loss, 95% t-CI error bars."),
        ]))
    return Section(g.title, intro, subsections)


def excluded_section(inputs: Inputs, stress: Inputs | None) -> Section:
    summaries = [inputs.summary] + ([stress.summary] if stress is not None else [])
    excluded = tables.excluded_runs(pd.concat(summaries, ignore_index=True))
    if excluded.empty:
        return Section("Excluded runs", [Paragraph("None: every run completed.")])
    return Section("Excluded runs", [Table(
        "excluded-runs", tables.show_excluded(excluded), excluded,
        "Runs that did not complete (failed, interrupted, diverged or still running); left out "
        "of every statistic above.")])


def build_document(inputs: Inputs, probe: Path | None = None, stress: Inputs | None = None) -> Document:
    results = [analyse(g, inputs) for g in find_groups(inputs.completed)]
    sections = [overview(inputs, results, stress), findings_section(results)]
    sections += [group_section(r) for r in results]
    for optional in (stability_section(stress if stress is not None else inputs, probe),):
        if optional is not None:
            sections.append(optional)
    sections.append(excluded_section(inputs, stress))
    return Document("lossbench report", sections)
