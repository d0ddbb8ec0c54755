"""`python -m lossbench`: the Hydra entry point. Thin: it turns Hydra's job into a run and user
mistakes into messages."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lossbench.config import register_configs
from lossbench.training.device import spread_over_gpus
from lossbench.errors import WRITE_FAILED_EXIT, UserError, write_failure
from lossbench.hydra_errors import one_line
from lossbench.runs.run import Stages, default_threads, stages, train_alone
from lossbench.signals import StopFlag, run_command
from lossbench.runs.sweep import SweepCallback, end_interrupted_sweep

log = logging.getLogger("lossbench")
register_configs()


def config_path() -> str:
    """Where Hydra finds conf/. An installed lossbench carries it as the package lossbench.conf;
    a source checkout (editable install, or PYTHONPATH) has it beside the package, where edits
    apply without reinstalling. Absolute, because a relative path is resolved as a Python module
    when the app starts with `python -m`."""
    if (Path(__file__).parent / "conf" / "config.yaml").is_file():
        return "pkg://lossbench.conf"
    return str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=config_path(), config_name="config")
def main(cfg: DictConfig) -> None:
    train_alone(job(cfg))


def job(cfg: DictConfig, stop: Optional[StopFlag] = None) -> Stages:
    """main's work with the run's training handed over (run.stages): the batched launcher trains
    the Runs of several seeds' jobs together; `stop` is the flag it shares between them."""
    hydra_cfg = HydraConfig.get()
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    run_dir = Path(hydra_cfg.runtime.output_dir)
    threads = cfg.trainer.threads or default_threads(hydra_cfg.launcher if in_sweep else None)
    if in_sweep:
        spread_over_gpus(cfg.trainer.device.name, hydra_cfg.launcher, hydra_cfg.job.num)
    try:
        summary = yield from stages(cfg, run_dir, threads, list(hydra_cfg.overrides.task), stop)
    except UserError as error:
        log.error(f"error: {error}")
        if in_sweep:  # the sweep goes on; its end lists this run among the failures
            return
        sys.exit(2)
    except KeyboardInterrupt as interruption:
        log.warning(f"stopped by {interruption}; what was measured is in {run_dir}")
        if not in_sweep:
            log.warning(f"to run it again: {rerun_command(run_dir)}")
        raise  # cli() ends the process, and a sweep with it
    except Exception as error:
        # Not a user mistake: a bug, or the machine (memory, a full disk). summary.json already
        # says failed and why (when it could be written); the traceback goes to the run's log
        # file, not the console. A bug in one job must not cut a sweep short: Hydra would stop
        # before collecting.
        if write_failure(error):
            log.error(f"error: {write_failure(error)}")
            if in_sweep:
                return
            sys.exit(WRITE_FAILED_EXIT)
        log.error(f"error: the run failed with {type(error).__name__}: {error}")
        log.debug("the failure's traceback:", exc_info=True)
        log.info(f"recorded in {run_dir}/summary.json; traceback in {run_dir}/lossbench.log")
        if in_sweep:
            return
        sys.exit(1)
    status = summary["status"]
    if status == "diverged":
        log.warning(f"diverged: {summary['error']}")
    if status != "skipped":
        log.info(f"results: {run_dir}")


def rerun_command(run_dir: Path) -> str:
    """This command again, into the same run dir (a single run's is named by the time otherwise)."""
    args = [arg for arg in sys.argv[1:] if not arg.startswith("hydra.run.dir=")]
    return "python -m lossbench " + shlex.join([*args, f"hydra.run.dir={run_dir}"])


def cli() -> None:
    """`python -m lossbench`. A stop signal ends a single run or a whole sweep here, whichever
    process it reaches: with Hydra's basic launcher the jobs run in this process, with joblib
    this process waits for its workers (which joblib then kills, so their runs are recorded here)."""

    def wind_down(signal_name: str) -> None:
        if SweepCallback.sweep_dir is not None:
            end_interrupted_sweep(SweepCallback.sweep_dir, SweepCallback.began, signal_name)

    refused = plain_key_problems(sys.argv[1:])
    if refused:
        print("\n".join(f"error: {line}" for line in refused), file=sys.stderr)
        sys.exit(2)
    sys.exit(run_command("lossbench", composed_main, wind_down))


def composed_main() -> int:
    """main(), with a mistake in the overrides refused in one line (exit 2) rather than Hydra's
    report. HYDRA_FULL_ERROR, Hydra's own switch, makes it raise the error here instead of
    printing it; a user who set it gets Hydra's full traceback, and any other error is
    reported by Hydra as it would be."""
    if os.environ.get("HYDRA_FULL_ERROR"):
        return main() or 0
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        return main() or 0
    except Exception as error:
        line = one_line(error)
        if line is None:
            del os.environ["HYDRA_FULL_ERROR"]
            from hydra._internal.utils import run_and_report

            def again() -> None:
                raise error

            return run_and_report(again)
        print(f"error: {line}", file=sys.stderr)
        return 2
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)


def plain_key_problems(args: list[str]) -> list[str]:
    """Plain overrides of keys the chosen dataset or loss lacks, before Hydra composes."""
    from importlib.resources import files

    from lossbench.data import DATASETS
    from lossbench.group_keys import problems
    from lossbench.losses import LOSSES

    source = config_path()
    conf = Path(str(files("lossbench.conf"))) if source.startswith("pkg://") else Path(source)
    schemas = {"dataset": {name: info.schema for name, info in DATASETS.items()},
               "loss": {name: spec.params for name, spec in LOSSES.items()}}
    return problems(args, conf, schemas)
