"""Test metrics from predicted probabilities, computed once per epoch on the host.

Single-label: accuracy, NLL of the predicted distribution, ECE (15 bins, top-label; equal-width
as `ece`, equal-mass as `ece_adaptive`), classwise ECE, Brier score (multi-class: squared error
against the one-hot label, summed over classes, averaged over samples). NLL and Brier are the
primary calibration metrics: ECE on 1,000 examples is biased (binning), and it moves with the bins.
Multi-label: mAP (macro average precision), micro/macro F1 at the loss's threshold, subset accuracy,
hamming loss. A reliability table (what ECE is computed from) is kept for the report.

For imbalance (every single-label run): balanced accuracy (mean per-class recall), macro-F1 and
the mean recall of the rarest third of the classes by training count; per class (and per label
on multi-label data): recall, precision, F1, support. For label noise: the accuracy on the
flipped training examples against their noisy and their true labels (memorisation vs robustness).

The single-label metrics are sklearn's formulas in a few lines of numpy (accuracy_score, log_loss,
precision_recall_fscore_support; tests/training/test_numpy_equals_sklearn.py checks them against sklearn): a run on
single-label data then never imports scikit-learn, over a second of its start-up. The multi-label
ones (average precision's ties) import sklearn where they are computed.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

N_BINS = 15
SINGLE_LABEL = ("acc", "nll", "ece", "brier")
# ECE over equal-mass bins (Nixon et al. 2019's adaptive ECE) and classwise (Kull et al. 2019)
CALIBRATION = ("ece_adaptive", "ece_classwise")
MULTI_LABEL = ("map", "f1_micro", "f1_macro", "subset_acc", "hamming")
CLASS_BALANCE = ("balanced_acc", "f1_macro", "rare_recall")
MEMORISATION = ("flipped_acc_noisy", "flipped_acc_true")
# the criterion's own value per split (every loss has one, on its own scale)
CRITERION = "loss_value"
# the train rows' timings (NaN on val and test rows): the steps, their throughput, the evaluation after them
TIMINGS = ("epoch_time_s", "samples_per_s", "eval_time_s")
# the calibration metrics again after temperature scaling on the val split (lossbench/training/temperature.py)
TEMPERATURE_SCALED = ("nll_ts", "ece_ts", "brier_ts")
SINGLE, MULTI, BOTH = frozenset({"single_label"}), frozenset({"multi_label"}), frozenset({"single_label", "multi_label"})


@dataclass(frozen=True)
class Metric:
    """What the report and the checks know about a metric: one record each, read instead of
    guessed from its name."""

    name: str
    tasks: frozenset[str]  # the tasks (lossbench.losses.Task values) whose runs report it
    higher_is_better: bool
    label: str = ""  # what a figure's reader calls it; "": its name
    # a strictly proper scoring rule: its expectation is best only at the true probabilities
    proper: bool = False
    percent: bool = False  # a share of examples, classes or labels: read in percentage points
    digits: int = 4  # decimals shown, in the metric's own unit
    # The smallest difference between two losses that matters (in the metric's units): a 95% CI
    # of a difference inside +-this is called "equivalent"; NaN: never. Half a point for the
    # accuracy-like metrics (the difference the four torch losses show on clean balanced data);
    # a question may declare its own (question.smallest_effect).
    smallest_effect: float = math.nan
    # the mean over test examples of predictions.parquet's per-example `correct`
    correctness: bool = False
    meaning: str = ""  # the report's glossary entry; "": a metric no table names


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("acc", SINGLE, True, percent=True, smallest_effect=0.005, correctness=True,
           meaning="accuracy: the share of test examples whose top-scoring class is the true one."),
    Metric("nll", SINGLE, False, proper=True, smallest_effect=0.02),
    Metric("ece", SINGLE, False, "ECE", smallest_effect=0.01),
    Metric("brier", SINGLE, False, "Brier score", proper=True, smallest_effect=0.005),
    Metric("ece_adaptive", SINGLE, False),
    Metric("ece_classwise", SINGLE, False),
    Metric("nll_ts", SINGLE, False, proper=True,
           meaning="NLL after temperature scaling: the logits divided by one temperature fitted "
                   "on the validation split, which changes calibration but never the predicted "
                   "class."),
    Metric("ece_ts", SINGLE, False,
           meaning="ECE after the same temperature scaling."),
    Metric("brier_ts", SINGLE, False, proper=True),
    Metric("balanced_acc", SINGLE, True, "balanced accuracy", percent=True, smallest_effect=0.005,
           meaning="balanced accuracy: the mean over classes of each class's recall."),
    Metric("rare_recall", SINGLE, True, "recall of the rarest third", percent=True,
           smallest_effect=0.01,
           meaning="the mean recall of the rarest third of the classes (by training count)."),
    Metric("f1_macro", BOTH, True, percent=True, smallest_effect=0.005,
           meaning="F1 per class (or label), averaged over classes."),
    Metric("map", MULTI, True, percent=True, smallest_effect=0.005,
           meaning="mAP, mean average precision over labels (multi-label tasks)."),
    Metric("f1_micro", MULTI, True, percent=True, smallest_effect=0.005,
           meaning="F1 over every (example, label) decision pooled (multi-label)."),
    Metric("subset_acc", MULTI, True, percent=True, smallest_effect=0.005, correctness=True,
           meaning="subset accuracy: the share of examples whose every label is right (multi-label)."),
    Metric("hamming", MULTI, False, percent=True, smallest_effect=0.002,
           meaning="Hamming loss: the share of wrong (example, label) decisions; lower is better."),
    Metric("flipped_acc_noisy", SINGLE, False, percent=True),  # memorised the noisy label
    Metric("flipped_acc_true", SINGLE, True, percent=True),
    Metric(CRITERION, BOTH, False),
)}
LOWER_IS_BETTER = frozenset(name for name, m in METRICS.items() if not m.higher_is_better)
# Metrics that are a share of examples or labels (0..1): their differences read in percentage
# points (pp) in the report; the others (nll, brier, ece) in their own units.
PROPORTIONS = tuple(name for name, m in METRICS.items() if m.percent)


def equal_width_edges(n_bins: int = N_BINS) -> np.ndarray:
    """The bins of sklearn.calibration.calibration_curve(strategy='uniform')."""
    return np.linspace(0.0, 1.0, n_bins + 1)


def equal_mass_edges(confidence: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """The bins of sklearn.calibration.calibration_curve(strategy='quantile'): edges at the
    confidences' percentiles, so each bin holds about N / n_bins predictions (fewer where
    confidences tie at an edge: saturated ones at 1.0 share one bin, the others stay empty)."""
    # calibration_curve's own expression: linspace(0, 100) differs in the last bits, and moves
    # an example lying on an edge into the next bin
    return np.percentile(confidence, np.linspace(0, 1, n_bins + 1) * 100)


def binned(confidence: np.ndarray, correct: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, ...]:
    """Count, mean confidence and accuracy per bin over `edges`, each bin (lower, upper] (the
    first includes its lower edge); 2-D inputs get one row of bins per row. NaN in empty bins."""
    n_bins = len(edges) - 1
    confidence, correct = np.atleast_2d(confidence), np.atleast_2d(correct)
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    bins = (bins + n_bins * np.arange(len(bins))[:, None]).ravel()
    size = n_bins * len(confidence)
    # bincount adds each bin's weights in input order: every row sums as it would alone
    count = np.bincount(bins, minlength=size)
    conf_sum = np.bincount(bins, weights=confidence.ravel(), minlength=size)
    correct_sum = np.bincount(bins, weights=correct.ravel().astype(np.float64), minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf, accuracy = conf_sum / count, correct_sum / count
    return tuple(values.reshape(-1, n_bins) for values in (count, mean_conf, accuracy))


def reliability_table(confidence: np.ndarray, correct: np.ndarray, edges: np.ndarray) -> list[dict]:
    """Bins over `edges` (see binned), as calibration_curve bins: mean confidence, accuracy,
    count. calibration_curve returns the first two of the non-empty bins only; the report needs
    every bin's count as well."""
    (count,), (mean_conf,), (accuracy,) = binned(confidence, correct, edges)
    return [
        {
            "bin": b,
            "bin_lower": float(edges[b]),
            "bin_upper": float(edges[b + 1]),
            "confidence": float(mean_conf[b]),
            "accuracy": float(accuracy[b]),
            "count": int(count[b]),
        }
        for b in range(len(edges) - 1)
    ]


