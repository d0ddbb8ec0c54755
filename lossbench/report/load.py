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
from omegaconf import OmegaConf

from lossbench.runs.collect import CollectError, collect, epochs_table, find_run_dirs, flatten, outdated
from lossbench.config import Study
from lossbench.report.groups import TUNED_KEYS
from lossbench.report.tuning_section import TUNING_TRIAL, mark_tuning

QUESTION = "cfg.question."  # what a run's preset declares (config.QuestionConfig)
STUDY, PAIRS = f"{QUESTION}study", f"{QUESTION}pairs."
# "runs": the per-epoch rows (collect.EPOCHS), read as Inputs.runs
TABLES = ("summary", "runs", "calibration", "steps", "predictions", "per_class", "tuning")
# the statistics need only which test example each run got right, not the probabilities
COLUMNS = {"predictions": ["run", "view", "example", "correct"]}


class ReportInputError(Exception):
    """A DIR the report cannot use, or an output dir it cannot write; the message says which
    and why."""


@dataclass
class Inputs:
    summary: pd.DataFrame  # every run, every status; `run` unique, `input_dir` = the DIR's label
    runs: pd.DataFrame
    calibration: pd.DataFrame
    steps: pd.DataFrame | None
    input_dirs: list[str]  # one label per DIR, in the order given
    predictions: pd.DataFrame | None = None  # per-example test predictions (last | selected)
    per_class: pd.DataFrame | None = None  # per_class.parquet: per epoch, class (or label)
    tuning: pd.DataFrame | None = None  # tuning.parquet of tuned sweeps: one row per trial

    @property
    def compared(self) -> pd.DataFrame:
        """Every run but the tuning trials (report.tuning_section.mark_tuning): the runs compared."""
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


def only(inputs: Inputs, keep: pd.Series) -> Inputs:
    """The inputs of the summary rows `keep` selects: every table cut to their runs."""
    summary = inputs.summary[keep]
    runs = set(summary["run"])

    def cut(table: pd.DataFrame | None) -> pd.DataFrame | None:
        return None if table is None else table[table["run"].isin(runs)].reset_index(drop=True)

    return Inputs(summary.reset_index(drop=True), cut(inputs.runs), cut(inputs.calibration),
                  cut(inputs.steps), [s for s in inputs.input_dirs if (summary["input_dir"] == s).any()],
                  cut(inputs.predictions), cut(inputs.per_class), inputs.tuning)


def joined_inputs(a: Inputs, b: Inputs) -> Inputs:
    def both(x, y):
        return x if y is None else y if x is None else pd.concat([x, y], ignore_index=True)

    return Inputs(both(a.summary, b.summary), both(a.runs, b.runs), both(a.calibration, b.calibration),
                  both(a.steps, b.steps), a.input_dirs + [s for s in b.input_dirs if s not in a.input_dirs],
                  both(a.predictions, b.predictions), both(a.per_class, b.per_class),
                  both(a.tuning, b.tuning))


def split_stress(inputs: Inputs, stress: Inputs | None) -> tuple[Inputs, Inputs | None]:
    """The compared runs, and the stress runs: those of the `stress` DIRs and those whose preset
    declares a stress sweep (question.study: stability), wherever they were given. A DIR of
    stress runs only stays compared: a report needs runs to compare."""
    stressed = inputs.summary[STUDY] == Study.stability.value
    if not stressed.any() or stressed.all():
        return inputs, stress
    moved = only(inputs, stressed)
    return only(inputs, ~stressed), moved if stress is None else joined_inputs(stress, moved)


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
                table["input_dir"] = label
            parts[name].append(table)

    def joined(name: str) -> pd.DataFrame | None:
        if not parts[name]:
            return None
        return pd.concat(parts[name], ignore_index=True).sort_values("run", kind="stable")

    empty = pd.DataFrame({"run": pd.Series([], dtype="str")})
    runs, calibration, tuning = joined("runs"), joined("calibration"), joined("tuning")
    summary = mark_tuning(joined("summary").reset_index(drop=True), tuning)
    return Inputs(
        summary=declare_old_runs(summary),
        runs=(runs if runs is not None else empty).reset_index(drop=True),
        calibration=(calibration if calibration is not None else empty).reset_index(drop=True),
        steps=joined("steps"),
        input_dirs=labels,
        predictions=joined("predictions"),
        per_class=joined("per_class"),
        tuning=tuning,
    )


