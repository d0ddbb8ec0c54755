"""An equal tuning budget per loss: each loss's search space as a grid of trials, the trial whose
validation primary metric is best, and the table that records them (DIR/tuning.parquet).

The Hydra side (which jobs to launch, in which stage) is hydra_plugins/lossbench_tuned_sweeper;
this module holds what it decides from: plain data in, plain data out.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import pandas as pd
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException

from lossbench.errors import ConfigError
from lossbench.runs.results import METRICS, SUMMARY, TUNING, read_run_table, read_summary, write_table
from lossbench.runs.results_schema import TUNING_PARQUET
from lossbench.training.selection import select_epoch, selection_metric

COLUMNS = tuple(column.name for column in TUNING_PARQUET.columns)  # tuning.parquet's, in order


@dataclass(frozen=True)
class Space:
    """One loss's search space: each tuned key with its values, in the order written, as Hydra
    sweep strings (`optim.lr: 3e-4,1e-3,3e-3`, `loss.gamma: range(1,3)`)."""
    loss: str
    values: dict[str, list[str]]

    @classmethod
    def parse(cls, loss: str, keys: Mapping[str, Any]) -> "Space":
        if not isinstance(keys, Mapping):
            raise ConfigError(f"hydra.sweeper.space.{loss}={keys!r}: a space maps each tuned key to its values, "
                              f"e.g. {{optim.lr: '1e-3,3e-3'}}")
        # A YAML list is the same values as a comma-separated sweep string.
        lines = [f"{key}={','.join(map(str, value)) if isinstance(value, (list, tuple)) else value}"
                 for key, value in keys.items()]
        try:
            parsed = OverridesParser.create().parse_overrides(lines)
        except OverrideParseException as error:  # it says where the text went wrong
            raise ConfigError(f"hydra.sweeper.space.{loss}: {error}") from None
        values = {o.get_key_element(): list(o.sweep_string_iterator()) if o.is_sweep_override()
                  else [o.get_value_element_as_str()] for o in parsed}
        return cls(loss, values)

    def grid(self) -> list[list[str]]:
        """Every trial's overrides, the first key varying slowest: the grid order ties go by."""
        return [[f"{key}={value}" for key, value in zip(self.values, point)]
                for point in itertools.product(*self.values.values())]

    @property
    def size(self) -> int:
        return math.prod(len(values) for values in self.values.values())

    def text(self) -> str:
        """As it would be typed on the command line: `optim.lr=0.0003,0.001 loss.gamma=1,2`."""
        return " ".join(f"{key}={','.join(values)}" for key, values in self.values.items())


def require_validation(dataset: Any) -> None:
    """Trials are chosen on the validation split; a dataset config without one cannot tune."""
    fraction = dataset.get("val_fraction")
    if not fraction:
        raise ConfigError(f"dataset.val_fraction={fraction}: tuning chooses each loss's setting on the "
                          "validation split, so it needs one (a fraction > 0 of the training set)")


def check_budget(spaces: list[Space], budget: int) -> None:
    """Every loss gets exactly `budget` trials, or nothing runs."""
    if budget < 1:
        raise ConfigError(f"hydra.sweeper.budget={budget} is not accepted: it must be an integer >= 1")
    unequal = [f"{space.loss} has {space.size} ({space.text()})" for space in spaces if space.size != budget]
    if unequal:
        raise ConfigError(f"hydra.sweeper.budget={budget} trials per loss, but "
                          + "; ".join(unequal)
                          + ": give every loss a space of exactly the budget's size")


@dataclass(frozen=True)
class Validation:
    """A finished trial as the choice sees it: its status and its validation primary metric at
    its selected epoch (NaN and None when it has no usable validation rows, `problem` says why)."""
    status: str
    metric: Optional[str]
    value: float
    selected_epoch: Optional[int]
    problem: Optional[str] = None


def read_validation(run_dir: Path) -> Validation:
    """From the run's summary.json (status, task) and its metrics.parquet `val` rows, selected by
    lossbench.training.selection's one rule. A run that died before its first epoch ended has a table
    without rows or columns; a damaged one may lack columns or hold text: no value, never a crash."""
    summary = read_summary(run_dir)
    if not isinstance(summary, dict):
        return Validation("missing", None, math.nan, None, f"no readable {SUMMARY}")
    status = str(summary.get("status"))
    declared = ((summary.get("config") or {}).get("trainer") or {}).get("select_on")
    metric = selection_metric(summary.get("task"), declared)
    if metric is None:
        return Validation(status, None, math.nan, None, f"task {summary.get('task')!r} has no primary metric")
    try:
        table = read_run_table(run_dir, METRICS)
        if table is None:
            raise FileNotFoundError(run_dir / METRICS)
        rows = table.to_pandas()
    except Exception as error:  # noqa: BLE001 - absent, torn or not parquet: pyarrow raises several kinds
        return Validation(status, metric, math.nan, None, f"{METRICS} unreadable ({type(error).__name__})")
    missing = [column for column in ("epoch", "split", metric) if column not in rows]
    if missing:
        return Validation(status, metric, math.nan, None, f"{METRICS} has no {', '.join(missing)} column")
    val = rows[rows["split"] == "val"]
    val = pd.DataFrame({"epoch": pd.to_numeric(val["epoch"], errors="coerce"),
                        "value": pd.to_numeric(val[metric], errors="coerce")})
    val = val.dropna(subset=["epoch"]).sort_values("epoch")
    position = select_epoch(val["value"].tolist())
    if position is None:
        return Validation(status, metric, math.nan, None, f"no finite validation {metric}")
    best = val.iloc[position - 1]
    return Validation(status, metric, float(best["value"]), int(best["epoch"]))


def choose(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials (index and order kept) with `chosen` marking per loss the completed trial with
    the highest val_value (the primary metrics are higher-is-better); ties go to the first in
    grid order (`trial`). A trial that did not complete (diverged, failed, interrupted) is never
    chosen: its setting would not train the comparison."""
    in_grid_order = trials.sort_values("trial", kind="stable")
    eligible = in_grid_order[(in_grid_order["status"] == "completed") & in_grid_order["val_value"].notna()]
    best = eligible.groupby("loss_name", sort=False)["val_value"].idxmax()  # idxmax: the first maximum
    return trials.assign(chosen=trials.index.isin(best.values))


def ineligible(status: str, value: float, problem: Optional[str]) -> Optional[str]:
    """Why `choose` passes a trial over (it did not complete, or has no validation value), or None."""
    if status != "completed":
        return f"it ended {status}" + (f" ({problem})" if problem else "")
    if value != value:  # NaN
        return problem or "no validation value"
    return None


def write_tuning(sweep_dir: Path, trials: pd.DataFrame) -> Path:
    path = sweep_dir / TUNING
    write_table(path, trials.loc[:, list(COLUMNS)])
    return path
