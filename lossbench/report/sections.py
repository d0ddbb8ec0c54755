"""Assemble the report: the numbers of each group, then the sections in page order.

Page order: header lines, Summary (summary_bullets.py), Overview, Setup (setup.py), one section
per question (studies.py: a table, its figure, at most three sentences, then each group's
details), Stability, Appendix (long event tables, excluded runs, the probe's explanations).
Extension point: a section is a function of the Inputs (and options) returning a Section or None
(nothing to show); `build_document` lists them in page order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lossbench.report import figures, tables
from lossbench.report.document import Bullets, Document, Figure, Paragraph, Section, Table
from lossbench.report.findings import no_comparison, plural
from lossbench.report.groups import TASKS, Group, find_groups, format_value
from lossbench.report.load import Inputs
from lossbench.report.setup import header_lines, setup_section
from lossbench.report.stability import (stability_appendix, stability_baseline, stability_section,
                                        stress_groups)
from lossbench.report.stability_verdicts import verdict_table
from lossbench.report.stats import WILCOXON_MIN_PAIRS
from lossbench.report.studies import STUDIES, primary_table, study_blocks, study_of
from lossbench.report.summary_bullets import (MAX_BULLETS, paired_candidates, select,
                                              stability_candidates)

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


def everything(inputs: Inputs, stress: Inputs | None) -> pd.DataFrame:
    """Every run the report read, compared and stress runs alike."""
    return pd.concat([inputs.summary] + ([stress.summary] if stress is not None else []),
                     ignore_index=True)


def overview(inputs: Inputs, results: list[GroupResults], stress: Inputs | None) -> Section:
    groups = [f"{r.group.title}: {plural(len(r.group.runs), 'completed run')}, losses "
              + ", ".join(f"`{loss}`" for loss in r.group.losses) for r in results]
    left_out = len(inputs.excluded)
    unfinished = everything(inputs, stress)
    unfinished = len(unfinished[unfinished["status"] != "completed"])
    if not unfinished:
        status = "Every run completed; none is left out."
    else:
        status = (f"{plural(left_out, 'compared run')} did not complete and "
                  f"{'is' if left_out == 1 else 'are'} left out of the comparisons"
                  if left_out else "Every compared run completed")
        if stress is not None:
            status += ("; stress runs that diverged are results in Stability, not left out")
        status += f". All {unfinished} runs that did not complete are listed in the appendix (Excluded runs)."
    blocks = [
        Paragraph("Inputs: " + describe_sources(inputs) + "."),
        Paragraph(status),
        Paragraph("Groups (each compared on its own; full data and samples are never mixed):"),
        Bullets(groups),
    ]
    if stress is not None:
        blocks.insert(1, Paragraph("Stress sweeps, in the Stability section only: "
                                   + describe_sources(stress) + "."))
    return Section("Overview", blocks)


def condition(group: Group) -> str:
    """Under what a group's verdicts hold: its learning rate and epochs, or tuned per loss (the
    group's other settings are in its title)."""
    runs = group.runs
    if "experiment" in runs and runs["experiment"].astype(str).str.contains("tuned").any():
        return "tuned per loss"
    lrs = sorted({format_value(v) for v in runs.get("cfg.optim.lr", [])})
    epochs = sorted({format_value(v) for v in runs.get("cfg.trainer.epochs", [])})
    return (f"a shared lr of {' / '.join(lrs) or 'unknown'} at "
            f"{' / '.join(epochs) or '?'} epoch{'' if epochs == ['1'] else 's'}")


def by_study(inputs: Inputs, results: list[GroupResults]) -> dict[str, list[GroupResults]]:
    """Study key -> its groups, in page order. A run's study is read from its whole DIR (the
    clean runs of a noise sweep belong to the noise study), so from every summary row; a group
    pooling runs of several studies (identical configs in two DIRs) goes to the most common."""
    study = inputs.summary.assign(study=study_of(inputs.summary)).set_index("run")["study"]
    out: dict[str, list[GroupResults]] = {key: [] for key in STUDIES}
    for r in results:
        counts = study.reindex(r.group.runs["run"]).value_counts()
        out[max(STUDIES, key=lambda k: (counts.get(k, 0), -list(STUDIES).index(k)))].append(r)
    return {key: mine for key, mine in out.items() if mine}


def short_title(group: Group, siblings: list[Group]) -> str:
    """A group named by its data and only the settings that differ between its study's groups
    of the same data."""
    siblings = [g for g in siblings if (g.dataset, g.data_source) == (group.dataset, group.data_source)]
    differ = {k for g in siblings for k, v in g.settings
              if any(dict(h.settings).get(k) != v for h in siblings)}
    named = [f"{k}={v}" for k, v in group.settings if k in differ]
    return f"{group.dataset} / {group.data_source}" + (f", {', '.join(named)}" if named else "")


