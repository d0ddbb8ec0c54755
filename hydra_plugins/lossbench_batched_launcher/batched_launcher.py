"""`python -m lossbench -m ... hydra/launcher=batched`: the sweep's jobs grouped by every override
but `seed`, each group's seeds trained together in this process, one JobReturn per job as the
basic launcher returns them.

Each seed's job runs as the basic launcher runs it (Hydra's run_job around lossbench.app's task)
up to where its run hands its training over (lossbench.runs.run.stages yields the Run); once every
seed has, lossbench.training.train.train_runs trains their Runs as one stack and each seed's job gets its
Outcome back as soon as that seed ends, and finishes its run (summary, files, log) as it always
does. Resume, validation, recorded errors and the files are therefore the sequential run's own
code. One thread: the seeds' jobs take turns, and share one StopFlag (entered here).

Each job's config, job number and run directory (hydra.sweep.dir/hydra.sweep.subdir) are made as
the basic launcher makes them, so switching launchers finds and reuses the same runs. Groups the
stack cannot reproduce (lossbench.training.batched.unstackable) run job by job, as the basic launcher runs
them. Imported by Hydra's plugin scan for every app: it imports nothing heavy at module level.
"""

import dataclasses
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from hydra._internal.callbacks import Callbacks
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)
SEED = "seed"


@dataclass
class BatchedLauncherConf:
    _target_: str = "hydra_plugins.lossbench_batched_launcher.batched_launcher.BatchedLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="batched", node=BatchedLauncherConf,
                             provider="lossbench")


def seed_groups(job_overrides: Sequence[Sequence[str]]) -> list[list[int]]:
    """Indices of the jobs whose overrides agree on everything but the seed, in sweep order."""
    parser = OverridesParser.create()
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, overrides in enumerate(job_overrides):
        parsed = parser.parse_overrides(list(overrides))
        key = tuple(o.input_line for o in parsed if o.key_or_group != SEED)
        groups.setdefault(key, []).append(index)
    return list(groups.values())


@dataclass
class Seed:
    """One seed's job, begun: its stages paused at the hand-over (None once ended) and its Run."""

    label: str
    stages: Any  # lossbench.runs.run.Stages
    run: Any  # lossbench.training.train.Run
    end: Callable[[Any, Optional[BaseException]], None]  # (what its job returned, or what it raised)
    log_files: list[str] = dataclasses.field(default_factory=list)


class SeedLogs:
    """While the seeds train together, each seed's lines go to its own log file, as they would
    under the basic launcher (the seed `speaking`'s); lines about the group go to all of them."""

    def __init__(self) -> None:
        self.speaker: Optional[Seed] = None

    @contextmanager
    def speaking(self, seed: Seed) -> Iterator[None]:
        speaker, self.speaker = self.speaker, seed
        try:
            yield
        finally:
            self.speaker = speaker

    def on_epoch(self, seed: Seed) -> Callable:
        def on_epoch_of_seed(*records: Any) -> None:
            with self.speaking(seed):
                seed.run.on_epoch(*records)

        return on_epoch_of_seed

    @contextmanager
    def routed(self, seeds: list[Seed]) -> Iterator[None]:
        root = logging.getLogger()
        opened = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
        formatter = opened[0].formatter if opened else None
        for handler in opened:
            root.removeHandler(handler)
            handler.close()
        consoles = {h: h.formatter for h in root.handlers}
        added = []
        for seed in seeds:
            for path in seed.log_files:
                handler = logging.FileHandler(path)
                handler.setFormatter(formatter)
                handler.addFilter(lambda record, seed=seed: self.speaker in (None, seed))
                root.addHandler(handler)
                added.append(handler)
        for handler, console_format in consoles.items():
            handler.setFormatter(TaggedFormatter(console_format, self))
        try:
            yield
        finally:
            for handler in added:
                root.removeHandler(handler)
                handler.close()
            for handler, console_format in consoles.items():
                handler.setFormatter(console_format)


class TaggedFormatter(logging.Formatter):
    """The console's format, each line of a seed's run prefixed with the seed's label."""

    def __init__(self, base: Optional[logging.Formatter], logs: SeedLogs):
        super().__init__()
        self.base, self.logs = base or logging.Formatter(), logs

    def format(self, record: logging.LogRecord) -> str:
        text = self.base.format(record)
        return f"[{self.logs.speaker.label}] {text}" if self.logs.speaker else text


def finish(seed: Seed, outcome: Any) -> None:
    """Hand a waiting seed its Outcome (or its training's error): its job ends, and seed.end gets
    what the job returned or raised. A seed that has ended is left alone."""
    from lossbench.runs.run import hand_back

    stages, seed.stages = seed.stages, None
    if stages is None:
        return
    try:
        returned = hand_back(stages, outcome)
    except BaseException as error:
        seed.end(None, error)
    else:
        seed.end(returned, None)


