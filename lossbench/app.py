"""`python -m lossbench`: the Hydra entry point. Thin: it turns Hydra's job into a run and user
mistakes into messages."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lossbench.config import register_configs
from lossbench.errors import UserError
from lossbench.run import default_threads, execute

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
    hydra_cfg = HydraConfig.get()
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    run_dir = Path(hydra_cfg.runtime.output_dir)
    threads = cfg.trainer.threads or default_threads(hydra_cfg.launcher if in_sweep else None)
    try:
        summary = execute(cfg, run_dir, threads, list(hydra_cfg.overrides.task))
        if summary["status"] == "interrupted":  # stopped at a step boundary by the first Ctrl-C
            raise KeyboardInterrupt
    except UserError as error:
        log.error(f"error: {error}")
        if in_sweep:  # the sweep goes on; its end lists this run among the failures
            return
        sys.exit(2)
    except KeyboardInterrupt:
        log.warning(f"interrupted; what was measured is in {run_dir}")
        if in_sweep:
            raise
        sys.exit(130)
    except Exception:
        if not in_sweep:
            raise
        # A bug in one job must not cut the sweep short: Hydra would stop before collecting.
        # The traceback goes to this run's log; summary.json already says failed.
        log.exception(f"run failed: {run_dir}")
        return
    status = summary["status"]
    if status == "diverged":
        log.warning(f"diverged: {summary['error']}")
    if status != "skipped":
        log.info(f"results: {run_dir}")