def preset_question(experiment: str) -> dict:
    """question of conf/experiment/<experiment>.yaml as it reads today, as summary columns
    (cfg.question.<key>); {} without one (or for a name that is no preset's, a path among them)."""
    from lossbench.app import config_path

    path = Path(config_path()) / "experiment" / f"{experiment}.yaml"
    plain = Path(experiment).name == experiment
    question = OmegaConf.load(path).get("question") if plain and path.is_file() else None
    return flatten(OmegaConf.to_container(question), QUESTION) if question else {}


def guessed_study(summary: pd.DataFrame) -> pd.Series:
    """What the report guessed before presets declared a study, from a run's collected row and
    its DIR's (`input_dir`): every run of a DIR whose runs train with label noise is in the noise
    study (its clean runs are noise rate 0), likewise an imbalance ratio above 1; then multi_mnist
    runs are multi-label images, two-class runs binary, runs of an experiment whose name says
    `tuned` or compared at tuned settings (TUNED_KEYS) tuned, the rest shared."""
    def numeric(column: str, default: float) -> pd.Series:
        values = summary[column] if column in summary else pd.Series(default, index=summary.index)
        return pd.to_numeric(values, errors="coerce").fillna(default)

    input_dir = summary["input_dir"] if "input_dir" in summary else pd.Series("", index=summary.index)
    noisy = numeric("cfg.dataset.label_noise", 0).groupby(input_dir).transform("max") > 0
    skewed = numeric("cfg.dataset.imbalance_ratio", 1).groupby(input_dir).transform("max") > 1
    dataset = summary["dataset"].astype("str") if "dataset" in summary else ""
    experiment = (summary["experiment"].astype("str") if "experiment" in summary
                  else pd.Series("", index=summary.index))
    keys = summary[TUNED_KEYS].fillna("").astype("str") if TUNED_KEYS in summary else ""
    tuned = experiment.str.contains(Study.tuned.value) | (keys != "")
    study = pd.Series(Study.shared.value, index=summary.index)
    for key, where in ((Study.binary, numeric("n_classes", 0) == 2), (Study.tuned, tuned),
                       (Study.images, dataset == "multi_mnist"), (Study.imbalance, skewed),
                       (Study.noise, noisy)):
        study = study.where(~where, key.value)  # later lines win: a noisy multi_mnist run is noise
    return study


def declare_old_runs(summary: pd.DataFrame) -> pd.DataFrame:
    """Compatibility with runs collected before every preset declared its study and pairs (the
    committed results/reference/data among them). A run without a declared study takes its
    preset's declaration of the two as it reads today (conf/experiment/<experiment>.yaml); an
    ad-hoc run the study guessed_study gives it. The rest of such a run's question (baseline,
    metric, comparisons) stays undeclared: the report's ad-hoc rules read those as before. The
    one place a declaration is derived rather than read: the report reads the columns filled here."""
    known = {str(s.value) for s in Study}
    declared = (summary[STUDY].astype("str") if STUDY in summary
                else pd.Series("", index=summary.index))
    old = ~declared.isin(known)
    # object first: a categorical column keeps NaN through astype("str")
    experiment = (summary["experiment"].astype("object").fillna("").astype("str")
                  if "experiment" in summary else pd.Series("", index=summary.index))
    filled = summary.copy()
    for name in experiment[old].unique():
        question = preset_question(name)
        rows = old & (experiment == name)
        for column, value in question.items():
            if column == STUDY or column.startswith(PAIRS):
                if column not in filled:
                    filled[column] = pd.Series(None, index=filled.index, dtype="object")
                filled.loc[rows, column] = value
    study = filled[STUDY].astype("str") if STUDY in filled else pd.Series("", index=filled.index)
    filled[STUDY] = study.where(study.isin(known), guessed_study(summary))
    return filled