def expected_calibration_error(table: list[dict]) -> float:
    total = sum(row["count"] for row in table)
    return float(
        sum(row["count"] / total * abs(row["accuracy"] - row["confidence"]) for row in table if row["count"])
    )


def classwise_ece(probs: np.ndarray, labels: np.ndarray) -> float:
    """Classwise ECE (Kull et al. 2019): the mean over classes k of the equal-width ECE of
    p_k against the indicator y == k, over every example. All classes binned at once; each
    class's ECE sums its non-empty bins in order, as expected_calibration_error does."""
    classes = np.arange(probs.shape[1])
    count, mean_conf, accuracy = binned(probs.T, labels == classes[:, None], equal_width_edges())
    with np.errstate(invalid="ignore"):
        terms = count / len(labels) * np.abs(accuracy - mean_conf)
    # Python's sum() over each class's non-empty bins, as expected_calibration_error adds them
    # (compensated since Python 3.12, so no numpy reduction matches it on every version)
    return float(np.mean([sum(row[filled].tolist()) for row, filled in zip(terms, count > 0)]))


def calibration_tables(confidence: np.ndarray, correct: np.ndarray) -> list[dict]:
    """The reliability table in both binnings, each row tagged with its `scheme`."""
    return [{"scheme": scheme, **row}
            for scheme, edges in (("equal_width", equal_width_edges()),
                                  ("equal_mass", equal_mass_edges(confidence)))
            for row in reliability_table(confidence, correct, edges)]


