"""One run, start to end: validate the config, load data, build, train, write results.

Data flows one way: config -> data / model / loss -> train loop -> records -> results files.

The training is handed over: `stages` is the run as a generator that yields its `Run` (what the
loop needs) where training starts and takes back the loop's Outcome. `execute` trains it alone
(`train_alone`); the batched launcher takes the Runs of several seeds' stages, trains them as one
stack (train.train_runs) and hands each its Outcome (`hand_back`), in this process and thread.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import signal
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from contextlib import nullcontext
from typing import Any, Generator, Optional, Union

import numpy as np
import torch
from omegaconf import OmegaConf

import lossbench
from lossbench.training.autocast_ops import autocast_dtypes
from lossbench.config import BOOKKEEPING_KEYS, validate
from lossbench.training.determinism import use_deterministic_algorithms
from lossbench.errors import UserError, write_failure
from lossbench.data import DATASETS, load_dataset, on_device
from lossbench.training.device import resolve_device
from lossbench.losses import LOSSES, TrainingLabels, head_width, loss_label, loss_params
from lossbench.training.model import build_model, describe
from lossbench.training.optim import build_optimizer
from lossbench.runs.owned import refuse_planted_links
from lossbench.training.recipe import Recipe
from lossbench.runs.results import (RUN_FILES, RunDirLock, RunFiles, read_summary, remove_journal, temp_files,
                                    unreadable_files)
from lossbench.training.selection import selection_metric
from lossbench.signals import Interrupted, StopFlag
from lossbench.runs.trackers import Trackers
from lossbench.training.train import Outcome, Run, train

log = logging.getLogger("lossbench")

# A run's stages: they yield its Run, take its Outcome and return what the run returns.
Stages = Generator[Run, Union[Outcome, BaseException], Any]


def comparable_config(cfg: Any) -> dict:
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    # the question stays: it is in the run's saved config, where the report reads it
    for key in BOOKKEEPING_KEYS:
        config.pop(key, None)
    return config


# A diverged run ended by itself with a result a rerun would repeat; failed, interrupted and
# still-running ones are worth another try.
FINISHED = ("completed", "diverged")


def already_finished(run_dir: Path, config: dict, dataset_cfg: Any) -> bool:
    """A finished run with this config, on the data a run would load now, whose files are all
    readable. Anything less is run again, saying why when it looked finished."""
    summary = read_summary(run_dir)
    if not (summary and summary.get("status") in FINISHED and summary.get("config") == config):
        return False
    source = DATASETS[dataset_cfg.name].source_now(dataset_cfg)
    problems = unreadable_files(run_dir, summary)
    if summary.get("data_source") != source:
        problems.append(f"it trained on the {summary.get('data_source')} data, a run now loads the {source} data")
    for problem in problems:
        print(f"rerunning {run_dir}: {problem}")
    return not problems


@functools.cache
def source_commit() -> str:
    """The git commit of the lossbench source that runs, or "unknown" outside a git checkout."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(lossbench.__file__).parent,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    use_deterministic_algorithms()
    return torch.Generator().manual_seed(seed)


def execute(cfg: Any, run_dir: Path, threads: int, overrides: list[str]) -> dict:
    """Run one configuration into run_dir, trained alone, and return its summary (status `skipped`
    if an identical run had completed or diverged there). See `stages` for every way out."""
    return train_alone(stages(cfg, run_dir, threads, overrides))


def train_alone(job: Stages) -> Any:
    """Drive a run's stages with the loop training its Run alone; what they return."""
    try:
        run = next(job)
    except StopIteration as ended:  # skipped, or ended before training
        return ended.value
    try:
        with run.stop.deferred():
            outcome = train(run)
    except BaseException as error:
        return hand_back(job, error)
    return hand_back(job, outcome)


