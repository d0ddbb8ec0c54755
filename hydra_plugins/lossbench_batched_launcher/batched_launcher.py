"""`python -m lossbench -m ... hydra/launcher=batched`: the sweep's jobs grouped by every override
but `seed`, each group's seeds trained together in this process (lossbench.seats), one JobReturn
per job as the basic launcher returns them.

Each job's config, job number and run directory (hydra.sweep.dir/hydra.sweep.subdir) are made as
the basic launcher makes them, so switching launchers finds and reuses the same runs. Groups the
stack cannot reproduce (lossbench.batched.unstackable) run job by job, as the basic launcher runs
them. Imported by Hydra's plugin scan for every app: it imports nothing heavy at module level.
"""


import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
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


class BatchedLauncher(Launcher):
    def __init__(self) -> None:
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from lossbench.batched import unstackable
        from lossbench.seats import Seat, run_seats

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
            seats = [Seat(f"seed={configs[index].seed}", partial(self._run_job, configs[index])) for index in group]
            hydra_config = HydraConfig.instance().cfg
            try:
                run_seats(seats, log)
            finally:
                HydraConfig.instance().cfg = hydra_config
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            for index, seat in zip(group, seats):
                if seat.raised is not None:  # an interrupt, or a bug outside the task
                    raise seat.raised
                returns[index] = seat.returned
        return [returns[index] for index in range(len(job_overrides))]

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
