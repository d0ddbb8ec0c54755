"""Optional experiment trackers (MLflow, TensorBoard): a copy of what a run writes, for the tools
users already browse. The run's files stay the source of truth: a tracker that fails is a
warning and is dropped, never a lost run. A tracker's package is imported only when it is on.

Names, the same in both tools: `train/<metric>` and `test/<metric>` per epoch (step = epoch),
`steps/<signal>` for the stability signals (step = training step), `summary/<key>` for the
final summary's numbers; the config as MLflow params and TensorBoard hparams.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Optional

from lossbench.runs.owned import Manifest, require_real_dirs

log = logging.getLogger("lossbench")

# How a run's status reads in MLflow: a diverged run is a result, but one to spot at a glance.
MLFLOW_STATUS = {"completed": "FINISHED", "diverged": "FAILED", "failed": "FAILED", "interrupted": "KILLED"}


def scalars(row: dict, prefix: str, skip: tuple[str, ...]) -> dict[str, float]:
    """A record's numbers as `prefix/name`. NaN is left out: on an epoch row it means not
    measured (test rows have no epoch time); on a step row the non-finite counters say it."""
    return {f"{prefix}/{key}": float(value) for key, value in row.items()
            if key not in skip and isinstance(value, (int, float)) and not isinstance(value, bool)
            and not math.isnan(value)}


def epoch_scalars(rows: list[dict]) -> dict[str, float]:
    return {name: value for row in rows for name, value in scalars(row, row["split"], ("epoch",)).items()}


def summary_scalars(summary: dict) -> dict[str, float]:
    return scalars(summary, "summary", ("seed", "epochs", "threads", "n_classes"))


class Tracker:
    """What every tracker logs as a run goes; each says how it writes named numbers at a step."""

    def _log(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def log_epoch(self, rows: list[dict], steps: list[dict]) -> None:
        if rows:
            self._log(epoch_scalars(rows), rows[0]["epoch"])
        for row in steps:
            self._log(scalars(row, "steps", ("step", "epoch")), row["step"])


# MLflow's own HTTP defaults retry a server that is down for about two minutes (7 retries,
# backoff factor 2, 120 s timeout) before the run may start. A tracker is a copy of the run's
# files: it gets a few seconds, then the run goes on without it. A user's own settings win.
MLFLOW_HTTP_BOUNDS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                      "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def mlflow_experiment(options: Any, preset: Optional[str]) -> tuple[Any, str]:
    """A client of the tracking store and the id of the run's experiment (one per preset: a
    sweep's runs side by side), created if new. The first client creates a new store's tables."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    for key, value in MLFLOW_HTTP_BOUNDS.items():  # read by MLflow at every request
        os.environ.setdefault(key, value)

    client = MlflowClient(tracking_uri=options.tracking_uri)
    name = options.experiment or preset or "lossbench"
    found = client.get_experiment_by_name(name)
    if found is not None:
        return client, found.experiment_id
    try:
        return client, client.create_experiment(name)
    except MlflowException:  # a parallel job created it first
        return client, client.get_experiment_by_name(name).experiment_id


def prepare_sweep(cfg: Any) -> None:
    """Before a sweep's jobs start (in parallel, under joblib): create the MLflow store and the
    experiment once, which parallel jobs would race to create, some losing their logging."""
    from lossbench.config import missing_trackers

    if cfg.logger.mlflow is None or missing_trackers(cfg.logger):  # each job refuses it with a message
        return
    try:
        mlflow_experiment(cfg.logger.mlflow, cfg.experiment)
    except Exception as error:
        log.warning(f"warning: logger=mlflow: {type(error).__name__}: {error}")