def train_group(seeds: list[Seed], stop: Any) -> None:
    """Train the Runs of the seeds that handed theirs over as one stack, handing each its Outcome
    as it ends; each seed's `end` gets what its job returned or raised. `stop` is the StopFlag the
    seeds share. What the stack raises goes to every seed still waiting, as its own run's error:
    a bug fails those runs and the sweep goes on; a stop signal ends them `interrupted` and is
    raised once they are."""
    from lossbench.training.train import train_runs

    training = [seed for seed in seeds if seed.stages is not None]
    logs = SeedLogs()

    def finish_speaking(seed: Seed, outcome: Any) -> None:
        with logs.speaking(seed):
            finish(seed, outcome)

    with logs.routed(training):
        try:
            if training:
                log.info(f"batched: {len(training)} seeds trained as one stack "
                         f"({', '.join(seed.label for seed in training)})")
                with stop.deferred():
                    train_runs([dataclasses.replace(seed.run, on_epoch=logs.on_epoch(seed)) for seed in training],
                               lambda index, outcome: finish_speaking(training[index], outcome))
        except BaseException as error:
            with stop.held():
                for seed in training:
                    finish_speaking(seed, error)
            if not isinstance(error, Exception):
                raise


class BatchedLauncher(Launcher):
    def __init__(self) -> None:
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from lossbench.training.batched import unstackable

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(job_overrides)} jobs locally, the seeds of each configuration together")
        returns: dict[int, JobReturn] = {}
        for group in seed_groups(job_overrides):
            configs = {index: self._job_config(initial_job_idx + index, job_overrides[index]) for index in group}
            reason = unstackable(configs[group[0]])
            if reason or len(group) == 1:
                if reason:
                    log.info(f"one job at a time: {reason}")
                for index in group:
                    returns[index] = self._run_job(configs[index])
                    configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
                continue
            hydra_config = HydraConfig.instance().cfg
            try:
                returns.update(zip(group, self._seeds_together([configs[index] for index in group])))
            finally:
                HydraConfig.instance().cfg = hydra_config
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return [returns[index] for index in range(len(job_overrides))]

    def _seeds_together(self, configs: list[DictConfig]) -> list[JobReturn]:
        """Each seed's job up to its hand-over (run_job, its callbacks called around the whole job),
        then their training as one stack (train_group), each job ending as its seed does."""
        from lossbench.app import job
        from lossbench.signals import Interrupted, StopFlag

        callbacks = self.hydra_context.callbacks
        # run_job would end the jobs' callbacks at the hand-over: they are called here instead
        until_hand_over = dataclasses.replace(self.hydra_context, callbacks=Callbacks())
        returns, seeds, raised = [], [], []

        def ended(config: DictConfig, ret: JobReturn, returned: Any, error: Optional[BaseException]) -> None:
            if error is not None and not isinstance(error, Exception):
                raised.append(error)  # a stop signal: raised once every seed has ended
                return
            ret.return_value, ret.status = (returned, JobStatus.COMPLETED) if error is None else (error, JobStatus.FAILED)
            HydraConfig.instance().set_config(config)
            callbacks.on_job_end(config=config, job_return=ret)

        with StopFlag() as stop:
            try:
                for config in configs:
                    def begin(task_cfg: DictConfig, config: DictConfig = config) -> tuple:
                        callbacks.on_job_start(config=config, task_function=self.task_function)
                        stages = job(task_cfg, stop)
                        try:
                            return stages, next(stages)
                        except StopIteration as end:  # ended before training (skipped, refused, failed)
                            return None, end.value

                    ret = run_job(hydra_context=until_hand_over, task_function=begin, config=config,
                                  job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
                    returns.append(ret)
                    if ret.status == JobStatus.COMPLETED and ret.return_value[0] is not None:
                        files = [h.baseFilename for h in logging.getLogger().handlers
                                 if isinstance(h, logging.FileHandler)]
                        seeds.append(Seed(f"seed={config.seed}", *ret.return_value, partial(ended, config, ret), files))
                    elif ret.status == JobStatus.COMPLETED:
                        ended(config, ret, ret.return_value[1], None)
                    else:  # run_job caught what the task raised
                        ended(config, ret, None, ret.return_value)
            except BaseException as error:
                with stop.held():
                    for seed in seeds:
                        finish(seed, error)
                raise
            train_group(seeds, stop)
        if raised:
            raise raised[0]
        if stop.requested:
            raise Interrupted(stop.signum)
        return returns

    def _job_config(self, idx: int, overrides: Sequence[str]) -> DictConfig:
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(config):
            config.hydra.job.id = idx
            config.hydra.job.num = idx
        return config

    def _run_job(self, config: DictConfig) -> JobReturn:
        return run_job(hydra_context=self.hydra_context, task_function=self.task_function, config=config,
                       job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