def ece_of(tables: list[dict], scheme: str) -> float:
    return expected_calibration_error([row for row in tables if row["scheme"] == scheme])


def single_label(probs: np.ndarray, labels: np.ndarray) -> tuple[dict, list[dict]]:
    """probs (N, C) rows summing to 1; labels (N,) class indices."""
    if not np.isfinite(probs).all():
        return dict.fromkeys(SINGLE_LABEL + CALIBRATION, float("nan")), []
    probs = _renormalised(probs)
    predicted = probs.argmax(axis=1)
    tables = calibration_tables(probs.max(axis=1), predicted == labels)
    metrics = {
        "acc": float((predicted == labels).mean()),
        "nll": log_loss(probs, labels),
        "ece": ece_of(tables, "equal_width"),
        "brier": brier(probs, labels),
        "ece_adaptive": ece_of(tables, "equal_mass"),
        "ece_classwise": classwise_ece(probs, labels),
    }
    return metrics, tables


def nll_ece_brier(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """single_label's nll, ece and brier alone (the temperature-scaled metrics keep no others)."""
    if not np.isfinite(probs).all():
        return (float("nan"),) * 3
    probs = _renormalised(probs)
    confidence = probs.max(axis=1)
    table = reliability_table(confidence, probs.argmax(axis=1) == labels, equal_width_edges())
    return log_loss(probs, labels), expected_calibration_error(table), brier(probs, labels)


def _renormalised(probs: np.ndarray) -> np.ndarray:
    """float64 rows summing to 1: float32 softmax rows sum to 1 only within ~1e-7."""
    probs = probs.astype(np.float64)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(((probs - np.eye(probs.shape[1])[labels]) ** 2).sum(axis=1).mean())


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """sklearn.metrics.log_loss: the mean of -log p_y, p clipped to [eps, 1 - eps] of its dtype."""
    eps = np.finfo(probs.dtype).eps
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], eps, 1 - eps)).mean())


