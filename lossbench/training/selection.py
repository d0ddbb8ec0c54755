"""Model selection on the validation split: which epoch of a run counts as "selected".

One rule, used by the run (to keep that epoch's test predictions) and by the report (to read the
test metrics at that epoch from the tables): the first epoch with the highest validation value of
the selection metric: the one the preset's question declares (question.selection_metric, e.g.
balanced accuracy on imbalanced data), else the task's primary metric. Never selected on test.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional, Sequence

from lossbench.tasks import TASKS

if TYPE_CHECKING:  # pandas only where the report reads tables: a run never imports it
    import pandas as pd


def selection_metric(task: str, declared: Optional[str] = None) -> Optional[str]:
    """The validation metric a run's selected epoch maximises: the declared one
    (trainer.select_on), else the task's primary (None for an unknown task)."""
    return declared or (TASKS[task].metric if task in TASKS else None)


def select_epoch(values: Sequence[float]) -> Optional[int]:
    """1-based epoch of the first maximum of per-epoch validation values; NaN never wins.
    None when no value is finite."""
    best, best_epoch = -math.inf, None
    for epoch, value in enumerate(values, start=1):
        if value == value and value > best:  # value == value: not NaN
            best, best_epoch = value, epoch
    return best_epoch


def selected_epochs(rows: pd.DataFrame, metric: str) -> pd.Series:
    """Per run, the selected epoch from a runs table (columns run, epoch, split, metric): the
    same rule as select_epoch, applied to each run's `val` rows. Runs without them are absent."""
    import pandas as pd

    val = rows[(rows["split"] == "val") & rows[metric].notna()].sort_values(["run", "epoch"])
    if val.empty:
        return pd.Series(dtype="int64", name="selected_epoch")
    best = val.loc[val.groupby("run")[metric].idxmax()]  # idxmax: the first maximum
    return best.set_index("run")["epoch"].astype("int64").rename("selected_epoch")


class SelectionSoFar:
    """select_epoch applied while a run trains, one val value of `metric` per epoch: the epoch selected so
    far, what the run kept from it (its test predictions) and how many epochs have passed since
    (early stopping's count). The same rule, so the run keeps the epoch the tables select."""

    def __init__(self, metric: str) -> None:
        self.metric = metric  # the validation row's key it follows
        self.values: list[float] = []
        self.kept: Any = None

    @property
    def selected_epoch(self) -> Optional[int]:
        return select_epoch(self.values)

    def observe(self, value: float, keep: Any) -> None:
        """The next epoch's val value, and what to keep should that epoch be the selected one."""
        self.values.append(value)
        if self.selected_epoch == len(self.values):
            self.kept = keep

    def epochs_since_selected(self) -> int:
        return len(self.values) - (self.selected_epoch or 0)