def hand_back(job: Stages, outcome: Union[Outcome, BaseException]) -> Any:
    """The Outcome of a run's training (or what the training raised) back to its stages, which
    end the run; what they return (or raise)."""
    try:
        if isinstance(outcome, BaseException):
            job.throw(outcome)
        else:
            job.send(outcome)
    except StopIteration as ended:
        return ended.value
    raise RuntimeError("a run's stages hand their training over once")


def stages(cfg: Any, run_dir: Path, threads: int, overrides: list[str], stop: Optional[StopFlag] = None) -> Stages:
    """`execute` with the training handed over: yields the run's Run where training starts and
    takes back its Outcome (or the exception the training raised, thrown in), then returns the
    summary. `stop`: a StopFlag its caller entered and shares between several runs (the batched
    launcher's seeds), else the run enters its own.

    One writer per run dir: RunDirBusy, recording nothing, if another process holds it; PlantedLink,
    recording nothing, if a symlink sits where the run would write (lossbench.runs.owned). Every way
    out records a final status in summary.json first: UserError (a configuration or data the run
    cannot use) and any other exception as `failed` with the error, a stop signal as `interrupted`
    (raised as Interrupted). The exception is then raised again. A stop signal that arrives while
    a final status is written, or after the last step, raises Interrupted once it is written."""
    with RunDirLock(run_dir):
        refuse_planted_links(run_dir, RUN_FILES)
        for leftover in temp_files(run_dir):  # a killed writer's; no one else writes here now
            leftover.unlink(missing_ok=True)
        return (yield from _execute(cfg, run_dir, threads, overrides, stop))


def _execute(cfg: Any, run_dir: Path, threads: int, overrides: list[str], shared: Optional[StopFlag]) -> Stages:
    config = comparable_config(cfg)
    if cfg.resume and already_finished(run_dir, config, cfg.dataset):
        # Printed, not logged: a skipped run's own files, its log included, stay as they were.
        finished = read_summary(run_dir)
        print(f"skipped: {run_dir} already {finished['status']} with this config (resume=false reruns it)")
        return {**finished, "status": "skipped"}  # on disk it keeps its status
    remove_journal(run_dir)  # a killed run's (the resume check above read it), which this run replaces

    spec_name, dataset_name = cfg.loss.name, cfg.dataset.name
    summary: dict[str, Any] = {
        "status": "running", "error": None,
        "loss": spec_name, "loss_name": spec_name, "dataset": dataset_name, "seed": cfg.seed,
        "experiment": cfg.experiment,
        # file data: known once read (_train_run sets it)
        "task": getattr(DATASETS[dataset_name].task if dataset_name in DATASETS else None, "value", None),
        "epochs": cfg.trainer.epochs, "epochs_completed": 0, "stopped_early": False, "selected_epoch": None,
        "torch_version": torch.__version__, "lossbench_version": lossbench.__version__,
        "lossbench_commit": source_commit(),
        "threads": threads, "config": config, "overrides": overrides,
    }
    files = RunFiles(run_dir, {})
    trackers = Trackers(cfg, run_dir)
    started = time.perf_counter()

    with nullcontext(shared) if shared else StopFlag() as stop:

        def finish(status: str, error: Optional[str] = None, **extra) -> dict:
            with stop.held():  # a signal now would leave the run `running`: noted, acted on after
                summary.update(status=status, error=error, wall_time_s=time.perf_counter() - started,
                               finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra)
                summary.update(files.final_test_metrics())
                summary["selected_epoch"] = files.selected_epoch(selection_metric(summary["task"], cfg.trainer.select_on))
                for key in ("epoch_time_s", "eval_time_s"):
                    times = [r[key] for r in files.metrics if r["split"] == "train"]
                    summary[f"mean_{key}"] = float(np.mean(times)) if times else None
                try:
                    files.write_tables()
                except Exception as write_error:  # noqa: BLE001 - a full disk, a planted link: the journal
                    # stays, readers read it, and the run's status is still recorded
                    log.error(f"could not write the tables of {run_dir}: {write_error}")
                try:
                    files.write_summary(summary)
                except OSError as write_error:  # a full disk can refuse even this small file
                    log.error(f"could not record status {status} in {run_dir}: {write_error}")
            trackers.finish(summary)
            return summary

        try:
            validate(cfg)
            files.write_summary(summary)
            trackers.start(config)
            outcome = yield from _train_run(cfg, files, trackers, summary, threads, stop)
        except BaseException as error:
            # Anything else (a bug, memory, a full disk) is recorded as well; a stop signal outside
            # the training loop (during data loading, say) arrives here as Interrupted.
            if isinstance(error, UserError):
                finish("failed", str(error))
            elif isinstance(error, KeyboardInterrupt):
                finish("interrupted", f"interrupted by {str(error) or 'SIGINT'}")
            else:
                finish("failed", write_failure(error) or f"{type(error).__name__}: {error}")
            if stop.requested and not isinstance(error, KeyboardInterrupt):
                raise Interrupted(stop.signum) from error
            raise
        steps = dict(skipped_steps=outcome.skipped_steps, scaler_skipped_steps=outcome.scaler_skipped_steps,
                     first_nonfinite_step=outcome.first_nonfinite_step, first_nonfinite=outcome.first_nonfinite,
                     untrained_epochs=files.untrained_epochs(outcome.epochs_completed))
        if outcome.status == "interrupted":  # the loop stopped at a step boundary
            finish("interrupted", f"interrupted by {signal.Signals(stop.signum).name}", **steps)
            raise Interrupted(stop.signum)
        if outcome.stopped_early:
            log.info(f"stopped early after epoch {outcome.epochs_completed}: validation "
                     f"{selection_metric(summary['task'], cfg.trainer.select_on)} "
                     f"has not improved for {cfg.trainer.early_stop_patience} epochs")
        status, message = _status_after_skips(outcome, steps["untrained_epochs"])
        finish(status, message, stopped_early=outcome.stopped_early, **steps)
    if stop.requested:  # after the last step: the run is finished, and the command stops here
        raise Interrupted(stop.signum)
    return summary