def summary_section(studies: dict[str, list[GroupResults]], stress: Inputs | None) -> Section:
    candidates, order = [], 0
    for study, (key, mine) in enumerate(studies.items()):
        siblings = [r.group for r in mine]
        for r in mine:
            order += 1
            if not r.paired.empty:
                title = f"{STUDIES[key]}, {short_title(r.group, siblings)}"
                candidates += paired_candidates(study, order, title, condition(r.group),
                                                r.paired, r.group.kind.metric)
    if stress is not None:
        groups, _ = stress_groups(stress)
        for title, _, part, task, _ in groups:
            verdicts = verdict_table(part, stability_baseline(part, TASKS[task].baseline),
                                     TASKS[task].metric)
            if not verdicts.empty:
                order += 1
                candidates += stability_candidates(len(studies), order, f"Stability, {title}", verdicts)
    bullets = select(candidates)
    intro = (f"At most {MAX_BULLETS} verdicts, generated from the tables below: per question its "
             "largest significant effect (or its largest effect, said to be not significant), then "
             "the largest remaining significant ones. Differences are the loss minus its baseline "
             "(primary metric, or the share of diverged seeds) with the 95% CI; p as the table "
             "corrects it.")
    return Section("Summary", [Paragraph(intro), Bullets(bullets) if bullets else
                               Paragraph("No paired comparison to summarise.")])


def question_sections(inputs: Inputs, studies: dict[str, list[GroupResults]]) -> list[Section]:
    """One section per study present: its table across groups, its figure, one or two sentences,
    then each group's details."""
    sections = []
    every = inputs.summary.assign(study=study_of(inputs.summary))
    completed = every[every["status"] == "completed"]
    for key, mine in studies.items():
        title = STUDIES[key]
        runs = pd.concat([r.group.runs for r in mine], ignore_index=True)
        # the study's own runs, also those pooled into a group of another study
        blocks = study_blocks(key, completed[completed["study"] == key], inputs.runs, inputs.per_class)
        shown, data = primary_table(mine, lambda r: r.group.kind.metric)
        if not blocks and not shown.empty:  # a study without its own table: the primary metric
            blocks.append(Table(f"study-{key}", shown, data, "Primary metric per loss and group "
                                "(last epoch): mean [95% t-CI] over seeds, n = seeds."))
        seeds = int(runs["seed"].nunique())
        blocks.append(Paragraph(
            f"{plural(len(mine), 'group')}, {plural(runs['loss'].nunique(), 'loss', 'losses')}, "
            f"up to {plural(seeds, 'seed')} each, under {condition(mine[0].group)}. "
            "Each group's paired comparison against its baseline follows."))
        sections.append(Section(title, blocks, [group_section(r) for r in mine]))
    return sections


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
            f"Criterion value per epoch, train and test, one panel per loss family (the softmax "
            "losses average over N samples, the sigmoid losses over N·C outputs, so their values "
            f"are not comparable), then test {kind.metric} for every loss; line = mean over seeds, "
            "thin lines = 95% t-CI (none with one seed); a loss whose curves equal another's "
            "exactly says so in the legend.", r.curves)]))

    if not r.bins.empty:
        subsections.append(Section("Calibration", [
            Figure(f"{slug}-reliability", figures.reliability(r.bins, r.ece, g.losses,
                                                              multi_label=g.task == "multi_label"),
                   ("Reliability diagrams: per bin of predicted probability (15 equal-width bins, "
                    "every label of every test image), the fraction positive vs the mean predicted "
                    "probability" if g.task == "multi_label" else
                    "Reliability diagrams: per confidence bin (15 equal-width bins), the fraction "
                    "correct vs the mean top-class probability")
                   + ", pooled over seeds; dotted = calibrated; under each, the bin counts (log "
                   "scale). ECE in the legend is computed from the pooled bins.", r.bins),
            Table(f"{slug}-pooled-ece", tables.show_ece(r.ece), r.ece),
        ]))

    if not r.times.empty:
        subsections.append(Section("Time per epoch", [
            Table(f"{slug}-epoch-time", tables.show_times(r.times), r.times,
                  "Train time per epoch (each run's mean over its epochs), mean and 95% t-CI "
                  "over seeds."),
            Figure(f"{slug}-epoch-time", figures.epoch_time(r.times),
                   "Seconds per train epoch per loss, 95% t-CI error bars over seeds. The runs ran "
                   "one after another, so machine load drifts between them: no test compares "
                   "these times (experiments/benchmark.py measures loss cost interleaved)."),
        ]))
    return Section(g.title, intro, subsections)


def excluded_section(inputs: Inputs, stress: Inputs | None) -> Section:
    excluded = tables.excluded_runs(everything(inputs, stress))
    if excluded.empty:
        return Section("Excluded runs", [Paragraph("None: every run completed.")])
    return Section("Excluded runs", [Table(
        "excluded-runs", tables.show_excluded(excluded), excluded,
        "Runs that did not complete (failed, interrupted, diverged or still running); left out "
        "of every comparison (diverged stress runs are counted in Stability).")])


def build_document(inputs: Inputs, probe: Path | None = None, stress: Inputs | None = None) -> Document:
    results = [analyse(g, inputs) for g in find_groups(inputs.completed)]
    stressed = stress if stress is not None else inputs
    stressed_runs = stressed if stress is not None or inputs.steps is not None else None
    studies = by_study(inputs, results)
    sections = [summary_section(studies, stressed_runs), overview(inputs, results, stress),
                setup_section(everything(inputs, stress), METHOD, inputs.tuning)]
    sections += question_sections(inputs, studies)
    stability = stability_section(stressed, probe)
    if stability is not None:
        sections.append(stability)
    appendix = stability_appendix(stressed, probe) + [excluded_section(inputs, stress)]
    sections.append(Section("Appendix", [Paragraph("The long tables: non-finite events, runs "
                                                   "that did not complete, the probe's thresholds.")],
                            appendix))
    return Document("lossbench report", sections, header_lines(everything(inputs, stress)))
