"""The default sweeper (hydra/sweeper=lossbench): each job's config composed once, handed to the
launcher that runs it; a job that cannot be composed refused in one line before any job runs."""

import itertools

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from conftest import initialize_config, run_cli
from hydra_plugins.lossbench_sweeper.sweeper import ComposedConfigs

LOSSES = ("ce", "nll")


@pytest.fixture
def compositions(monkeypatch):
    """Every job config Hydra composes in this process, as its overrides."""
    composed = []
    compose = ConfigLoaderImpl.load_sweep_config

    def counted(self, master_config, sweep_overrides):
        composed.append(list(sweep_overrides))
        return compose(self, master_config, sweep_overrides)

    monkeypatch.setattr(ConfigLoaderImpl, "load_sweep_config", counted)
    return composed


def sweep_in_process(tmp_path, *overrides):
    """`python -m lossbench -m OVERRIDES` in this process, each job only recording what it was
    handed: (loss, seed, job number). No callbacks (nothing trains, so nothing to collect)."""
    jobs = []

    def record(cfg):
        jobs.append((cfg.loss.name, cfg.seed, HydraConfig.get().job.num))

    with initialize_config():
        GlobalHydra.instance().hydra.multirun(
            config_name="config", task_function=record, with_log_configuration=False,
            overrides=[*overrides, "~hydra.callbacks.sweep_report", "hydra/job_logging=none",
                       "hydra/hydra_logging=none", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    return jobs


@pytest.mark.parametrize("sweeper, launcher, per_job", [
    ("lossbench", "basic", 1), ("lossbench", "batched", 1),
    ("basic", "basic", 2),  # Hydra's: it composes every job to check it, and again to launch it
])
def test_a_k_job_sweep_composes_k_configs_where_hydras_basic_sweeper_composes_2k(
        tmp_path, compositions, launcher, sweeper, per_job):
    jobs = sweep_in_process(tmp_path, f"hydra/sweeper={sweeper}", f"hydra/launcher={launcher}",
                            f"loss={','.join(LOSSES)}", "seed=3")
    assert jobs == [(loss, 3, num) for num, loss in enumerate(LOSSES)]  # each job its own config
    assert len(compositions) == per_job * len(LOSSES)


def test_a_repeated_job_gets_a_config_of_its_own(tmp_path, compositions):
    """seed=3,3 (allowed when run dirs are not named by the overrides): two jobs, two configs,
    the second a copy of the first."""
    jobs = sweep_in_process(tmp_path, "loss=ce", "seed=3,3", "hydra.sweep.subdir=${hydra.job.num}")
    assert jobs == [("ce", 3, 0), ("ce", 3, 1)] and len(compositions) == 1


def test_a_pickled_loader_holds_no_composed_configs(compositions):
    """A launcher that pickles its context to worker processes (joblib and submitit, with
    cloudpickle) sends the bare loader: each worker composes its own job, and no batch of configs
    travels with every job."""
    cloudpickle = pytest.importorskip("cloudpickle")
    with initialize_config():
        loader = ComposedConfigs(GlobalHydra.instance().config_loader())
        master = loader.load_configuration("config", [], RunMode.MULTIRUN)
        loader.compose(master, [["loss=ce"], ["loss=nll"]])
        copy = cloudpickle.loads(cloudpickle.dumps(loader))
        assert copy.composed == {} and len(loader.composed) == 2
        assert copy.load_sweep_config(master, ["loss=nll"]).loss.name == "nll"
    assert len(compositions) == 3


@pytest.mark.parametrize("command, grid, families", [
    (["experiment=classic_losses"], {"loss": ["ce", "bce"], "seed": ["0", "1", "7"]}, 2),
    # plain values beside groups, a list, an interpolation, a string and a null
    (["hydra.job.chdir=false"], {"model": ["mlp", "cnn"], "model.hidden": ["[8]", "[16,4]"],
                                 "dataset.split_seed": ["${seed}", "3"], "trainer.threads": ["null"],
                                 "dataset.name": ["'12'"], "optim.lr": ["0.1"]}, 4),
    (["experiment=noise"], {"dataset.label_noise": ["0.2", "0.4"], "loss": ["sce"], "seed": ["0", "1"]}, 1),
    # a job's own hydra override and a ++ on another key travel with the copy
    ([], {"seed": ["0", "1", "2"], "hydra.sweep.subdir": ["t/${hydra.job.override_dirname}"],
          "++optim.lr": ["0.5"]}, 1),
    # a later override of a plain value's key: Hydra applies both in order, so no copy
    ([], {"trainer.epochs": ["1", "2"], "++trainer.epochs": ["5"], "seed": ["0", "1"]}, 4),
])
def test_a_job_composed_from_another_of_its_family_equals_the_config_hydra_composes(
        command, grid, families, compositions):
    """Only the first job of each family is composed; every other job's config is that one with
    its own plain values: the same YAML, overrides and run-dir name as Hydra's own composition."""
    batch = [[f"{key}={value}" for key, value in zip(grid, values)] for values in itertools.product(*grid.values())]
    with initialize_config():
        loader = ComposedConfigs(GlobalHydra.instance().config_loader())
        master = loader.load_configuration("config", command, RunMode.MULTIRUN)
        loader.compose(master, batch)
        assert len(compositions) == families
        for overrides in batch:
            fresh = ConfigLoaderImpl.load_sweep_config(loader.loader, master, overrides)
            handed = loader.load_sweep_config(master, overrides)
            assert OmegaConf.to_yaml(handed) == OmegaConf.to_yaml(fresh), overrides


def test_a_tuned_studys_check_composes_each_loss_once(tmp_path, compositions):
    """The tuned sweeper (experiment=which_loss) checks every trial before any runs through the
    same loader: one composition per loss, not one per trial (the dry run stops after the check)."""
    with pytest.raises(SystemExit) as listed:
        sweep_in_process(tmp_path, "experiment=which_loss", "hydra.sweeper.dry_run=true", "loss=ce,focal")
    assert listed.value.code == 0
    assert [[o for o in overrides if o.startswith("loss=")] for overrides in compositions] == [["loss=ce"], ["loss=focal"]], compositions


# the line a single run gets for the same mistake (lossbench.hydra_errors)
MISSING_LOSS = "loss=cee is not a loss option; did you mean ce? accepted: apl_focal, "


@pytest.mark.parametrize("overrides, line", [
    (["loss=ce,cee"], MISSING_LOSS),
    (["model.hidden=[8],[x]"], "model.hidden[0]=[x] is not accepted: it must be an integer"),
    (["model.hiddn=1,2"], "model.hiddn is not a key of model; did you mean model.hidden? accepted: "),
    (["seed=1,abc"], "seed=abc is not accepted: it must be an integer"),  # a value set on a copy
])
def test_a_job_that_cannot_be_composed_is_refused_in_one_line_before_any_job_runs(tmp_path, capsys, overrides, line):
    with pytest.raises(SystemExit) as refused:
        sweep_in_process(tmp_path, *overrides)
    stderr = capsys.readouterr().err
    assert refused.value.code == 2 and stderr.startswith(f"error: {line}") and stderr.count("\n") == 1, stderr
    assert not [path for path in (tmp_path / "sweep").iterdir() if path.is_dir()]  # no job began


def test_the_cli_refuses_a_job_that_cannot_be_composed_without_a_traceback(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "hydra/launcher=batched", "loss=ce,cee", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: {MISSING_LOSS}") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stdout and not [path for path in sweep.iterdir() if path.is_dir()]
