"""Shared helpers: compose the real config with Hydra's compose API, run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir, initialize_config_module
from hypothesis import settings

from lossbench.app import config_path
from lossbench.config import register_configs

register_configs()
# The property tests draw the same examples on every run: a CI run that fails fails again on
# rerun, and a search that found a rounding edge once cannot turn a green main red by chance.
settings.register_profile("lossbench", derandomize=True)
settings.load_profile("lossbench")


def pytest_configure(config):
    """Each xdist worker on a core of its own, one torch thread: two workers that each spin two
    threads on 2 cores slow each other far more than 2x. The runs a worker starts inherit the
    pin, and their default thread count follows it (`usable_cores`)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[int(worker.removeprefix("gw")) % len(cores)]})
    import torch
    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def data_cache(tmp_path_factory):
    """Decoded datasets cached for this session only (the CLI runs inherit it), never in ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOSSBENCH_CACHE", str(tmp_path_factory.mktemp("lossbench-cache")))
        yield


def initialize_config():
    """Hydra initialised on the app's own config: the checkout's conf/ or the installed package."""
    path = config_path()
    if path.startswith("pkg://"):
        return initialize_config_module(path.removeprefix("pkg://"), version_base="1.3")
    return initialize_config_dir(config_dir=path, version_base="1.3")


def compose_config(*overrides: str):
    with initialize_config():
        return compose(config_name="config", overrides=list(overrides))


def run_cli(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """`python -m lossbench ARGS` in cwd, as a user types it; never allowed to download."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.run(
        [sys.executable, "-m", "lossbench", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


# The smoke grid, cheaper still: tests that run it check plumbing, not accuracy.
SMALL = ("model.hidden=[32]",)


def run_sweep(preset: str, sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`python -m lossbench -m experiment=PRESET` into sweep_dir, from its parent."""
    return run_cli("-m", f"experiment={preset}", *SMALL, *overrides, f"hydra.sweep.dir={sweep_dir}",
                   cwd=sweep_dir.parent)


@dataclass
class Sweep:
    dir: Path
    result: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory) -> Sweep:
    """One real smoke sweep (2 losses x 2 seeds x 1 epoch) shared by the tests that only read it."""
    sweep = tmp_path_factory.mktemp("smoke") / "sweep"
    result = run_sweep("smoke", sweep)
    assert result.returncode == 0, result.stdout + result.stderr
    return Sweep(sweep, result)


def sweep_grid(preset: str) -> dict[str, list[str]]:
    """The values each swept key takes in a preset, expanded by Hydra's own override parser."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    with initialize_config():
        cfg = compose(config_name="config", overrides=[f"experiment={preset}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return {o.key_or_group: _choices(o) for o in parsed}


def _choices(override) -> list[str]:
    """A glob over a config group (every loss) takes the group's files, as Hydra's sweeper does."""
    from hydra.core.override_parser.types import ValueType

    if override.value_type != ValueType.GLOB_CHOICE_SWEEP:
        return list(override.sweep_string_iterator())
    group = Path(__file__).resolve().parents[1] / "conf" / override.key_or_group
    names = sorted(path.stem for path in group.glob("*.yaml"))
    return override.value().filter(names)