class MlflowTracker(Tracker):
    """One MLflow run per lossbench run, named after its run dir, the config as its params."""

    def __init__(self, options: Any, run_dir: Path, config: dict, preset: Optional[str]):
        from mlflow.entities import Param

        from lossbench.runs.collect import flatten  # here: collect imports pandas, which a run otherwise never does

        self.client, experiment_id = mlflow_experiment(options, preset)
        run = self.client.create_run(experiment_id, run_name=run_dir.name,
                                     tags={"lossbench.run_dir": str(run_dir.resolve())})
        self.run_id = run.info.run_id
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in flatten(config, "").items()])

    def _log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(name, value, now, step) for name, value in values.items()]
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics a batch
            self.client.log_batch(self.run_id, metrics=metrics[start : start + 1000])

    def finish(self, summary: dict) -> None:
        from mlflow.entities import RunTag

        self._log(summary_scalars(summary), summary["epochs_completed"])
        tags = [RunTag(f"lossbench.{key}", value[:5000]) for key, value in summary.items() if isinstance(value, str)]
        self.client.log_batch(self.run_id, tags=tags)
        self.client.set_terminated(self.run_id, MLFLOW_STATUS.get(summary["status"], "FAILED"))


class TensorboardTracker(Tracker):
    """Event files in a subdirectory of the run directory (config validation keeps it inside).
    A rerun removes the event files an earlier run listed in the run dir's manifest, as its
    parquet files are replaced; any other file there stays (lossbench.runs.owned)."""

    def __init__(self, options: Any, run_dir: Path, config: dict, preset: Optional[str]):
        from torch.utils.tensorboard import SummaryWriter

        from lossbench.runs.collect import flatten  # as in MlflowTracker

        self.manifest, self.dir = Manifest(run_dir, "tensorboard"), PurePosixPath(options.dir).as_posix()
        require_real_dirs(run_dir, self.dir)
        self.manifest.release(keep=())
        self.before = self._files()
        self.writer = SummaryWriter(log_dir=str(run_dir / self.dir))
        self._claim_new()  # the writer created its event file: listed before anything can die
        self.config = flatten(config, "")

    def _files(self) -> set[str]:
        root = self.manifest.root
        return {path.relative_to(root).as_posix() for path in (root / self.dir).glob("events.out.tfevents.*")
                if path.is_file() and not path.is_symlink()}

    def _claim_new(self) -> None:
        self.manifest.claim(self._files() - self.before)

    def _log(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def log_epoch(self, rows: list[dict], steps: list[dict]) -> None:
        super().log_epoch(rows, steps)
        self.writer.flush()  # a run that dies keeps its curves

    def finish(self, summary: dict) -> None:
        text = {key: value for key, value in summary.items() if key not in ("config", "overrides")}
        self.writer.add_text("summary", f"```\n{json.dumps(text, indent=2, default=str)}\n```")
        # add_hparams also logs the summary's numbers as scalars. run_name=".": the HParams tab
        # shows this run's config beside them, in this run's own directory rather than a new one.
        self.writer.add_hparams(self.config, summary_scalars(summary), run_name=".",
                                global_step=summary["epochs_completed"])
        self.writer.close()
        self._claim_new()  # add_hparams wrote a second event file


TRACKERS = {"mlflow": MlflowTracker, "tensorboard": TensorboardTracker}


class Trackers:
    """The trackers the config switches on (`logger=...`), started once the config is valid."""

    def __init__(self, cfg: Any, run_dir: Path):
        self.wanted = {name: options for name, options in cfg.logger.items() if options is not None}
        self.run_dir, self.preset = run_dir, cfg.experiment
        self.active: dict[str, Any] = {}

    def start(self, config: dict) -> None:
        for name, options in self.wanted.items():
            tracker = self._guard(name, lambda: TRACKERS[name](options, self.run_dir, config, self.preset))
            if tracker is not None:
                self.active[name] = tracker

    def log_epoch(self, rows: list[dict], steps: list[dict]) -> None:
        for name, tracker in list(self.active.items()):
            self._guard(name, lambda: tracker.log_epoch(rows, steps))

    def finish(self, summary: dict) -> None:
        for name, tracker in list(self.active.items()):
            self._guard(name, lambda: tracker.finish(summary))
        self.active.clear()

    def _guard(self, name: str, call: Callable[[], Any]) -> Any:
        """call()'s result; if it raises, a warning, None, and the tracker is dropped."""
        try:
            return call()
        except Exception as error:
            self.active.pop(name, None)
            log.warning(f"warning: logger={name} stopped logging this run ({type(error).__name__}: "
                        f"{error}); its files in {self.run_dir} are complete")
            return None
