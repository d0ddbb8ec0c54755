"""The two views of a group's test metrics: at the last epoch, and at the epoch selected on
validation.

`last` is a fixed budget: every run's test metrics after its final epoch (summary.parquet).
`selected` reads each run's test row at the epoch lossbench.training.selection picks from that run's `val`
rows (epochs.parquet): the rule the run itself used to keep its predictions, never a look at test.
Both views come out as frames shaped like a group's summary rows (run, loss, seed, epoch,
test_<metric>), so every table downstream is computed the same way for either.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from lossbench.report.groups import Group
from lossbench.training.selection import selected_epochs

LABELS = {"last": "the last epoch, a fixed budget",
          "selected": "the epoch selected on validation"}


@dataclass
class Views:
    frames: dict[str, pd.DataFrame]  # view -> one row per run: run, loss, seed, epoch, test_<m>
    note: str  # why a view is missing or has fewer runs; "" when both are complete

    declared: str | None = None  # the question's view, where it declares one

    @property
    def primary(self) -> str:
        """The view every verdict and table reads: the declared one where the runs allow it,
        else selected where validation allows it, else last."""
        if self.declared in self.frames:
            return self.declared
        return "selected" if "selected" in self.frames else "last"


def last_view(group: Group) -> pd.DataFrame:
    frame = group.runs.copy()
    epochs = frame["epochs_completed"] if "epochs_completed" in frame.columns else pd.NA
    frame["epoch"] = pd.to_numeric(epochs, errors="coerce")
    return frame


def selected_view(group: Group, runs: pd.DataFrame) -> tuple[pd.DataFrame | None, str]:
    """Test metrics at each run's val-selected epoch, and what kept runs out of the view."""
    metric = group.selection_metric
    mine = runs[runs["run"].isin(group.runs["run"])] if "split" in runs.columns else runs.iloc[0:0]
    has_val = (mine["split"] == "val").any() if len(mine) else False
    if not has_val:
        return None, ("Only the `last` view: no run of this group has validation rows "
                      "(trained with dataset.val_fraction=0, or before the validation split "
                      "existed), and an epoch chosen on test would flatter every loss.")
    if metric not in mine.columns:
        return None, f"Only the `last` view: the validation rows carry no {metric} to select on."
    epochs = selected_epochs(mine, metric)
    test = mine[mine["split"] == "test"]
    picked = test.merge(epochs.rename("epoch").reset_index(), on=["run", "epoch"])
    metrics = [m for m in group.metrics if m in picked.columns]
    values = picked[["run", "epoch", *metrics]].rename(columns={m: f"test_{m}" for m in metrics})
    identity = group.runs[["run", "loss", "seed"]]
    frame = identity.merge(values, on="run").sort_values("run").reset_index(drop=True)
    missing = len(group.runs) - len(frame)
    if frame.empty:
        return None, (f"Only the `last` view: no run of this group has a {metric} on validation "
                      "and a test row at that epoch.")
    note = ""
    if missing:
        note = (f"The `selected` view leaves out {missing} of {len(group.runs)} runs: they have "
                f"no validation {metric} (or no test row at the selected epoch).")
    return frame, note


def views(group: Group, runs: pd.DataFrame) -> Views:
    selected, note = selected_view(group, runs)
    frames = {"last": last_view(group)}
    if selected is not None:
        frames["selected"] = selected
    return Views(frames, note, group.view)


def predictions_of(group: Group, predictions: pd.DataFrame | None, view: str) -> pd.DataFrame:
    """The group's per-example test predictions in one view: run, loss, seed, example, correct."""
    columns = ["run", "loss", "seed", "example", "correct"]
    if predictions is None or predictions.empty or "view" not in predictions.columns:
        return pd.DataFrame(columns=columns)
    rows = predictions[(predictions["view"] == view)
                       & predictions["run"].isin(group.runs["run"])][["run", "example", "correct"]]
    return rows.merge(group.runs[["run", "loss", "seed"]], on="run")[columns]
