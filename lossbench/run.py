"""One run, start to end: validate the config, load data, build, train, write results.

Data flows one way: config -> data / model / loss -> train loop -> records -> results files.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from omegaconf import OmegaConf

import lossbench
from lossbench.config import validate
from lossbench.errors import UserError
from lossbench.data import DATASETS, load_dataset
from lossbench.device import resolve_device
from lossbench.losses import LOSSES, TrainingLabels, head_width, loss_label, loss_params
from lossbench.model import build_model
from lossbench.optim import build_optimizer
from lossbench.results import RunFiles, read_summary
from lossbench.train import train

log = logging.getLogger("lossbench")

# Who trains the run `execute` sets up: train.train, unless the batched launcher
# (lossbench.seats) runs this execute in a thread whose training it stacks with other seeds'.
TRAINER: ContextVar[Callable[..., Any]] = ContextVar("lossbench_trainer", default=train)

# Keys that name where or how a run executes, not what it computes: a finished run is reused
# whatever they say.
NOT_RESULT_KEYS = ("resume", "experiment")


def comparable_config(cfg: Any) -> dict:
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    for key in NOT_RESULT_KEYS:
        config.pop(key, None)
    return config


# A diverged run ended by itself with a result a rerun would repeat; failed, interrupted and
# still-running ones are worth another try.
FINISHED = ("completed", "diverged")


def already_finished(run_dir: Path, config: dict) -> bool:
    summary = read_summary(run_dir)
    return bool(summary and summary.get("status") in FINISHED and summary.get("config") == config)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # warn_only: CUDA ops without a deterministic kernel warn instead of stopping the run.
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


class StopFlag:
    """Ctrl-C asks the loop to stop at the next step boundary instead of killing it mid-write."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C means now
            raise KeyboardInterrupt
        self.requested = True
        log.warning("interrupt: stopping after this step (Ctrl-C again to abort)")

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def execute(cfg: Any, run_dir: Path, threads: int, overrides: list[str]) -> dict:
    """Run one configuration into run_dir and return its summary (status `skipped` if an identical
    run had completed or diverged there). Raises UserError, after recording it, for a configuration or data
    the run cannot use."""
    config = comparable_config(cfg)
    if cfg.resume and already_finished(run_dir, config):
        # Printed, not logged: a skipped run's own files, its log included, stay as they were.
        finished = read_summary(run_dir)
        print(f"skipped: {run_dir} already {finished['status']} with this config (resume=false reruns it)")
        return {**finished, "status": "skipped"}  # on disk it keeps its status

    spec_name, dataset_name = cfg.loss.name, cfg.dataset.name
    summary: dict[str, Any] = {
        "status": "running", "error": None,
        "loss": spec_name, "loss_name": spec_name, "dataset": dataset_name, "seed": cfg.seed, "experiment": cfg.experiment,
        "task": DATASETS[dataset_name].task.value if dataset_name in DATASETS else None,
        "epochs": cfg.trainer.epochs, "epochs_completed": 0,
        "torch_version": torch.__version__, "lossbench_version": lossbench.__version__,
        "threads": threads, "config": config, "overrides": overrides,
    }
    files = RunFiles(run_dir, {})
    started = time.perf_counter()

    def finish(status: str, error: Optional[str] = None, **extra) -> dict:
        summary.update(status=status, error=error, wall_time_s=time.perf_counter() - started, **extra)
        summary.update(files.final_test_metrics())
        times = [r["epoch_time_s"] for r in files.metrics if r["split"] == "train"]
        summary["mean_epoch_time_s"] = float(np.mean(times)) if times else None
        files.write_summary(summary)
        return summary

    try:
        validate(cfg)
        files.write_summary(summary)
        generator = seed_everything(cfg.seed)
        torch.set_num_threads(threads)
        device = resolve_device(cfg.trainer.device.name)
        data = load_dataset(cfg.dataset)
    except UserError as error:
        finish("failed", str(error))
        raise
    log.info(f"data: {dataset_name} from {data.origin} ({data.source}; {len(data.x_train)} train / "
             f"{len(data.x_test)} test)")
    spec, params = LOSSES[spec_name], loss_params(cfg.loss)
    label = loss_label(params)
    width = head_width(spec, data.task, data.n_classes)
    try:
        criterion, derived = spec.build(params, TrainingLabels(data.y_train, data.n_classes, width))
    except UserError as error:
        finish("failed", str(error))
        raise
    files.identity = {"loss": label, "dataset": dataset_name, "data_source": data.source, "seed": cfg.seed}
    summary.update(loss=label, loss_derived=derived, data_source=data.source, data_origin=data.origin,
                   n_train=len(data.x_train), n_test=len(data.x_test), n_classes=data.n_classes,
                   outputs=width, device=str(device))
    model = build_model(cfg.model, data.n_features, width).to(device)
    criterion = criterion.to(device)
    optimizer = build_optimizer(cfg.optim, model.parameters())
    data = data.to(device)

    def on_epoch(rows: list[dict], calibration: list[dict], steps: list[dict]) -> None:
        files.add_epoch(rows, calibration, steps)
        if rows:
            summary["epochs_completed"] = rows[0]["epoch"]
            log.info(_epoch_line(rows, cfg.trainer.epochs))

    derived_text = "".join(f", {key} {[round(v, 4) for v in values]}" for key, values in derived.items())
    log.info(f"loss: {label} = {spec.summary} ({spec.reduction}{derived_text}); model: {cfg.model.name} {list(cfg.model.hidden)}; "
             f"device: {device}, {threads} threads, precision {cfg.trainer.precision.name}")
    try:
        with StopFlag() as stop:
            outcome = TRAINER.get()(model, spec, criterion, data, optimizer, cfg.trainer, device, generator,
                                    on_epoch, lambda: stop.requested)
    except UserError as error:
        finish("failed", str(error))
        raise
    except RuntimeError as error:
        # CUDA autocast refuses binary_cross_entropy outright: a finding about that loss, recorded
        # as the run's result rather than a crash.
        if "unsafe to autocast" not in str(error):
            finish("failed", f"{type(error).__name__}: {error}")
            raise
        finish("failed", f"autocast refused this loss: {error}")
        raise UserError(summary["error"]) from None
    except BaseException as error:
        finish("interrupted" if isinstance(error, KeyboardInterrupt) else "failed",
               f"{type(error).__name__}: {error}")
        raise
    return finish(outcome.status, outcome.message, skipped_steps=outcome.skipped_steps)


def _epoch_line(rows: list[dict], epochs: int) -> str:
    train_row, test_row = rows
    main = "acc" if "acc" in test_row else "map"
    return (
        f"epoch {train_row['epoch']}/{epochs}: train loss {train_row['loss_value']:.4f}, "
        f"test loss {test_row['loss_value']:.4f}, test {main} {test_row[main]:.4f} "
        f"({train_row['epoch_time_s']:.2f} s, {train_row['samples_per_s']:,.0f} samples/s)"
    )


def default_threads(launcher: Optional[Any]) -> int:
    """All cores for one run; under a parallel launcher, the share each job can have."""
    cores = os.cpu_count() or 1
    target = str(launcher.get("_target_", "")) if launcher is not None else ""
    if "joblib" in target:
        jobs = launcher.get("n_jobs", -1)
        jobs = cores if jobs is None or jobs < 1 else jobs
        return max(1, cores // jobs)
    if "submitit" in target:
        # Slurm allocates cpus_per_task to each job; submitit's local executor starts every job
        # of the grid at once, so one thread each is the only share that never oversubscribes.
        return launcher.get("cpus_per_task") or 1
    return cores
