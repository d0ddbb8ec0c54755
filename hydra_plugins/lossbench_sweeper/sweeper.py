"""`hydra/sweeper=lossbench`, the default (conf/config.yaml): Hydra's basic sweeper (same params,
same jobs, same max_batch_size) with each job's config composed once.

Hydra's basic sweeper composes every job's config before launching the batch, to refuse a job that
cannot be composed before any job runs; its launcher then composes each job again. Composing is
most of a small sweep's overhead (a profile of an 8-run sweep: 44% of the CPU in
load_sweep_config, 7% in training). Here the sweeper's up-front composition is kept and handed to
the launcher through the config loader (ComposedConfigs), so an in-process launcher (basic,
batched, ray's parent) composes nothing; a launcher that composes in its workers (joblib,
submitit) gets the plain loader there and composes as before. A job that cannot be composed is
refused in one line (refusal), exit 2. Imported by Hydra's plugin scan for every app: nothing
heavy at module level.

Jobs that differ only in plain values (`seed=0` vs `seed=1`: `key=value` on a key that is no
config group, no +, ++ or ~, no @package, no hydra key, no dict or list) share everything Hydra
composes before it applies value overrides, so only the first of them is composed (about 0.25 s
here); the others are copies of it with their own values applied by Hydra's own override step (a
few ms each). tests/runs/test_sweeper.py checks that every derived config equals the one Hydra
composes.
"""

import copy
import dataclasses
import sys
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from hydra.core.utils import filter_overrides
from hydra.errors import HydraException
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lossbench.errors import ConfigError


@dataclass
class ComposeOnceSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.lossbench_sweeper.sweeper.ComposeOnceSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="lossbench", node=ComposeOnceSweeperConf,
                             provider="lossbench")


class ComposedConfigs:
    """Hydra's config loader, but load_sweep_config hands out the configs `compose` made for the
    batch (each once, in the batch's order for repeated overrides) before composing anything anew.
    Everything else goes to the loader. Pickled (a launcher sending its context to worker
    processes), it is the bare loader again: the workers compose their own jobs."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.master: Optional[DictConfig] = None
        self.composed: dict[tuple[str, ...], list[DictConfig]] = {}

    def compose(self, master: DictConfig, batch: Sequence[Sequence[str]]) -> list[DictConfig]:
        """Compose every job of the batch, replacing the previous batch's, and return the configs
        load_sweep_config will hand out, in the batch's order; a ConfigError (one line) for the
        first job that cannot be composed."""
        self.master, self.composed = master, {}
        parser = OverridesParser.create()
        families: dict[tuple, DictConfig] = {}  # the first composed config of each family
        configs = []
        for overrides in batch:
            try:
                parsed = parser.parse_overrides(list(overrides))
                plain = [self.plain_value(o) for o in parsed]
                family = self.family(parsed, plain)
                if family in families:
                    config = with_values(families[family], parsed, [o for o, p in zip(parsed, plain) if p])
                else:
                    # handed to the launcher as it is: it writes into it only after the batch is composed
                    config = families[family] = self.loader.load_sweep_config(master, list(overrides))
            except (HydraException, OmegaConfBaseException) as error:
                raise ConfigError(refusal(overrides, error)) from None
            self.composed.setdefault(tuple(overrides), []).append(config)
            configs.append(config)
        return configs

    def plain_value(self, override: Override) -> bool:
        """An override Hydra applies to the composed config as a value, after everything it
        composes: `key=value` with a scalar value, on a key that is no config group."""
        return (override.type == OverrideType.CHANGE and override.package is None
                and not override.is_hydra_override() and not override.is_sweep_override()
                and not isinstance(override.value(), (dict, list))
                and not self.loader.repository.group_exists(override.key_or_group))

    def family(self, parsed: list[Override], plain: list[bool]) -> tuple:
        """The jobs whose configs differ only in their plain values (`plain`: which of `parsed`
        are): the overrides in order, the plain values' keys without their values. Hydra applies
        a job's value overrides in order, so a copy that sets only the plain ones would lose
        another override of the same key (`trainer.epochs=1 ++trainer.epochs=5`) or of a key
        above or below it: such a job is a family of its own."""
        keys = [o.key_or_group for o, p in zip(parsed, plain) if p]
        others = [o.key_or_group for o, p in zip(parsed, plain)
                  if not p and not self.loader.repository.group_exists(o.key_or_group)]
        if any(overlap(a, b) for a in keys for b in others):
            return tuple(o.input_line for o in parsed)
        return tuple(o.key_or_group if p else o.input_line for o, p in zip(parsed, plain))

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        ready = self.composed.get(tuple(sweep_overrides)) if master_config is self.master else None
        if not ready:
            return self.loader.load_sweep_config(master_config, sweep_overrides)
        config = ready.pop(0)
        # As load_sweep_config ends: the master's resolved values (${now:...}) as of the launch
        OmegaConf.copy_cache(from_config=master_config, to_config=config)
        return config

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def __reduce__(self) -> tuple:
        return ComposedConfigs, (self.loader,)


def overlap(key: str, other: str) -> bool:
    """Whether setting one key can change the other: the same key, or one inside the other."""
    return key == other or key.startswith(other + ".") or other.startswith(key + ".")


def with_values(composed: DictConfig, parsed: list[Override], values: list[Override]) -> DictConfig:
    """A copy of a job's composed config with another job of its family's plain values, and the
    fields Hydra derives from a job's overrides (as ConfigLoaderImpl._load_configuration_impl
    sets them) rewritten for that job."""
    config = copy.deepcopy(composed)
    ConfigLoaderImpl._apply_overrides_to_config(values, config)
    task = [o for o in parsed if not o.is_hydra_override()]
    naming = config.hydra.job.config.override_dirname
    config.hydra.overrides.task = [o.input_line for o in task]
    config.hydra.job.override_dirname = get_overrides_dirname(
        overrides=task, kv_sep=naming.kv_sep, item_sep=naming.item_sep, exclude_keys=naming.exclude_keys)
    return config


def refusal(overrides: Sequence[str], error: Exception) -> str:
    """One line for a job Hydra cannot compose: the same line a single run gets for that mistake
    (lossbench.hydra_errors, which also names a missing option's choices), else the job, Hydra's
    first line and OmegaConf's reason."""
    from lossbench.hydra_errors import one_line  # here: Hydra's plugin scan imports this module for every app

    line = one_line(error)
    if line is not None:
        return line
    reason = str(error).strip().splitlines()[0].rstrip(".")
    if isinstance(error.__cause__, OmegaConfBaseException):
        reason += ": " + str(error.__cause__).strip().splitlines()[0]
    return f"job {' '.join(filter_overrides(overrides))} cannot be composed: {reason}"


class ComposeOnceSweeper(BasicSweeper):
    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        composed = ComposedConfigs(hydra_context.config_loader)
        super().setup(hydra_context=dataclasses.replace(hydra_context, config_loader=composed),
                      task_function=task_function, config=config)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        try:
            self.hydra_context.config_loader.compose(self.config, batch)
        except ConfigError as error:  # before any job of the batch runs, as Hydra's check would be
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
