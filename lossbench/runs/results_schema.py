"""Every file a run writes into its directory, and every key and column in it, declared once with
its meaning. docs/reference/results-columns.md is written from this (lossbench.docs_gen), and
tests/runs/test_results_schema.py fails when a run writes a column that is not declared here, so the
docs cannot drift from what a run writes. The metric columns are lossbench.training.metrics.METRICS.

docs/results-schema.md says, by hand, what holds across columns (how files are written, what the
train rows measure, how collect and the report read them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lossbench.training.metrics import METRICS
from lossbench.runs.results import (CALIBRATION, EPOCHS, EPOCHS_BEFORE, GATHERS, METRICS as METRICS_FILE, PER_CLASS,
                               PREDICTIONS, STEPS, SUMMARY, TUNING)


@dataclass(frozen=True)
class Column:
    # a key or column; `<...>` stands for any name part (p_<k>: p_0, p_1, ...)
    name: str
    meaning: str

    def matches(self, written: str) -> bool:
        pattern = r"[\w.]+".join(re.escape(part) for part in re.split(r"<[^>]+>", self.name))
        return re.fullmatch(pattern, written) is not None


@dataclass(frozen=True)
class RunFile:
    name: str
    rows: str  # what one row is (summary.json: what the file is)
    columns: tuple[Column, ...]



def undeclared(written: list[str], columns: tuple[Column, ...]) -> list[str]:
    """The written keys or columns no declared column matches."""
    return [name for name in written if not any(column.matches(name) for column in columns)]


# On every row of every table: which run it is (lossbench.runs.results.RunFiles.identity).
IDENTITY = (
    Column("loss", "the loss's label: its registry name plus every knob that differs from its "
                   "default, e.g. `focal(gamma=1)`"),
    Column("dataset", "the dataset's name (`dataset=NAME`)"),
    Column("data_source", "the data a run read: `full` | `sample` | `synthetic` | `files` (what "
                          "`dataset.source` allowed; runs of different sources are never pooled)"),
    Column("seed", "the run's seed"),
)
EPOCH = Column("epoch", "the epoch, 1-based")


def metric_columns() -> tuple[Column, ...]:
    """A column per metric (lossbench.training.metrics.METRICS), absent on the other task's runs."""
    columns = []
    for metric in METRICS.values():
        tasks = " and ".join(sorted(task.replace("_", "-") for task in metric.tasks))
        better = "higher" if metric.higher_is_better else "lower"
        about = metric.meaning or metric.label
        columns.append(Column(metric.name, f"{tasks}; {better} is better" + (f": {about}" if about else "")))
    return tuple(columns)