def _status_after_skips(outcome: Outcome, untrained: list[int]) -> tuple[str, Optional[str]]:
    """A run whose every step was skipped for a non-finite value never changed its weights: it
    diverged, whatever the loop says. Epochs skipped whole in a run that trained otherwise are
    warned about (summary.json lists them as untrained_epochs)."""
    if outcome.status != "completed" or not untrained:
        return outcome.status, outcome.message
    cause = "had a non-finite loss or gradient and was skipped (trainer.on_nonfinite=skip)"
    if len(untrained) == outcome.epochs_completed:
        return "diverged", f"every one of the {outcome.skipped_steps} steps {cause}: the weights never changed"
    log.warning(f"every step of epoch {', '.join(map(str, untrained))} {cause}: the weights did not change "
                "in that epoch")
    return outcome.status, outcome.message


def _train_run(cfg: Any, files: RunFiles, trackers: Trackers, summary: dict, threads: int,
               stop: StopFlag) -> Stages:
    """Load, build, hand the training over; what it learns about the run goes into `summary` as
    it goes. Returns the training's Outcome."""
    dataset_name = cfg.dataset.name
    generator = seed_everything(cfg.seed)
    torch.set_num_threads(threads)
    device = resolve_device(cfg.trainer.device.name)
    data = load_dataset(cfg.dataset)
    log.info(f"data: {dataset_name} from {data.origin} ({data.source}; {len(data.x_train)} train / "
             f"{0 if data.x_val is None else len(data.x_val)} val / {len(data.x_test)} test)")
    spec, params = LOSSES[cfg.loss.name], loss_params(cfg.loss)
    label = loss_label(params)
    width = head_width(spec, data.task, data.n_classes)
    criterion, derived = spec.build(params, TrainingLabels(data.y_train, data.n_classes, width))
    files.identity = {"loss": label, "dataset": dataset_name, "data_source": data.source, "seed": cfg.seed}
    summary.update(task=data.task.value, loss=label, loss_derived=derived, data_source=data.source, data_origin=data.origin,
                   n_train=len(data.x_train), n_test=len(data.x_test), n_classes=data.n_classes,
                   n_val=0 if data.x_val is None else len(data.x_val),
                   outputs=width, device=str(device), **data.info)
    model = build_model(cfg.model, data.n_features, width, data.image_shape, data.inputs(data.x_train[:2])).to(device)
    criterion = criterion.to(device)
    optimizer = build_optimizer(cfg.optim, model.parameters())
    data = on_device(data, device)

    def on_epoch(rows: list[dict], calibration: list[dict], steps: list[dict], per_class=(), predictions=None) -> None:
        files.add_epoch(rows, calibration, steps, per_class, predictions)
        trackers.log_epoch(rows, steps)
        if rows:
            summary["epochs_completed"] = rows[0]["epoch"]
            log.info(_epoch_line(rows, cfg.trainer.epochs))

    derived_text = "".join(f", {key} {[round(v, 4) for v in values]}" for key, values in derived.items())
    log.info(f"loss: {label} = {spec.summary} ({spec.reduction}{derived_text}); model: {describe(cfg.model)}; "
             f"device: {device}, {threads} threads, precision {cfg.trainer.precision.name}")
    summary["autocast_dtypes"] = autocast_dtypes(device, cfg.trainer.precision.name)
    if summary["autocast_dtypes"]:
        log.info("autocast on %s runs: %s", device.type,
                 ", ".join(f"{op} in {dtype}" for op, dtype in summary["autocast_dtypes"].items()))
    if data.info:
        log.info("data conditions: %s", ", ".join(f"{k}={v}" for k, v in data.info.items()))
    try:
        return (yield Run(model, optimizer, generator, on_epoch, spec, criterion, data, cfg.trainer, device,
                          Recipe.of(cfg), stop))
    except RuntimeError as error:
        # CUDA autocast refuses binary_cross_entropy outright: a finding about that loss, recorded
        # as the run's result rather than a crash.
        if "unsafe to autocast" not in str(error):
            raise
        raise UserError(f"autocast refused this loss: {error}") from None


