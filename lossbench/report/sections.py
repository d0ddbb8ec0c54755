"""Assemble the report: the numbers of each group, then the pages and their sections.

The main page (what a reader needs first): header lines and the limitations box (limits.py), the
recommendation of a which_loss study, the Summary (summary_bullets.py), one forest plot of every
declared effect (forest.py), per question one compact table (answers.py), the glossary and the
links to the appendix. Appendix pages (appendix/<name>): per question its study-wide table and
figure and each group's details, all in the question's one view; setup and methods (setup_section.py);
versus published; stability with its long event tables and the probe; every verdict with its
per-seed values; excluded runs.
Extension point: a section is a function of the Inputs (and options) returning a Section or None
(nothing to show); `build_document` places them on their pages."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from lossbench.report import figures, tables
from lossbench.report.answers import answer_table
from lossbench.report.document import Bullets, Document, Figure, PageLinks, Paragraph, Section, Table
from lossbench.report.forest import forest_data, forest_plot
from lossbench.report.glossary import glossary_section
from lossbench.report.limits import limitations
from lossbench.report.render import APPENDIX
from lossbench.report.findings import findings, method_sentence, no_comparison, plural, probabilistic
from lossbench.report.groups import Group, find_groups, format_value, short_title, value_sort_key
from lossbench.report.load import Inputs
from lossbench.report.paired import all_pairs, paired_comparisons
from lossbench.report.published import published_section
from lossbench.report.recommendation import recommendation_section
from lossbench.report.setup_section import STRESS_RUN, header_lines, setup_section
from lossbench.report.stability import StressGroup, stability_appendix, stability_section, stress_groups
from lossbench.report.stats import ADJUSTMENTS, ALPHA, BOOTSTRAP_RESAMPLES, WILCOXON_MIN_PAIRS
from lossbench.report.studies import (STUDIES, VIEW_EPOCH, primary_table, study_blocks, study_of,
                                      tuned_runs)
from lossbench.report.summary_bullets import question_bullets, stability_bullets
from lossbench.report.verdicts import Entry, declared_verdicts, verdict_seeds
from lossbench.report.tuning_section import shared_vs_tuned_blocks, tuning_blocks
from lossbench.report.views import Views, views


def method(adjust: str) -> str:
    return (
        "Statistics use completed runs only; the seed (one training run) is the unit of "
        "replication, and a (loss, seed) with several runs in a group is averaged first. Each "
        "question reads one view: `selected`, the epoch where the run's validation selection "
        "metric (trainer.select_on; acc single-label, mAP multi-label unless declared) peaked "
        "first (lossbench.training.selection; never chosen on test), or `last`, each run's last epoch "
        "(a fixed budget), as its preset declares. 95% CIs of means are Student-t intervals over "
        "seeds. Paired comparisons pair each loss with the question's baseline by seed. Every "
        "seed is scored on the same test examples, so for accuracy where runs stored their "
        "per-example test predictions the CI and p of a difference come from a crossed t-test: "
        "seeds and test examples as crossed random effects (a two-way ANOVA's variance of the "
        "mean, never below the seed-level t's, Satterthwaite degrees of freedom); every other "
        "CI is the paired t-interval over seeds, which covers the seeds on this test set only, "
        "and each table says which. Where runs set dataset.split_seed per seed, the seed "
        "variation includes the data split. Beside each difference: k/n seeds in its "
        "direction, P(improvement) (rliable's probability of improvement, with its stratified "
        f"bootstrap CI, {BOOTSTRAP_RESAMPLES:,} resamples) and, where inconclusive, the minimum "
        "detectable effect (80% power). Losses that are the same function here (every metric "
        "equal within 1e-6 and the same per-example correctness on every paired seed) are "
        f"reported once, as an identity check. p-values are {ADJUSTMENTS[adjust]}-adjusted "
        "(statsmodels multipletests) within each family of one group, one metric and one view "
        "in the tables, and across every verdict the Summary states in the Summary. A loss is "
        f"better or worse than the baseline where the adjusted p is below {ALPHA:g}, the "
        f"seed-level paired t-test's p too, and the 95% CI excludes 0; equivalent where the CI "
        "lies inside ± the smallest effect of interest (lossbench.training.metrics.METRICS, or "
        "the question's); else inconclusive. McNemar's test on examples pooled over seeds and "
        f"the Wilcoxon signed-rank test (it cannot reach p < 0.05 with fewer than "
        f"{WILCOXON_MIN_PAIRS} non-zero pairs) are diagnostics only. Divergence counts are "
        "compared with Fisher's exact test. docs/statistics.md states every rule."
    )


@dataclass
class GroupResults:
    group: Group
    views: Views
    final: pd.DataFrame  # per view and loss
    points: pd.DataFrame  # per-seed primary metric in the primary view
    paired: pd.DataFrame  # per loss, metric and view: paired.COLUMNS
    # every two losses whose outputs are probabilities on the calibration score, primary view
    calibration_pairs: pd.DataFrame
    divergence: pd.DataFrame  # diverged runs per loss vs the baseline's
    curves: pd.DataFrame
    bins: pd.DataFrame
    ece: pd.DataFrame
    times: pd.DataFrame
    excluded: pd.DataFrame  # the group's runs that did not complete
    # its name within its study (groups.short_title), set once the studies are known (by_study)
    title: str = ""


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
        calibration_pairs=all_pairs(group, primary[primary["loss"].map(probabilistic)],
                                    group.kind.calibration, adjust),
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


def describe_inputs(inputs: Inputs) -> str:
    return "; ".join(f"`{label}` ({count_text(inputs.summary[inputs.summary['input_dir'] == label])})"
                     for label in inputs.input_dirs)


def everything(inputs: Inputs, stress: Inputs | None, trials: bool = False) -> pd.DataFrame:
    """Every run the report read, compared and stress runs alike; tuning trials only if asked
    (they cost run time but are no result)."""
    return pd.concat([inputs.summary if trials else inputs.compared]
                     + ([stress.summary.assign(**{STRESS_RUN: True})] if stress is not None else []),
                     ignore_index=True)


def overview(inputs: Inputs, studies: dict[str, list[GroupResults]], stress: Inputs | None) -> Section:
    """Inputs, each group under its study and section title, and what was left out."""
    groups = [f"{STUDIES[key]}, {r.title} "
              f"({r.group.kind.label}): {plural(len(r.group.runs), 'completed run')}, losses "
              + ", ".join(f"`{loss}`" for loss in r.group.losses)
              for key, mine in studies.items() for r in mine]
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
        Paragraph("Inputs: " + describe_inputs(inputs) + "."),
        Paragraph(status),
        Paragraph("Groups (each compared on its own; full data and samples are never mixed):"),
        Bullets(groups),
    ]
    if stress is not None:
        blocks.insert(1, Paragraph("Stress sweeps, in the Stability section only: "
                                   + describe_inputs(stress) + "."))
    return Section("Overview", blocks)


def condition(runs: pd.DataFrame) -> str:
    """Under what the verdicts on these runs (a group's, or a study's) hold: their learning rates
    and epochs, or tuned per loss (a group's other settings are in its title)."""
    if tuned_runs(runs).any():
        return "tuned per loss"
    lrs = sorted({format_value(v) for v in runs.get("cfg.optim.lr", [])}, key=value_sort_key)
    epochs = sorted({format_value(v) for v in runs.get("cfg.trainer.epochs", [])}, key=value_sort_key)
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
    for mine in out.values():
        for r in mine:
            r.title = short_title(r.group, [x.group for x in mine])
    return {key: mine for key, mine in out.items() if mine}


def verdict_entries(studies: dict[str, list[GroupResults]]) -> list[Entry]:
    """Every group of every question, in page order, in its question's one view."""
    return [Entry(STUDIES[key], r.title, r.group, r.paired, r.views.frames[r.views.primary],
                  r.views.primary) for key, mine in studies.items() for r in mine]


def question_verdicts(inputs: Inputs, adjust: str = "holm") -> pd.DataFrame:
    """The declared verdicts of every question in these runs (verdicts.VERDICT_COLUMNS), p
    adjusted across all of them: what the Summary states, stress verdicts aside."""
    results = [analyse(g, inputs, adjust) for g in find_groups(inputs.completed)]
    return declared_verdicts(verdict_entries(by_study(inputs, results)), adjust)[0]


def summary_section(studies: dict[str, list[GroupResults]], stress: list[StressGroup],
                    adjust: str = "holm") -> tuple[Section, pd.DataFrame, pd.DataFrame]:
    """The Summary, its verdicts (the main page's tables and forest plot) and their per-seed
    values (for the appendix)."""
    entries = verdict_entries(studies)
    stressed = [g for g in stress if not g.verdicts.empty]
    verdicts, fisher = declared_verdicts(entries, adjust,
                                         [g.verdicts["fisher_p"].to_numpy(float) for g in stressed])
    conditions = {STUDIES[key]: condition(pd.concat([r.group.runs for r in mine]))
                  for key, mine in studies.items()}
    bullets = question_bullets(verdicts, conditions)
    for g, p in zip(stressed, fisher):
        bullets += stability_bullets(g.title, g.verdicts.assign(summary_p_adj=p, adjust=adjust))
    intro = (f"Every comparison each question declared (its preset's `question`: baseline, "
             "metric, view, losses compared), in every group of its study, and the divergence "
             "comparisons of the stress sweeps; nothing is selected. Differences are the loss "
             "minus its baseline with the 95% CI, which covers the seeds and, for accuracy from "
             "stored predictions, the shared test examples; k/n = seeds in the difference's "
             "direction; P(improvement) = the chance a seed of the loss beats a seed of the "
             f"baseline, with its bootstrap CI; p {ADJUSTMENTS[adjust]}-adjusted across every "
             f"p-value this Summary states. Better or worse: adjusted p < {ALPHA:g}, the "
             f"seed-level paired t-test's p < {ALPHA:g} and the CI excluding 0; equivalent: the "
             "CI inside ± the smallest effect of interest; else inconclusive. "
             "docs/statistics.md has the rules.")
    blocks = [Paragraph(intro), Bullets(bullets) if bullets else
              Paragraph("No paired comparison to summarise.")]
    return Section("Summary", blocks), verdicts, verdict_seeds(entries, verdicts)


def in_view(mine: list[GroupResults]) -> pd.DataFrame:
    """The study's runs with their test metrics read in each group's one view (the question's),
    and the epoch the view reads (VIEW_EPOCH): what its study-wide tables and figures show."""
    parts = []
    for r in mine:
        frame = r.views.frames[r.views.primary].rename(columns={"epoch": VIEW_EPOCH})
        tests = [c for c in frame.columns if c.startswith("test_")]
        parts.append(r.group.runs.drop(columns=tests)
                     .merge(frame[["run", VIEW_EPOCH, *tests]], on="run"))
    return pd.concat(parts, ignore_index=True)


def question_sections(inputs: Inputs, studies: dict[str, list[GroupResults]]) -> list[Section]:
    """One section per study present: its table across groups, its figure, one or two sentences,
    then each group's details."""
    sections = []
    for key, mine in studies.items():
        title = STUDIES[key]
        runs = pd.concat([r.group.runs for r in mine], ignore_index=True)
        highlight = list(dict.fromkeys(loss for r in mine
                                       for loss in (r.group.baseline, *r.group.comparisons)))
        blocks = study_blocks(key, in_view(mine), inputs.runs, inputs.per_class, highlight)
        shown, data = primary_table(mine, lambda r: r.group.verdict_metric)
        if not blocks and not shown.empty:  # a study without its own table: the primary metric
            views = " or ".join(f"`{v}`" for v in dict.fromkeys(r.views.primary for r in mine))
            blocks.append(Table(f"study-{key}", shown, data, "Primary metric per loss and group, "
                                f"test split, view {views} (the val-selected epoch where runs have "
                                "a validation split, else the last): mean [95% t-CI] over seeds, "
                                "n = seeds."))
        if key == "tuned":
            blocks = (tuning_blocks(inputs.tuning) + blocks
                      + shared_vs_tuned_blocks(mine, studies.get("shared", [])))
        seeds = int(runs["seed"].nunique())
        blocks.append(Paragraph(
            f"{plural(len(mine), 'group')}, {plural(runs['loss'].nunique(), 'loss', 'losses')}, "
            f"up to {plural(seeds, 'seed')} each, under {condition(runs)}. "
            "Each group's paired comparison against its baseline follows."))
        sections.append(Section(title, blocks, [group_section(r) for r in mine]))
    return sections


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
    verdict = (f" verdict: better or worse than `{group.baseline}` where p adj < {ALPHA:g}, the "
               f"seed-level t p < {ALPHA:g} and the CI excludes 0; equivalent where the CI lies "
               "inside ± the smallest effect of interest; else inconclusive (MDE: the difference "
               "this design detects with 80% power). McNemar's p pools the test examples of "
               "every seed as if independent: a diagnostic, never a verdict."
               if len(tested) else "")
    return (f"View `{view}`: each loss minus `{group.baseline}`, paired by seed; difference with "
            f"its 95% CI ({ci or 'none computed'}).{adjusted}{verdict}")


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

    view = r.views.primary  # the question's one view, here as in the Summary
    final, paired = r.final[r.final["view"] == view], r.paired
    if not paired.empty:
        paired = paired[paired["view"] == view]
    blocks = [Paragraph(r.views.note)] if r.views.note else []
    blocks.append(Table(f"{slug}-final-metrics-{view}", tables.show_final(final, metrics), final,
                        final_caption(g, view)))
    duplicates = tables.duplicate_seeds(g)
    if duplicates:
        blocks.append(Paragraph("Averaged before the statistics (several runs of one loss and "
                                "seed): " + ", ".join(duplicates) + "."))
    if not r.points.empty:
        blocks.append(Figure(f"{slug}-final-{kind.metric}",
                             figures.final_metric(final, r.points, kind.metric),
                             f"Test {kind.metric} per loss in the `{view}` view: mean with 95% "
                             "t-CI, grey dots are single seeds.", r.points))
    subsections.append(Section("Final test metrics", blocks))

    if paired.empty:
        blocks = [Paragraph(no_comparison(g))]
    else:
        blocks = [Table(f"{slug}-paired-vs-{g.baseline}-{view}", tables.show_paired(paired),
                        paired, paired_caption(g, view, paired)),
                  Bullets(findings(g, final, paired, r.calibration_pairs, r.divergence, r.excluded,
                                   view))]
        if g.baseline != kind.baseline:
            blocks.insert(0, Paragraph(f"The {kind.label} baseline `{kind.baseline}` has no "
                                       f"completed run in this group: compared against "
                                       f"`{g.baseline}` instead."))
    subsections.append(Section(f"Paired comparison vs {g.baseline}", blocks))

    if not r.curves.empty:
        subsections.append(Section("Learning curves", [Figure(
            f"{slug}-learning-curves",
            figures.learning_curves(r.curves, g.losses, kind.metric, [g.baseline, *g.comparisons]),
            f"Criterion value per epoch, train and test, one panel per loss family (the softmax "
            "losses average over N samples, the sigmoid losses over N·C outputs, so their values "
            "are not comparable, and each criterion has its own scale), then the metrics every "
            f"loss shares: test NLL (single-label) and test {kind.metric}; a panel whose values "
            "span over 10x has a log axis and says so; line = mean over seeds, "
            "thin lines = 95% t-CI (none with one seed); a loss whose curves equal another's "
            f"exactly says so in the legend. The baseline `{g.baseline}` and the question's "
            "comparisons are in colour, every other loss in grey. With more than "
            f"{figures.MAX_COLOURED - 1} comparisons, instead one small panel per comparison "
            f"of test {kind.metric}: the loss in colour, the baseline in black, the rest in grey.",
            r.curves)]))

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
                   "scale). ECE in the legend is computed from the pooled bins; beside the "
                   "dotted line, the ECE of a perfectly calibrated model at this test size (the "
                   "table below).", r.bins),
            Table(f"{slug}-pooled-ece", tables.show_ece(r.ece), r.ece,
                  "ECE from the bins pooled over seeds, and each run's ECE averaged over seeds "
                  "with its 95% bootstrap CI (seeds, and the test examples within each bin). "
                  "Calibrated model's ECE: what a perfectly calibrated model with this loss's "
                  "confidences scores on a test set this size (labels drawn from its own "
                  "probabilities, 500 draws): an ECE near it is no evidence of miscalibration. "
                  "NLL and Brier (the final-metrics table) are the primary calibration scores. "
                  "A loss whose outputs are not probabilities (losses.LossSpec.probabilistic) is "
                  "not ranked on calibration."),
        ]))

    if not r.times.empty:
        subsections.append(Section("Time per epoch", [
            Table(f"{slug}-epoch-time", tables.show_times(r.times), r.times,
                  "Train time per epoch (each run's mean over its epochs), mean and 95% t-CI "
                  "over seeds. The runs ran one after another, so machine load drifts between "
                  "them: experiments/benchmark.py measures loss cost interleaved."),
        ]))
    return Section(r.title, intro, subsections)


