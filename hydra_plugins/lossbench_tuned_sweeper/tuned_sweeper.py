"""`python -m lossbench -m experiment=tuned_single_label`: a sweep in two stages, each launched
through whichever launcher the sweep uses (basic, joblib, batched, submitit).

1. tune: every loss's search space (hydra.sweeper.space.LOSS) as a grid of exactly
   hydra.sweeper.budget trials, all on the tuning seed (hydra.sweeper.tune_seed), into
   DIR/tune/<overrides>/. The trial with the best validation primary metric at its selected epoch
   is chosen per loss (lossbench.runs.tuning_trials), and DIR/tuning.parquet records every trial.
2. compare: each loss at its chosen setting over the comparison seeds (`seed=...` in params or on
   the command line), into DIR/compare/<overrides>/.

Every job is an ordinary run in its own run dir, so an interrupted study resumes: the same
command skips the finished trials, makes the same choice from their files and skips the finished
comparison runs. Imported by Hydra's plugin scan for every app: nothing heavy at module level.
"""

import dataclasses
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
LOSS, SEED = "loss", "seed"
TUNE, COMPARE = "tune", "compare"  # the stages' subdirs of the sweep dir


@dataclass
class TunedSweeperConf:
    _target_: str = "hydra_plugins.lossbench_tuned_sweeper.tuned_sweeper.TunedSweeper"
    # Trials per loss: every space has exactly this many grid points, or nothing runs.
    budget: int = 1
    # The seed every trial trains with; not one of the comparison seeds.
    tune_seed: int = 100
    # Per loss name, each tuned key with its values as a sweep string: {focal: {optim.lr: "1e-3,3e-3"}}
    space: Dict[str, Any] = field(default_factory=dict)
    # As the basic sweeper's: `loss` picks the losses to tune (default: every loss in space, or
    # the panel), `seed` the comparison seeds, anything else holds for every job.
    params: Optional[Dict[str, str]] = None
    # true: without `loss=...`, tune every loss of the registry that fits the dataset's task
    panel: bool = False
    # The space of a loss not in `space`: default_space, or for a loss with a knob of its own
    # (lossbench.losses LossSpec.tuned) knob_space plus that knob's values.
    default_space: Dict[str, Any] = field(default_factory=dict)
    knob_space: Dict[str, Any] = field(default_factory=dict)
    # true: list the runs (trials, then the comparison) and train nothing
    dry_run: bool = False


ConfigStore.instance().store(group="hydra/sweeper", name="tuned", node=TunedSweeperConf, provider="lossbench")


@dataclass
class Job:
    loss: str
    trial: int  # position in the loss's grid
    setting: List[str]  # the tuned overrides
    seed: str
    overrides: List[str]  # everything the job is launched with
    run: str = ""  # its run dir relative to the sweep dir, once composed


def plain(node: Any) -> Dict[str, Any]:
    return OmegaConf.to_container(node) if isinstance(node, DictConfig) else dict(node or {})