SUMMARY_JSON = RunFile(SUMMARY, "the run's record: written at start with status `running`, rewritten "
                                "atomically at the end", (
    Column("status", "`running` | `completed` | `failed` | `interrupted` | `diverged`"),
    Column("error", "null, or why the run failed, diverged or was interrupted"),
    *IDENTITY,
    Column("loss_name", "the loss's registry name, e.g. `focal`"),
    Column("task", "`single_label` | `multi_label` (file data: null until the data is read)"),
    Column("experiment", "the preset the run belongs to (`experiment=NAME`), null for an ad-hoc run"),
    Column("data_origin", "free text: where the data came from"),
    Column("n_train", "training examples trained on, after the conditions and the val split"),
    Column("n_val", "the val split's size; 0 with `dataset.val_fraction=0`"),
    Column("n_test", "test examples"),
    Column("n_classes", "classes (single-label) or labels (multi-label)"),
    Column("outputs", "logits per sample: `n_classes`, or 1 for a sigmoid loss on a two-class task"),
    Column("loss_derived", "values the criterion computed from the training labels, e.g. "
                           "`{\"weight\": [...]}`; `{}` otherwise"),
    Column("class_ids", "single-label: the original class id of each class index"),
    Column("train_class_counts", "single-label: training examples per class index (true labels)"),
    Column("train_positive_rate", "multi-label: fraction of training samples with each label, as trained on"),
    Column("label_cardinality", "multi-label: mean positive labels per training sample"),
    Column("test_label_cardinality", "multi_mnist: mean positive labels per test sample"),
    Column("label_noise_realised", "with `dataset.label_noise` > 0: fraction of training labels (or "
                                   "label bits) that differ from the clean ones"),
    Column("data_shape", "file data: the whole set's shape as read"),
    Column("class_names", "file data: the name of each class index (multi-label: the target columns)"),
    Column("source_path", "file data: the absolute path read"),
    Column("content_hash", "file data: SHA-256 of the arrays as read, before any split"),
    Column("feature_columns", "tables: the feature columns"),
    Column("dropped_rows", "tables: rows dropped for a missing value (`dataset.drop_missing=true`)"),
    Column("epochs", "epochs planned"),
    Column("epochs_completed", "epochs finished"),
    Column("wall_time_s", "the run's wall time in seconds"),
    Column("mean_epoch_time_s", "mean over epochs of `epoch_time_s` (metrics.parquet): the step loop alone"),
    Column("mean_eval_time_s", "mean over epochs of `eval_time_s` (metrics.parquet): the evaluation after each epoch"),
    Column("stopped_early", "true when `trainer.early_stop_patience` ended the run"),
    Column("selected_epoch", "the first epoch with the best val primary metric "
                             "(lossbench.training.selection); null without a val split"),
    Column("device", "the device trained on"),
    Column("threads", "torch threads"),
    Column("torch_version", "torch's version"),
    Column("lossbench_version", "lossbench's version"),
    Column("lossbench_commit", "`git rev-parse HEAD` of the source that ran; `unknown` outside a git checkout"),
    Column("finished_at", "UTC, ISO 8601: when the final status was written"),
    Column("autocast_dtypes", "op -> dtype under the run's autocast on its device; `{}` at precision 32"),
    Column("skipped_steps", "steps skipped for a non-finite loss or gradient (`trainer.on_nonfinite=skip`)"),
    Column("scaler_skipped_steps", "steps GradScaler skipped; 0 without loss scaling"),
    Column("untrained_epochs", "completed epochs in which every step was skipped; `[]` normally"),
    Column("first_nonfinite_step", "the first step whose loss or gradient was not finite, or null"),
    Column("first_nonfinite", "`loss` | `gradient` | null: which was non-finite first"),
    Column("config", "the resolved config, nested"),
    Column("overrides", "the job's override strings"),
    Column("test_<metric>", "the last completed epoch's test value of each metric column of "
                            "metrics.parquet that is not NaN (`test_acc`, `test_map`, ...)"),
))

METRICS_PARQUET = RunFile(METRICS_FILE, "one per (epoch, split)", (
    *IDENTITY, EPOCH,
    Column("split", "`train` | `val` | `test` (`val` only with `dataset.val_fraction` > 0)"),
    Column("epoch_time_s", "train rows: the wall time of the epoch's training steps (no evaluation, no "
                           "files); NaN on val and test rows"),
    Column("samples_per_s", "train rows: training throughput; NaN on val and test rows"),
    Column("eval_time_s", "train rows: the wall time of the evaluation after the epoch: the val and test "
                          "passes, their metrics and temperature scaling, and the train row's own pass (the "
                          "flipped examples under label noise; the whole training split with "
                          "`trainer.train_metrics=full`); NaN on val and test rows"),
    Column("lr", "train rows: the learning rate of the epoch's last step"),
    Column("temperature", "single-label test rows with a val split: the temperature fitted on that "
                          "epoch's val logits (lossbench.training.temperature); NaN elsewhere"),
    *metric_columns(),
))

CALIBRATION_PARQUET = RunFile(CALIBRATION, "one per (scheme, bin) of the last epoch's test predictions", (
    *IDENTITY,
    Column("scheme", "`equal_width` (bins of width 1/15) | `equal_mass` (single-label: edges at the "
                     "confidence percentiles)"),
    Column("bin", "0..14"),
    Column("bin_lower", "the bin's lower edge (a bin is (lower, upper], the first one closed)"),
    Column("bin_upper", "the bin's upper edge"),
    Column("confidence", "mean predicted confidence in the bin; NaN if empty"),
    Column("accuracy", "fraction correct in the bin; NaN if empty"),
    Column("count", "predictions in the bin"),
))

PREDICTIONS_PARQUET = RunFile(PREDICTIONS, "one per (view, test example), of the last epoch and the selected one", (
    *IDENTITY,
    Column("view", "`last`: the last completed epoch; `selected`: the selected epoch (with a val split)"),
    Column("epoch", "the epoch the row's predictions are from"),
    Column("example", "index in the test split"),
    Column("correct", "right (multi-label: every label right at the loss's threshold)"),
    Column("label", "single-label: the true class index"),
    Column("predicted", "single-label: the argmax class index"),
    Column("p_<k>", "float16: the probability of class (or label) k the metrics see"),
))