def excluded_section(inputs: Inputs, stress: Inputs | None) -> Section:
    excluded = tables.excluded_runs(everything(inputs, stress))
    if excluded.empty:
        return Section("Excluded runs", [Paragraph("None: every run completed.")])
    return Section("Excluded runs", [Table(
        "excluded-runs", tables.show_excluded(excluded), excluded,
        "Runs that did not complete (failed, interrupted, diverged or still running); left out "
        "of every comparison (diverged stress runs are counted in Stability).")])


def appendix_page(name: str, title: str, sections: list[Section]) -> Document:
    return Document(f"lossbench report: {title}", sections, path=f"{APPENDIX}/{name}", up="report")


def question_answers(studies: dict[str, list[GroupResults]], verdicts: pd.DataFrame,
                     pages: dict[str, str]) -> list[Section]:
    """Per question: its one compact table, and the link to its appendix page."""
    out = []
    for key in studies:
        title = STUDIES[key]
        rows = verdicts[verdicts["question"] == title]
        blocks = [answer_table(key, rows)] if len(rows) else [Paragraph("No paired comparison.")]
        blocks.append(PageLinks([(pages[key], f"{title}: every group in detail",
                                  "metrics, paired tests, learning curves, calibration")]))
        out.append(Section(title, blocks))
    return out