class TunedSweeper(Sweeper):
    def __init__(self, budget: int, tune_seed: int, space: Any, params: Optional[Dict[str, str]] = None,
                 panel: bool = False, default_space: Any = None, knob_space: Any = None,
                 dry_run: bool = False) -> None:
        self.budget, self.tune_seed, self.params = budget, tune_seed, dict(params or {})
        self.space = plain(space)
        self.panel, self.dry_run = panel, dry_run
        self.default_space, self.knob_space = plain(default_space), plain(knob_space)
        self.hydra_context: Optional[HydraContext] = None
        self.config: Optional[DictConfig] = None
        self.launcher: Optional[Launcher] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        from hydra_plugins.lossbench_sweeper.sweeper import ComposedConfigs

        # Each job composed once, by _jobs's check, and handed to an in-process launcher as composed
        hydra_context = dataclasses.replace(hydra_context, config_loader=ComposedConfigs(hydra_context.config_loader))
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        from lossbench.errors import UserError
        from lossbench.runs.tuning_trials import write_tuning

        from lossbench.runs.progress import Progress, finished_wall_times
        from lossbench.runs.sweep import SweepCallback

        sweep_dir = Path(self.config.hydra.sweep.dir)
        try:
            study = self._plan(arguments)
            trials = self._jobs(TUNE, study.trials())
        except UserError as error:  # printed as every lossbench config mistake is, before any job runs
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        total = len(trials) + len(study.spaces) * len(study.seeds)
        log.info(f"{total} runs: {len(study.spaces)} losses ({', '.join(s.loss for s in study.spaces)}) x "
                 f"{self.budget} trials on seed {self.tune_seed}, then each at its chosen setting x "
                 f"{len(study.seeds)} seeds ({', '.join(study.seeds)})")
        if self.dry_run:
            self._list(study, trials)
            sys.exit(0)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        progress = SweepCallback.progress = Progress(total)
        earlier = finished_wall_times(sweep_dir)
        if earlier:  # a resumed study: its finished runs say how long one takes
            log.info(progress.estimate(sum(earlier) / len(earlier), total - len(earlier),
                                       f"the mean of the {len(earlier)} runs already finished here"))
            returns = [self._launch(trials, 0)]
        else:  # the first trial, alone, says how long a run takes on this machine
            returns = [self._launch(trials[:1], 0)]
            log.info(progress.estimate(progress.seconds_per_run() or 0.0, total - 1,
                                       "the first run, which also loaded the data: an upper bound"))
            returns.append(self._launch(trials[1:], 1))
        table = study.table(trials, sweep_dir)
        log.info(f"tune: every trial and the choice per loss in {write_tuning(sweep_dir, table)}")
        for row in table[table["ineligible"].notna()].itertuples():
            log.warning(f"tune: {row.loss_name} trial {row.trial + 1} ({row.setting or 'no tuned key'}) "
                        f"cannot be chosen: {row.ineligible}")
        chosen = table[table["chosen"]]
        for row in chosen.itertuples():
            log.info(f"tuned {row.loss_name}: {row.setting} (val {row.val_metric} {row.val_value:.4f} "
                     f"at epoch {row.selected_epoch}, trial {row.trial + 1} of {row.budget})")
        for loss in sorted(set(table["loss_name"]) - set(chosen["loss_name"])):
            log.error(f"tuned {loss}: no trial completed with a validation value, so it is not compared")
        # The table's rows are the trials, in the same order (choose keeps the index).
        comparison = self._jobs(COMPARE, study.comparison([trials[index] for index in chosen.index]))
        log.info(f"compare: {len(chosen)} losses at their chosen settings x {len(study.seeds)} seeds")
        progress.total = len(trials) + len(comparison)  # a loss without a chosen trial drops out
        returns.append(self._launch(comparison, len(trials)))
        return returns

    def _list(self, study: "Study", trials: List[Job]) -> None:
        """The dry run's listing: every trial's overrides, then the comparison runs, whose tuned
        values are chosen from the trials."""
        print(f"tune ({len(trials)} runs, seed {study.tune_seed}; dry run: nothing trains):")
        for job in trials:
            print(f"  {job.run}")
        print(f"compare ({len(study.spaces) * len(study.seeds)} runs, each loss at its chosen setting):")
        for space in study.spaces:
            for seed in study.seeds:
                tuned = [f"{key}=<tuned>" for key in space.values]
                print("  " + " ".join([*study.common, f"{LOSS}={space.loss}", *tuned, f"{SEED}={seed}"]))

    def _plan(self, arguments: List[str]) -> "Study":
        from lossbench.errors import ConfigError
        from lossbench.hydra_errors import missing_option
        from lossbench.runs.tuning_trials import Space, check_budget

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([f"{k}={v}" for k, v in self.params.items()] + list(arguments))
        picked: Dict[str, List[str]] = {}
        common: List[str] = []
        for override in overrides:
            key = override.get_key_element()
            values = (list(override.sweep_string_iterator()) if override.is_sweep_override()
                      else [override.get_value_element_as_str()])
            if key in (LOSS, SEED):
                picked[key] = values  # the command line's replaces params'
            elif override.is_sweep_override():
                raise ConfigError(f"{override.input_line}: the tuned sweeper sweeps only loss and seed; "
                                  f"run one study per value of {key}")
            else:
                common.append(override.input_line)
        losses = picked.get(LOSS) or (self._panel() if self.panel else list(self.space))
        if not losses:
            raise ConfigError("hydra.sweeper.space is empty: give each loss to tune its space, "
                              "e.g. hydra.sweeper.space.ce={optim.lr:'1e-3,3e-3'}")
        options = self.hydra_context.config_loader.get_group_options(LOSS)
        missing = [loss for loss in losses if loss not in options]
        if missing:  # the line a single run prints for the same name
            raise ConfigError(missing_option(LOSS, missing[0], options))
        unknown = [loss for loss in losses if self._space(loss) is None]
        if unknown:
            raise ConfigError(f"loss={','.join(unknown)} has no search space in hydra.sweeper.space; "
                              f"spaces are given for: {', '.join(self.space) or 'no loss'}")
        spaces = [Space.parse(loss, self._space(loss)) for loss in losses]
        check_budget(spaces, self.budget)
        tuned = {key for space in spaces for key in space.values}
        clashes = [line for line in common if line.lstrip("+~").split("=")[0] in tuned]
        if clashes:
            raise ConfigError(f"{', '.join(clashes)}: tuned keys take their values from hydra.sweeper.space")
        seeds = picked.get(SEED, [str(self.config.seed)])
        if str(self.tune_seed) in seeds:
            raise ConfigError(f"hydra.sweeper.tune_seed={self.tune_seed} is also a comparison seed; "
                              f"tune on a seed the comparison does not use")
        return Study(spaces, common, str(self.tune_seed), seeds, self.budget)

    def _panel(self) -> List[str]:
        """Every loss of the registry that fits the dataset's task, in the registry's order."""
        from lossbench.data import DATASETS, expected_n_classes, peek
        from lossbench.errors import ConfigError
        from lossbench.losses import LOSSES

        name = self.config.dataset.name
        if name not in DATASETS:
            raise ConfigError(f"dataset.name={name!r} is not a dataset; accepted: {', '.join(sorted(DATASETS))}")
        task = peek(self.config.dataset).task  # file data: read from its labels
        binary = task.value == "single_label" and expected_n_classes(self.config.dataset) == 2
        log.info(f"panel: the losses that fit dataset={name}, a "
                 f"{'binary (two-class single-label)' if binary else task.value.replace('_', '-')} task")
        return [loss for loss, spec in LOSSES.items() if task in spec.tasks]

    def _space(self, loss: str) -> Optional[Dict[str, Any]]:
        """The loss's space: given in `space`, else derived from its spec (None: neither)."""
        from lossbench.losses import LOSSES

        if loss in self.space:
            return self.space[loss]
        spec = LOSSES.get(loss)
        if spec is None:
            return None
        derived = {**self.knob_space, **dict(spec.tuned)} if spec.tuned else self.default_space
        return derived or None

    def _jobs(self, stage: str, jobs: List[Job]) -> List[Job]:
        """Each job composed and checked (lossbench.config.validate) before any runs, and given
        its stage's subdir."""
        from lossbench.config import validate
        from lossbench.runs.tuning_trials import require_validation

        subdir = OmegaConf.to_container(self.config.hydra.sweep, resolve=False)["subdir"]
        for job in jobs:
            job.overrides.append(f"hydra.sweep.subdir={stage}/{subdir}")
        configs = self.hydra_context.config_loader.compose(self.config, [job.overrides for job in jobs])
        for job, config in zip(jobs, configs):
            job.run = str(config.hydra.sweep.subdir)
            app = OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])
            validate(app)
            if stage == TUNE:
                require_validation(app.dataset)
        return jobs

    def _launch(self, jobs: List[Job], initial_job_idx: int) -> Sequence[JobReturn]:
        if not jobs:
            return []
        returns = self.launcher.launch([job.overrides for job in jobs], initial_job_idx=initial_job_idx)
        for job_return in returns:
            _ = job_return.return_value  # raises what a job raised, as the basic sweeper does
        return returns


