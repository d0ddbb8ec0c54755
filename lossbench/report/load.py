"""Read the collected tables of one or more DIRs, collecting a DIR first if it has none or if
they are older than its runs (collect.outdated).

The report is a function of these tables alone. Bad input raises ReportInputError, whose message
names the DIR; the CLI turns it into exit code 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from lossbench.collect import CollectError, collect, epochs_table, find_run_dirs, outdated
from lossbench.report.tuning import TUNING_TRIAL, mark_tuning

# "runs": the per-epoch rows (collect.EPOCHS), read as Inputs.runs
TABLES = ("summary", "runs", "calibration", "steps", "predictions", "per_class", "tuning")
# the statistics need only which test example each run got right, not the probabilities
COLUMNS = {"predictions": ["run", "view", "example", "correct"]}


class ReportInputError(Exception):
    """A DIR the report cannot use, or an output dir it cannot write; the message says which
    and why."""


@dataclass
class Inputs:
    summary: pd.DataFrame  # every run, every status; `run` unique, `source` = the DIR's label
    runs: pd.DataFrame
    calibration: pd.DataFrame
    steps: pd.DataFrame | None
    sources: list[str]  # one label per DIR, in the order given
    predictions: pd.DataFrame | None = None  # per-example test predictions (last | selected)
    per_class: pd.DataFrame | None = None  # per_class.parquet: per epoch, class (or label)
    tuning: pd.DataFrame | None = None  # tuning.parquet of tuned sweeps: one row per trial

    @property
    def compared(self) -> pd.DataFrame:
        """Every run but the tuning trials (report.tuning.mark_tuning): the runs compared."""
        if TUNING_TRIAL not in self.summary:
            return self.summary
        return self.summary[~self.summary[TUNING_TRIAL]]

    @property
    def completed(self) -> pd.DataFrame:
        return self.compared[self.compared["status"] == "completed"]

    @property
    def excluded(self) -> pd.DataFrame:
        return self.compared[self.compared["status"] != "completed"]


def read_dir(directory: Path, say: Callable[[str], None]) -> dict[str, pd.DataFrame | None]:
    if not directory.exists():
        raise ReportInputError(f"{directory} does not exist")
    if not directory.is_dir():
        raise ReportInputError(f"{directory} is not a directory")
    run_dirs = find_run_dirs(directory)
    if not (directory / "summary.parquet").exists() and not run_dirs:
        raise ReportInputError(
            f"{directory} holds no runs (no summary.parquet, no summary.json under it)"
        )
    reason = outdated(directory, run_dirs)
    if reason is not None:  # a report on stale tables would silently leave runs out
        say(f"{directory} {reason}: collecting it first")
        try:
            collect(directory)
        except CollectError as e:
            raise ReportInputError(str(e)) from None
    tables = {}
    for name in TABLES:
        path = epochs_table(directory) if name == "runs" else directory / f"{name}.parquet"
        try:
            tables[name] = (pd.read_parquet(path, columns=COLUMNS.get(name)) if path.exists()
                            else None)
        except Exception as e:  # noqa: BLE001 - a torn parquet file raises many kinds
            raise ReportInputError(f"{path} is unreadable ({e}); rerun python -m lossbench.collect")
    summary = tables["summary"]
    if summary is None or summary.empty:
        raise ReportInputError(f"{directory} holds no runs (summary.parquet is empty)")
    if not (summary["status"] == "completed").any():
        counts = summary["status"].value_counts().sort_index()
        listed = ", ".join(f"{n} {status}" for status, n in counts.items())
        raise ReportInputError(
            f"{directory} holds no completed runs ({listed}): nothing to compare"
        )
    return tables


def labels_for(dirs: list[Path]) -> list[str]:
    """Short unique labels (the dir names) to prefix run ids with; never absolute paths."""
    labels = []
    for d in dirs:
        base = d.resolve().name or "root"
        label, k = base, 2
        while label in labels:
            label, k = f"{base}-{k}", k + 1
        labels.append(label)
    return labels


def load(dirs: list[str | Path], say: Callable[[str], None] = print) -> Inputs:
    dirs = [Path(d) for d in dirs]
    labels = labels_for(dirs)
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLES}
    for directory, label in zip(dirs, labels):
        tables = read_dir(directory, say)
        for name, table in tables.items():
            if table is None:
                continue
            table = table.copy()
            if len(dirs) > 1:  # keep run ids unique across DIRs
                table["run"] = label + "/" + table["run"].astype("str")
            if name in ("summary", "tuning"):  # tuning: which DIR's runs its keys were tuned in
                table["source"] = label
            parts[name].append(table)

    def joined(name: str) -> pd.DataFrame | None:
        if not parts[name]:
            return None
        return pd.concat(parts[name], ignore_index=True).sort_values("run", kind="stable")

    empty = pd.DataFrame({"run": pd.Series([], dtype="str")})
    runs, calibration, tuning = joined("runs"), joined("calibration"), joined("tuning")
    return Inputs(
        summary=mark_tuning(joined("summary").reset_index(drop=True), tuning),
        runs=(runs if runs is not None else empty).reset_index(drop=True),
        calibration=(calibration if calibration is not None else empty).reset_index(drop=True),
        steps=joined("steps"),
        sources=labels,
        predictions=joined("predictions"),
        per_class=joined("per_class"),
        tuning=tuning,
    )