STEPS_PARQUET = RunFile(STEPS, "one per logged step (every `trainer.log_every` steps and each epoch's last)", (
    *IDENTITY,
    Column("step", "the step, 1-based over the run"),
    EPOCH,
    Column("loss_value", "the step's criterion value"),
    Column("grad_norm", "the gradient norm, before clipping"),
    Column("max_abs_logit", "the largest |logit| of the batch"),
    Column("saturated_frac", "fraction of the batch's probabilities saturated at 0 or 1"),
    Column("nonfinite_loss", "cumulative count of non-finite losses"),
    Column("nonfinite_grad", "cumulative count of non-finite gradients (not those GradScaler skips)"),
    Column("skipped_steps", "cumulative steps skipped (`trainer.on_nonfinite=skip`)"),
    Column("loss_scale", "GradScaler's scale; NaN without `trainer.loss_scaling=dynamic`"),
    Column("scaler_skipped_steps", "cumulative steps GradScaler skipped; 0 without loss scaling"),
    Column("clipped_steps", "cumulative steps whose `grad_norm` exceeded `trainer.grad_clip`"),
    Column("lr", "the learning rate of the step"),
))

PER_CLASS_PARQUET = RunFile(PER_CLASS, "per epoch, one per class (single-label) or label (multi-label) "
                                       "of the test split", (
    *IDENTITY, EPOCH,
    Column("split", "`test`"),
    Column("class", "class index (its original id: `class_ids[class]` in summary.json)"),
    Column("recall", "0 where undefined"),
    Column("precision", "0 where undefined"),
    Column("f1", "0 where undefined"),
    Column("support", "test examples of the class, or test positives of the label"),
    Column("train_count", "training examples of the class (true labels), or training positives of the label"),
    Column("ap", "multi-label: the label's average precision"),
))

DECLARED_RUN_FILES = (SUMMARY_JSON, METRICS_PARQUET, CALIBRATION_PARQUET, PREDICTIONS_PARQUET, STEPS_PARQUET,
                      PER_CLASS_PARQUET)

# `python -m lossbench.collect DIR` writes a table into DIR per run file, every row with a `run`
# column (the run dir relative to DIR). summary.parquet holds summary.json's scalar keys and the
# flattened config; the others the run files' rows.
RUN = Column("run", "the run dir relative to the collected DIR (posix)")
COLLECTED = {table: next(f for f in DECLARED_RUN_FILES if f.name == gathered) for table, gathered in GATHERS.items()}
CONFIG = Column("cfg.<key>", "each config value, by its dotted key (lists as their string form)")
BEFORE = {EPOCHS: EPOCHS_BEFORE}  # a collected table's earlier name, still read


def collected_columns(name: str) -> tuple[Column, ...]:
    """The columns of the collected table `name` (one of lossbench.runs.results.TABLE_FILES)."""
    run_file = COLLECTED[name]
    return (RUN, *run_file.columns, CONFIG) if run_file is SUMMARY_JSON else (RUN, *run_file.columns)


# A tuned study (hydra/sweeper=tuned) writes this into its sweep dir once its trials have run
# (lossbench.runs.tuning_trials.write_tuning, in this column order).
TUNING_PARQUET = RunFile(TUNING, "one per trial, in grid order per loss", (
    Column("loss_name", "the loss's registry name"),
    Column("trial", "the trial's position in the loss's grid, 0-based, the first key varying slowest"),
    Column("setting", "the tuned overrides, comma-separated (`optim.lr=0.003,loss.gamma=2`)"),
    Column("run", "its run dir relative to the sweep dir (`tune/...`)"),
    Column("seed", "the tuning seed"),
    Column("status", "the trial's summary status; `missing` without a summary.json"),
    Column("val_metric", "the task's primary metric (lossbench.tasks.TASKS), read on the val split"),
    Column("val_value", "its validation value at the run's selected epoch; NaN without validation rows"),
    Column("selected_epoch", "the epoch the val rows select (nullable int)"),
    Column("chosen", "per loss, the completed trial with the highest `val_value`, the first on ties; "
                     "none when no trial completed"),
    Column("ineligible", "why the choice passed the trial over (`no finite validation acc`, ...); "
                         "null for an eligible trial"),
    Column("budget", "trials per loss"),
    Column("space", "the loss's search space as typed (`optim.lr=0.0003,0.001,0.003 loss.gamma=1,2`)"),
))