def _epoch_line(rows: list[dict], epochs: int) -> str:
    by_split = {row["split"]: row for row in rows}
    train_row, test_row = by_split["train"], by_split["test"]
    main = "acc" if "acc" in test_row else "map"
    val = f"val {main} {by_split['val'][main]:.4f}, " if "val" in by_split else ""
    return (
        f"epoch {train_row['epoch']}/{epochs}: train loss {train_row['loss_value']:.4f}, "
        f"test loss {test_row['loss_value']:.4f}, {val}test {main} {test_row[main]:.4f} "
        f"({train_row['epoch_time_s']:.2f} s, {train_row['samples_per_s']:,.0f} samples/s)"
    )


def usable_cores() -> int:
    """The cores this process may run on: taskset, cgroup cpusets and pinned test workers give
    fewer than the machine has, and a thread per missing core only spin-waits."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads(launcher: Optional[Any]) -> int:
    """The cores this process may run on for one run; under a parallel launcher, the share each
    job can have."""
    cores = usable_cores()
    target = str(launcher.get("_target_", "")) if launcher is not None else ""
    if "joblib" in target:
        jobs = launcher.get("n_jobs", -1)
        jobs = cores if jobs is None or jobs < 1 else jobs
        return max(1, cores // jobs)
    if "submitit" in target:
        # Slurm allocates cpus_per_task to each job; submitit's local executor starts every job
        # of the grid at once, so one thread each is the only share that never oversubscribes.
        return launcher.get("cpus_per_task") or 1
    if "hydra_ray_launcher" in target:
        # Ray reserves remote.num_cpus cores for each job on whichever node runs it (1 unless
        # told), and starts as many jobs on a node as its cores allow.
        return max(1, int(OmegaConf.select(launcher, "ray.remote.num_cpus") or 1))
    return cores
