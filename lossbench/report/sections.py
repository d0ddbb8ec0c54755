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
from lossbench.report.findings import findings, method_sentence, no_comparison, plural
from lossbench.report.groups import Group, find_groups
from lossbench.report.load import Inputs
from lossbench.report.paired import all_pairs, paired_comparisons
from lossbench.report.stability import stability_section
from lossbench.report.stats import ADJUSTMENTS, BOOTSTRAP_RESAMPLES, WILCOXON_MIN_PAIRS
from lossbench.report.views import Views, views


def method(adjust: str) -> str:
    return (
        "Statistics use completed runs only. Each group's test metrics are shown in two views: "
        "`last`, each run's last epoch (a fixed budget), and `selected`, the epoch where the "
        "run's validation primary metric (acc single-label, mAP multi-label) peaked first "
        "(lossbench.selection; never chosen on test), where runs have validation rows. 95% CIs "
        "of means are Student-t intervals over seeds (mean ± t·s/√n, scipy.stats.t); a (loss, "
        "seed) with several runs in a group is averaged first. Paired comparisons pair each loss "
        "with the baseline (`ce` single-label, `bce_logits` multi-label) by seed: mean "
        "difference, d_z (mean over SD of the paired differences), paired t-test "
        "(scipy.stats.ttest_rel) and Wilcoxon signed-rank test (scipy.stats.wilcoxon, "
        "two-sided, zero differences dropped; it cannot reach p < 0.05 with fewer than "
        f"{WILCOXON_MIN_PAIRS} non-zero pairs). For accuracy where runs stored their per-example "
        "test predictions, the CI of the difference is a hierarchical paired bootstrap (seeds, "
        "then test examples within each seed; "
        f"{BOOTSTRAP_RESAMPLES:,} resamples, fixed seed) and McNemar's exact test "
        "(statsmodels) runs on the per-example correctness pooled over paired seeds; every "
        "other CI covers the initialisation seeds only, and each table says which. Losses "
        "bitwise identical on every paired seed are reported once, as an identity check. "
        f"p-values are {ADJUSTMENTS[adjust]}-adjusted (statsmodels multipletests) within each "
        "family of one group, one metric and one view: McNemar's p where every comparison in "
        "the family has one, else the t-test's. Divergence counts are compared with Fisher's "
        "exact test (scipy.stats.fisher_exact). Learning-curve bands are mean ± 95% t-CI over "
        "seeds."
    )


@dataclass
class GroupResults:
    group: Group
    views: Views
    final: pd.DataFrame  # per view and loss
    points: pd.DataFrame  # per-seed primary metric in the primary view
    paired: pd.DataFrame  # per loss, metric and view: paired.COLUMNS
    ece_pairs: pd.DataFrame  # every two losses on test ECE in the primary view
    divergence: pd.DataFrame  # diverged runs per loss vs the baseline's
    curves: pd.DataFrame
    bins: pd.DataFrame
    ece: pd.DataFrame
    times: pd.DataFrame
    excluded: pd.DataFrame  # the group's runs that did not complete


def analyse(group: Group, inputs: Inputs, adjust: str = "holm") -> GroupResults:
    bins, ece = tables.reliability(group, inputs.calibration)
    seen = views(group, inputs.runs)
    primary = seen.frames[seen.primary]
    excluded = group.members(inputs.excluded)
    return GroupResults(
        group=group,
        views=seen,
        final=tables.final_metrics(group, seen.frames),
        points=tables.seed_values(group, primary, group.kind.metric)
        if f"test_{group.kind.metric}" in primary.columns else pd.DataFrame(),
        paired=paired_comparisons(group, seen.frames, inputs.predictions, adjust),
        ece_pairs=all_pairs(group, primary, "ece", adjust),
        divergence=tables.divergence(group, excluded, adjust),
        curves=tables.curves(group, inputs.runs),
        bins=bins,
        ece=ece,
        times=tables.epoch_times(group, inputs.runs),
        excluded=excluded,
    )


def count_text(summary: pd.DataFrame) -> str:
    counts = summary["status"].value_counts()
    order = sorted(counts.index, key=lambda s: (s != "completed", s))
    return f"{len(summary)} runs: " + ", ".join(f"{counts[s]} {s}" for s in order)


def describe_sources(inputs: Inputs) -> str:
    return "; ".join(f"`{label}` ({count_text(inputs.summary[inputs.summary['source'] == label])})"
                     for label in inputs.sources)


