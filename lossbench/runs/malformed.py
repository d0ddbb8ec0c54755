"""Why a run's files cannot be read as results: a summary.json or a table of the wrong shape or
types (docs/results-schema.md), hand-edited, from another tool, or torn. collect turns such a run
into a `failed` row saying why and leaves its table rows out, so no reader meets them."""

from __future__ import annotations

import numbers
from typing import Any, Optional

import pandas as pd

from lossbench.runs.results import METRICS, PREDICTIONS

STATUSES = ("completed", "running", "failed", "interrupted", "diverged")
PREFIX = "malformed run files: "
# The columns of a run's tables that hold text; every other one holds numbers (or bools).
TEXT_COLUMNS = {"loss", "dataset", "data_source", "split", "scheme", "view"}
REQUIRED = {METRICS: ("epoch", "split"), PREDICTIONS: ("view", "example", "correct")}
TEXT_FIELDS = ("status", "loss", "dataset")
INT_FIELDS = ("seed", "epochs", "epochs_completed")


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool))


def summary_problem(summary: dict) -> Optional[str]:
    """What in a parsed summary.json a reader could not use, or None."""
    for key in TEXT_FIELDS:
        if key in summary and not isinstance(summary[key], str):
            return f"summary.json {key} is {summary[key]!r}, not text"
    if summary.get("status") not in STATUSES:
        return f"summary.json status {summary.get('status')!r} is not one of {', '.join(STATUSES)}"
    for key in INT_FIELDS:
        if key in summary and summary[key] is not None and not is_int(summary[key]):
            return f"summary.json {key} is {summary[key]!r}, not an integer"
    if "config" in summary and not isinstance(summary["config"], dict):
        return f"summary.json config is {type(summary['config']).__name__}, not a mapping"
    for key, value in summary.items():
        if key.startswith("test_") and not is_number(value):
            return f"summary.json {key} is {value!r}, not a number"
    return None


def table_problem(name: str, table: pd.DataFrame) -> Optional[str]:
    """What in a run's table a reader could not use, or None. A table with no rows is no
    problem here (a run that died before its first epoch); collect judges it by the run's status."""
    if table.empty:
        return None
    missing = [column for column in REQUIRED.get(name, ()) if column not in table.columns]
    if missing:
        return f"{name} has no {', '.join(missing)} column"
    for column in table.columns:
        if column in TEXT_COLUMNS or column == "run":
            continue
        kind = table[column].dtype
        if not (pd.api.types.is_numeric_dtype(kind) or pd.api.types.is_bool_dtype(kind)):
            return f"{name} column {column} holds {kind}, not numbers"
    return None
