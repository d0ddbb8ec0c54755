"""What the harness knows about each task (lossbench.losses.Task): its baseline loss, the metric
it is selected, tuned and judged on, and the metrics its tables show. The run (selection), the
config checks and the report read these records instead of spelling the facts out again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lossbench.losses import BASELINE, LOSSES, Task
from lossbench.training.metrics import CLASS_BALANCE, METRICS, MULTI_LABEL, SINGLE_LABEL


@dataclass(frozen=True)
class TaskFacts:
    label: str
    baseline: str  # the loss every other loss is compared against without a declared one
    # what a run selects its epoch on (and a tuned study tunes on) unless trainer.select_on says
    # otherwise; the curves, the dot plot and an undeclared question's verdicts read it too
    metric: str  # the primary metric
    metrics: tuple[str, ...]  # the final test metrics in the tables (summary `test_<metric>`)
    # the metrics of class balance the tables add where the training classes are imbalanced
    # (or the question is about them); the first is then what an undeclared verdict reads
    balance: tuple[str, ...] = ()
    # the metric every two losses are ranked on for calibration: Brier and NLL are proper scoring
    # rules without ECE's binning noise (a perfectly calibrated model scores ECE ~0.015 on 1,000
    # test examples), and Brier is bounded, so one confidently wrong example cannot decide the
    # ranking as in NLL
    calibration: Optional[str] = None
    # test metrics on a scale every loss shares (unlike its criterion), drawn per epoch
    common: tuple[str, ...] = ()


TASKS: dict[str, TaskFacts] = {
    # NaN without a val split (temperature scaling needs one), so left out of the tables there
    Task.single_label.value: TaskFacts("single-label", BASELINE[Task.single_label], "acc",
                                       SINGLE_LABEL + ("nll_ts", "ece_ts"),
                                       ("balanced_acc", "rare_recall"), "brier", ("nll",)),
    Task.multi_label.value: TaskFacts("multi-label", BASELINE[Task.multi_label], "map", MULTI_LABEL),
}
# the metrics a question may name (as its test metric or its selection metric)
DECLARABLE = frozenset(SINGLE_LABEL + CLASS_BALANCE + MULTI_LABEL)


def selectable(task: str) -> frozenset[str]:
    """The metrics a run of `task` may select its epoch on: selection maximises, so only the
    declarable ones where higher is better."""
    return frozenset(m for m in DECLARABLE if METRICS[m].higher_is_better and task in METRICS[m].tasks)


def fallback_baseline(losses: list[str], preferred: str) -> str:
    """`preferred` if it is among `losses` (in the report's order, non-empty); else the first
    task baseline among them (in task order), else the first in the registry's order, else the
    first (a study of bce against bce_logits has no ce)."""
    order = [preferred] + [t.baseline for t in TASKS.values()] + list(LOSSES)
    return next((loss for loss in order if loss in losses), losses[0])