def precision_recall_f1_support(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> tuple[np.ndarray, ...]:
    """sklearn's precision_recall_fscore_support(labels=range(C), zero_division=0) on class
    indices: per class, precision, recall, F1 = 2 tp / (support + predicted) and support."""
    tp = np.bincount(labels[labels == predicted], minlength=n_classes).astype(np.float64)
    support = np.bincount(labels, minlength=n_classes)
    predicted_count = np.bincount(predicted, minlength=n_classes)

    def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        return np.divide(numerator, denominator, out=np.zeros(n_classes), where=denominator > 0)

    return ratio(tp, predicted_count), ratio(tp, support), ratio(2 * tp, support + predicted_count), support


def multi_label(probs: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[dict, list[dict]]:
    """probs (N, C) independent per-class probabilities; labels (N, C) multi-hot."""
    if not np.isfinite(probs).all():
        return dict.fromkeys(MULTI_LABEL, float("nan")), []
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import accuracy_score, average_precision_score, f1_score, hamming_loss

    labels = labels.astype(np.int64)
    predicted = (probs >= threshold).astype(np.int64)
    with warnings.catch_warnings():
        # A class with no positives in a small test split has no defined AP or F1; sklearn
        # warns and scores it, which is the documented behaviour we report.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)
        metrics = {
            "map": float(average_precision_score(labels, probs, average="macro")),
            "f1_micro": float(f1_score(labels, predicted, average="micro", zero_division=0)),
            "f1_macro": float(f1_score(labels, predicted, average="macro", zero_division=0)),
            "subset_acc": float(accuracy_score(labels, predicted)),
            "hamming": float(hamming_loss(labels, predicted)),
        }
    table = reliability_table(probs.ravel().astype(np.float64), labels.ravel() == 1, equal_width_edges())
    return metrics, [{"scheme": "equal_width", **row} for row in table]


def rarest_third(train_counts: np.ndarray) -> np.ndarray:
    """The round(C / 3) classes (at least one) with the fewest training examples; among equal
    counts the higher class index, which the imbalance profile makes the rarer."""
    classes = np.arange(len(train_counts))
    order = np.lexsort((-classes, train_counts))
    return np.sort(order[: max(1, round(len(train_counts) / 3))])


def class_balance(probs: np.ndarray, labels: np.ndarray, rare: np.ndarray) -> dict:
    """Single-label: balanced accuracy, macro-F1 over all classes, mean recall of the `rare` ones."""
    if not np.isfinite(probs).all():
        return dict.fromkeys(CLASS_BALANCE, float("nan"))
    predicted = probs.argmax(axis=1)
    # One pass gives all three: balanced accuracy is the mean recall over the classes present
    # (as sklearn's balanced_accuracy_score), macro-F1 the mean of the per-class F1.
    _, recall, f1, support = precision_recall_f1_support(labels, predicted, probs.shape[1])
    return {
        "balanced_acc": float(recall[support > 0].mean()),
        "f1_macro": float(f1.mean()),
        # Over the rare classes the split has: a small val split may hold none of the rarest
        "rare_recall": float(recall[rare[support[rare] > 0]].mean()) if support[rare].any() else float("nan"),
    }


def per_class(probs: np.ndarray, labels: np.ndarray, threshold: float, train_counts) -> list[dict]:
    """One row per class: recall, precision, f1, support (test examples, or positives per label)
    and train_count (training examples, or training positives per label); multi-label rows add
    the label's average precision. Empty when the predictions are not finite."""
    if not np.isfinite(probs).all():
        return []
    classes = np.arange(probs.shape[1])
    if labels.ndim == 1:
        extra = {}
        precision, recall, f1, support = precision_recall_f1_support(labels, probs.argmax(axis=1), len(classes))
    else:
        from sklearn.metrics import average_precision_score, precision_recall_fscore_support

        predicted = (probs >= threshold).astype(np.int64)
        labels = labels.astype(np.int64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a label without positives: AP undefined
            extra = {"ap": average_precision_score(labels, probs, average=None)}
        precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, zero_division=0)
    return [
        {"class": int(c), "recall": float(recall[c]), "precision": float(precision[c]),
         "f1": float(f1[c]), "support": int(support[c]), "train_count": int(train_counts[c]),
         **{name: float(values[c]) for name, values in extra.items()}}
        for c in classes
    ]


def memorisation(probs: np.ndarray, noisy: np.ndarray, clean: np.ndarray) -> dict:
    """On the training examples whose label was flipped: accuracy against the noisy label (the
    model memorised the noise) and against the true one (it resisted)."""
    flipped = noisy != clean
    if not flipped.any() or not np.isfinite(probs).all():
        return dict.fromkeys(MEMORISATION, float("nan"))
    predicted = probs[flipped].argmax(axis=1)
    return {"flipped_acc_noisy": float((predicted == noisy[flipped]).mean()),
            "flipped_acc_true": float((predicted == clean[flipped]).mean())}