def overview(inputs: Inputs, results: list[GroupResults], stress: Inputs | None,
             adjust: str = "holm") -> Section:
    groups = [f"{r.group.title}: {plural(len(r.group.runs), 'completed run')}, losses "
              + ", ".join(f"`{loss}`" for loss in r.group.losses) for r in results]
    excluded = len(inputs.excluded)
    blocks = [
        Paragraph("Inputs: " + describe_sources(inputs) + "."),
        Paragraph(method(adjust)),
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
        Section(r.group.title, [Bullets(findings(r.group, r.final, r.paired, r.ece_pairs,
                                                 r.divergence, r.excluded, list(r.views.frames),
                                                 r.views.note))])
        for r in results
    ]
    return Section("Findings", [Paragraph("Generated from the tables below.")], subsections)


def views_text(r: GroupResults) -> str:
    if "selected" not in r.views.frames:
        return r.views.note
    text = ("Two views: `last` is each run's last epoch (a fixed budget); `selected` is the epoch "
            f"where the run's validation {r.group.kind.metric} peaked first, never chosen on "
            "test.")
    return text + (f" {r.views.note}" if r.views.note else "")


def final_caption(group: Group, view: str) -> str:
    if view == "last":
        return ("View `last`: test metrics at each run's last epoch (a fixed budget), mean and 95% "
                "t-CI over seeds; `epoch` is the last epoch (a range if runs stopped early).")
    return (f"View `selected`: test metrics at the epoch where validation {group.kind.metric} "
            "peaked first (never chosen on test), mean and 95% t-CI over seeds; `epoch` is the "
            "range of selected epochs.")


def paired_caption(group: Group, view: str, paired: pd.DataFrame) -> str:
    """Says what each CI covers and which p the adjusted column adjusts."""
    covers: dict[str, list[str]] = {}
    for metric, text in paired[paired["ci_covers"] != ""][["metric", "ci_covers"]].itertuples(
            index=False):
        if metric not in covers.setdefault(text, []):
            covers[text].append(metric)
    ci = "; ".join(f"for {', '.join(metrics)} it covers {text}" for text, metrics in covers.items())
    tested = paired[~paired["identical"]]
    adjusted = (f" p adj: {ADJUSTMENTS[paired['adjust'].iloc[0]]}-adjusted within each metric of "
                f"this view, adjusting {method_sentence(tested)}." if len(tested) else "")
    return (f"View `{view}`: each loss minus `{group.baseline}`, paired by seed; difference with "
            f"its 95% CI ({ci or 'none computed'}).{adjusted}")


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

    blocks = [Paragraph(views_text(r))]
    for view, final in r.final.groupby("view", sort=False):
        blocks.append(Table(f"{slug}-final-metrics-{view}", tables.show_final(final, metrics),
                            final, final_caption(g, view)))
    duplicates = tables.duplicate_seeds(g)
    if duplicates:
        blocks.append(Paragraph("Averaged before the statistics (several runs of one loss and "
                                "seed): " + ", ".join(duplicates) + "."))
    if not r.points.empty:
        primary = r.views.primary
        blocks.append(Figure(f"{slug}-final-{kind.metric}",
                             figures.final_metric(r.final[r.final["view"] == primary], r.points,
                                                  kind.metric),
                             f"Test {kind.metric} per loss in the `{primary}` view: mean with 95% "
                             "t-CI, grey dots are single seeds.", r.points))
    subsections.append(Section("Final test metrics", blocks))

    if r.paired.empty:
        blocks = [Paragraph(no_comparison(g))]
    else:
        blocks = [Table(f"{slug}-paired-vs-{g.baseline}-{view}", tables.show_paired(paired),
                        paired, paired_caption(g, view, paired))
                  for view, paired in r.paired.groupby("view", sort=False)]
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


def build_document(inputs: Inputs, probe: Path | None = None, stress: Inputs | None = None,
                   adjust: str = "holm") -> Document:
    results = [analyse(g, inputs, adjust) for g in find_groups(inputs.completed)]
    sections = [overview(inputs, results, stress, adjust), findings_section(results)]
    sections += [group_section(r) for r in results]
    for optional in (stability_section(stress if stress is not None else inputs, probe),):
        if optional is not None:
            sections.append(optional)
    sections.append(excluded_section(inputs, stress))
    return Document("lossbench report", sections)