@dataclass
class Study:
    spaces: List[Any]  # lossbench.runs.tuning_trials.Space, one per loss, in the order given
    common: List[str]  # overrides every job gets
    tune_seed: str
    seeds: List[str]  # the comparison seeds
    budget: int

    def job(self, loss: str, trial: int, setting: List[str], seed: str) -> Job:
        return Job(loss, trial, setting, seed, [*self.common, f"{LOSS}={loss}", *setting, f"{SEED}={seed}"])

    def trials(self) -> List[Job]:
        return [self.job(space.loss, trial, setting, self.tune_seed)
                for space in self.spaces for trial, setting in enumerate(space.grid())]

    def comparison(self, chosen: List[Job]) -> List[Job]:
        return [self.job(trial.loss, trial.trial, trial.setting, seed) for trial in chosen for seed in self.seeds]

    def table(self, trials: List[Job], sweep_dir: Path) -> Any:
        """tuning.parquet's rows: every trial, what its run dir says, and which one is chosen."""
        import pandas as pd

        from lossbench.runs.tuning_trials import choose, ineligible, read_validation

        texts = {space.loss: space.text() for space in self.spaces}
        rows = []
        for job in trials:
            validation = read_validation(sweep_dir / job.run)
            rows.append(dict(
                loss_name=job.loss, trial=job.trial, setting=",".join(job.setting), run=job.run,
                seed=int(job.seed), status=validation.status, val_metric=validation.metric,
                val_value=validation.value, selected_epoch=validation.selected_epoch,
                ineligible=ineligible(validation.status, validation.value, validation.problem),
                budget=self.budget, space=texts[job.loss]))
        return choose(pd.DataFrame(rows).astype({"selected_epoch": "Int64"}))