def build_document(inputs: Inputs, probe: Path | None = None, stress: Inputs | None = None,
                   adjust: str = "holm") -> Document:
    """The main page (limitations, Summary, forest plot, one table per question, glossary, the
    appendix's pages) with every other section on an appendix page of its own."""
    results = [analyse(g, inputs, adjust) for g in find_groups(inputs.completed)]
    # tuning trials are a search, not stress conditions
    stressed = stress if stress is not None else replace(inputs, summary=inputs.compared)
    groups, varying = stress_groups(stressed)
    studies = by_study(inputs, results)
    summarised = groups if stress is not None or inputs.steps is not None else []
    recommendation = recommendation_section(results, inputs.tuning)
    summary, verdicts, seeds = summary_section(studies, summarised, adjust)
    pages = {key: f"{APPENDIX}/{key}" for key in studies}
    appendix = [appendix_page(key, section.title, [section])
                for key, section in zip(studies, question_sections(inputs, studies))]
    appendix.append(appendix_page("setup", "setup and methods", [
        setup_section(everything(inputs, stress), method(adjust), inputs.tuning),
        overview(inputs, studies, stress)]))
    published = published_section(inputs.completed)
    if published is not None:
        appendix.append(appendix_page("published", published.title, [published]))
    stability = stability_section(stressed, groups, varying, probe)
    long_tables = stability_appendix(stressed, groups, probe)
    if stability is not None or long_tables:
        appendix.append(appendix_page("stability", "stability",
                                      ([stability] if stability is not None else []) + long_tables))
    if len(verdicts):
        appendix.append(appendix_page("verdicts", "every verdict", [
            Section("Every verdict", [Table(
                "verdicts", tables.show_verdicts(verdicts), verdicts,
                "Every verdict the Summary states, one row each, with its adjusted p.")]),
            Section("Per-seed values of the verdicts", [Table(
                "verdict_seeds",
                seeds.map(lambda v: tables.fmt(v) if isinstance(v, float) else str(v)), seeds,
                "Each verdict's paired seeds: the loss's and the baseline's value and the data "
                "split the seed trained on (split_seed; — : the dataset's default split).")])]))
    appendix.append(appendix_page("excluded", "excluded runs", [excluded_section(inputs, stress)]))

    sections = [recommendation] if recommendation is not None else []
    sections.append(summary)
    if len(verdicts):
        sections.append(Section("Effects", [Figure(
            "forest", forest_plot(verdicts),
            "Every declared effect (loss minus baseline) with its 95% CI, one panel per question; "
            "shaded: ± the smallest effect of interest; colour: the verdict.",
            forest_data(verdicts), suffix="svg")]))
    sections += question_answers(studies, verdicts, pages)
    sections.append(glossary_section())
    sections.append(Section("Appendix", [PageLinks(
        [(page.path, page.title.removeprefix("lossbench report: ").capitalize(), "")
         for page in appendix])]))
    everyone = everything(inputs, stress, trials=True)
    return Document("lossbench report", sections, header_lines(everyone),
                    limitations(inputs.completed, everything(inputs, stress)), appendix=appendix)
