"""An equal tuning budget per loss: the presets' spaces, the refusal of unequal ones, the choice on
validation (never test) with ties to the first trial, and a tiny study end to end."""

import json
import math
import subprocess
import sys

import pandas as pd
import pytest
from hydra import compose

from lossbench.errors import ConfigError
from lossbench.report.tuning_section import tuning_table
from lossbench.runs.results import METRICS, SUMMARY
from lossbench.runs.results_schema import TUNING_PARQUET, undeclared
from lossbench.runs.tuning_trials import (COLUMNS, TUNING, Space, check_budget, choose, ineligible, read_validation,
                              require_validation)

from conftest import SMALL, compose_config, initialize_config, run_cli, run_sweep
from report_pages import report_markdown


def sweeper_config(preset: str, *overrides: str):
    with initialize_config():
        cfg = compose("config", overrides=[f"experiment={preset}", *overrides], return_hydra_config=True)
    return cfg.hydra.sweeper


@pytest.mark.parametrize("preset, losses", [
    ("tuned_single_label", ["ce", "nll", "bce", "bce_logits", "focal", "ce_smooth"]),
    ("tuned_multi_label", ["bce", "bce_logits", "focal_sigmoid", "bce_pos_weight", "asl"]),
])
def test_preset_spaces_give_every_loss_the_budget(preset, losses):
    sweeper = sweeper_config(preset)
    assert sweeper._target_.endswith("TunedSweeper")
    spaces = [Space.parse(loss, keys) for loss, keys in sweeper.space.items()]
    assert [space.loss for space in spaces] == losses
    assert {len(space.grid()) for space in spaces} == {sweeper.budget} == {6}
    check_budget(spaces, sweeper.budget)
    assert all("optim.lr" in space.values for space in spaces)


def test_grid_varies_the_first_key_slowest():
    space = Space.parse("focal", {"optim.lr": "3e-4,1e-3", "loss.gamma": [1, 2]})
    assert space.grid() == [["optim.lr=0.0003", "loss.gamma=1"], ["optim.lr=0.0003", "loss.gamma=2"],
                            ["optim.lr=0.001", "loss.gamma=1"], ["optim.lr=0.001", "loss.gamma=2"]]
    assert space.text() == "optim.lr=0.0003,0.001 loss.gamma=1,2"


def test_unequal_spaces_are_refused_naming_the_loss_and_its_size():
    spaces = [Space.parse("ce", {"optim.lr": "1e-3,3e-3"}),
              Space.parse("focal", {"optim.lr": "1e-3,3e-3", "loss.gamma": "1,2,3"})]
    with pytest.raises(ConfigError, match=r"budget=2 .* focal has 6 \(optim.lr"):
        check_budget(spaces, 2)
    with pytest.raises(ConfigError, match="ce has 2"):
        check_budget(spaces, 6)


def test_a_dataset_without_a_validation_split_cannot_tune():
    with pytest.raises(ConfigError, match=r"dataset.val_fraction=0\b"):
        require_validation({"name": "mnist", "val_fraction": 0})
    require_validation({"name": "mnist", "val_fraction": 0.1})


@pytest.mark.parametrize("overrides, message", [
    (["hydra.sweeper.budget=5"], "budget=5 trials per loss, but ce has 6"),
    (["optim.lr=0.01"], "optim.lr=0.01: tuned keys take their values from hydra.sweeper.space"),
    (["trainer.epochs=1,2"], "the tuned sweeper sweeps only loss and seed"),
    (["loss=ce,mae"], "loss=mae has no search space"),
    (["loss=ce,focl"], "error: loss=focl is not a loss option; did you mean focal? accepted: apl_focal, "),
    (["seed=range(101)"], "tune_seed=100 is also a comparison seed"),
])
def test_tuned_sweep_refuses_a_bad_study_before_any_run(tmp_path, overrides, message):
    result = run_cli("-m", "experiment=tuned_single_label", *overrides, f"hydra.sweep.dir={tmp_path / 'sweep'}",
                     cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob(f"sweep/**/{SUMMARY}"))


def write_run(run_dir, val, test, status="completed", task="single_label", metric="acc"):
    """A hand-written run dir: summary.json and per-epoch val and test rows of the primary metric."""
    run_dir.mkdir(parents=True)
    (run_dir / SUMMARY).write_text(json.dumps({"status": status, "task": task}))
    rows = [{"epoch": epoch, "split": split, metric: value}
            for split, values in (("val", val), ("test", test)) for epoch, value in enumerate(values, start=1)]
    pd.DataFrame(rows).to_parquet(run_dir / METRICS)
    return run_dir


def test_validation_is_read_at_the_selected_epoch(tmp_path):
    validation = read_validation(write_run(tmp_path / "a", val=[0.5, 0.9, 0.9, 0.7], test=[0.6, 0.7, 0.95, 0.99]))
    assert (validation.metric, validation.value, validation.selected_epoch) == ("acc", 0.9, 2)
    multi = read_validation(write_run(tmp_path / "b", val=[0.3, 0.4], test=[0.9, 0.1], task="multi_label", metric="map"))
    assert (multi.metric, multi.value, multi.selected_epoch) == ("map", 0.4, 2)
    assert math.isnan(read_validation(write_run(tmp_path / "c", val=[], test=[0.9])).value)
    assert read_validation(tmp_path / "absent").status == "missing"


def trials_from(tmp_path, runs):
    rows = []
    for loss, trial, kwargs in runs:
        validation = read_validation(write_run(tmp_path / f"{loss}{trial}", **kwargs))
        rows.append(dict(loss_name=loss, trial=trial, status=validation.status, val_value=validation.value))
    return pd.DataFrame(rows)


def test_choice_takes_the_validation_best_not_the_test_best(tmp_path):
    trials = choose(trials_from(tmp_path, [
        ("ce", 0, dict(val=[0.80, 0.85], test=[0.90, 0.99])),  # best on test
        ("ce", 1, dict(val=[0.88, 0.86], test=[0.80, 0.81])),  # best on val, at epoch 1
        ("ce", 2, dict(val=[0.95], test=[0.99], status="diverged")),  # best of all, but never finished
    ]))
    assert trials["chosen"].tolist() == [False, True, False]


def test_choice_ties_go_to_the_first_trial_in_grid_order(tmp_path):
    trials = trials_from(tmp_path, [
        ("focal", 1, dict(val=[0.9], test=[0.5])),
        ("focal", 0, dict(val=[0.7, 0.9], test=[0.6, 0.6])),
        ("ce", 0, dict(val=[0.4], test=[0.4])),
        ("focal", 2, dict(val=[0.9], test=[0.9])),
    ])
    chosen = choose(trials)
    assert chosen.index.equals(trials.index)
    assert chosen.loc[chosen["chosen"], ["loss_name", "trial"]].values.tolist() == [["focal", 0], ["ce", 0]]


def test_tuning_table_gives_each_loss_its_budget_space_and_choice():
    tuning = pd.DataFrame({
        "loss_name": ["focal", "focal", "ce", "ce"], "trial": [0, 1, 0, 1],
        "setting": ["optim.lr=0.001,loss.gamma=1", "optim.lr=0.001,loss.gamma=2", "optim.lr=0.001", "optim.lr=0.003"],
        "val_metric": "acc", "val_value": [0.91, 0.93, 0.90, math.nan], "selected_epoch": [3, 2, 4, None],
        "chosen": [False, True, False, False], "budget": 2,
        "space": ["optim.lr=0.001 loss.gamma=1,2"] * 2 + ["optim.lr=0.001,0.003"] * 2,
    })
    table = tuning_table(tuning)
    assert table["loss"].tolist() == ["ce", "focal"]  # the registry's order
    focal = table.set_index("loss").loc["focal"]
    assert (focal["chosen"], focal["val_value"], focal["selected_epoch"], focal["budget"]) == (
        "optim.lr=0.001,loss.gamma=2", 0.93, 2, 2)
    assert table.set_index("loss").loc["ce", "chosen"] == ""


needs_val_split = pytest.mark.skipif(
    "val_fraction" not in compose_config().dataset,
    reason="the runs write no validation rows yet (dataset.val_fraction, branch val)")
TINY = ("loss=ce,focal", "trainer.epochs=2", "seed=0", "hydra.sweeper.budget=2",
        'hydra.sweeper.space.ce={optim.lr:"1e-3,3e-2"}', 'hydra.sweeper.space.focal={optim.lr:"1e-3",loss.gamma:"1,2"}')


@needs_val_split
def test_tuned_sweep_refuses_a_dataset_without_a_validation_split(tmp_path):
    result = run_cli("-m", "experiment=tuned_single_label", "dataset.val_fraction=0",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 2 and "needs one" in result.stderr, result.stdout + result.stderr


@pytest.mark.slow
@needs_val_split
@pytest.mark.parametrize("launcher", ["basic", "joblib", "batched"])
def test_tiny_study_tunes_then_compares_at_the_chosen_settings_and_resumes(tmp_path, launcher):
    sweep = tmp_path / "sweep"
    command = ("-m", "experiment=tuned_single_label", *SMALL, *TINY, f"hydra/launcher={launcher}",
               f"hydra.sweep.dir={sweep}")
    result = run_cli(*command, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    tuning = pd.read_parquet(sweep / TUNING)
    # every column declared (lossbench.runs.results_schema, docs/reference/results-columns.md), in order
    assert list(tuning.columns) == list(COLUMNS) and len(tuning) == 4
    assert undeclared(list(tuning.columns), TUNING_PARQUET.columns) == []
    assert set(tuning["budget"]) == {2} and set(tuning["seed"]) == {100}
    assert tuning["run"].str.startswith("tune/").all() and tuning["val_value"].notna().all()
    for loss, trials in tuning.groupby("loss_name"):
        chosen = trials[trials["chosen"]]
        assert len(chosen) == 1 and chosen["val_value"].iloc[0] == trials["val_value"].max()
        compare = [json.loads(p.read_text()) for p in sweep.glob(f"compare/*loss={loss},*/{SUMMARY}")]
        assert len(compare) == 1 and compare[0]["status"] == "completed"
        setting = dict(item.split("=") for item in chosen["setting"].iloc[0].split(","))
        for key, value in setting.items():
            group, name = key.split(".")
            assert float(compare[0]["config"][group][name]) == float(value)
    finished = {p: p.stat().st_mtime_ns for p in sweep.glob(f"*/*/{SUMMARY}")}
    assert len(finished) == 6

    again = run_cli(*command, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 ran, 6 skipped" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in sweep.glob(f"*/*/{SUMMARY}")} == finished
    assert pd.read_parquet(sweep / TUNING).equals(tuning)


@pytest.mark.slow
@needs_val_split
def test_report_of_a_tuned_study_leaves_trials_out_and_pairs_the_tuned_losses_with_ce(tmp_path):
    # ce and focal choose different learning rates, so only the tuned grouping rule pairs them.
    sweep, shared, out = tmp_path / "sweep", tmp_path / "shared", tmp_path / "report"
    tuned = run_cli("-m", "experiment=tuned_single_label", *SMALL, "loss=ce,focal", "trainer.epochs=1",
                    "seed=0,1", "hydra.sweeper.budget=2", 'hydra.sweeper.space.ce={optim.lr:"1e-3,3e-2"}',
                    'hydra.sweeper.space.focal={optim.lr:"3e-3",loss.gamma:"1,2"}', "hydra/launcher=batched",
                    f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert tuned.returncode == 0, tuned.stdout + tuned.stderr
    at_shared = run_sweep("classic_losses", shared, "loss=ce,focal", "seed=0,1", "trainer.epochs=1",
                          "hydra/launcher=batched")
    assert at_shared.returncode == 0, at_shared.stdout + at_shared.stderr
    report = subprocess.run([sys.executable, "-m", "lossbench.report", str(shared), str(sweep), "--out", str(out)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert report.returncode == 0, report.stdout + report.stderr
    tuning, tables, md = pd.read_parquet(sweep / TUNING), out / "tables", report_markdown(out)

    assert f"{len(tuning)} tuning trials read" in md
    seeded = [pd.read_csv(csv) for csv in tables.glob("*.csv") if "seed" in pd.read_csv(csv, nrows=0).columns]
    assert seeded and all(100 not in table["seed"].tolist() for table in seeded)  # the tune seed
    tuned_groups = sorted(tables.glob("*optim.lr=tuned-paired-vs-ce-*.csv"))
    assert [p.name.rsplit("-", 1)[1] for p in tuned_groups] == ["selected.csv"]  # the question's one view
    for paired in map(pd.read_csv, tuned_groups):
        assert set(paired["loss"].str.split("(").str[0]) == {"focal"} and set(paired["n_seeds"]) == {2}
    # the tuned group and the shared one, each in its question's one view
    assert len(list(tables.glob("*-paired-vs-ce-*.csv"))) == 2

    chosen = tuning[tuning["chosen"]].set_index("loss_name")["setting"].to_dict()
    assert pd.read_csv(tables / "tuning.csv").set_index("loss")["chosen"].to_dict() == chosen
    side_by_side = pd.read_csv(tables / "shared-vs-tuned.csv")
    assert side_by_side["loss_name"].tolist() == ["ce", "focal"] and set(side_by_side["view"]) == {"selected"}
    # the study's primary table reads the same view as the side-by-side table, not the last one
    study = pd.read_csv(tables / "study-tuned.csv")
    selected = pd.read_csv(next(tables.glob("*optim.lr=tuned-final-metrics-selected.csv")))
    assert set(study["view"]) == {"selected"}
    assert study.set_index("loss")["mean"].to_dict() == selected.set_index("loss")["acc_mean"].to_dict()


def test_a_trial_that_died_in_epoch_1_or_has_a_damaged_table_has_no_validation_value(tmp_path):
    died = tmp_path / "died"
    died.mkdir()
    (died / SUMMARY).write_text(json.dumps({"status": "diverged", "task": "single_label"}))
    pd.DataFrame().to_parquet(died / METRICS)  # what a run that never finished an epoch leaves
    validation = read_validation(died)
    assert validation.status == "diverged" and math.isnan(validation.value) and validation.selected_epoch is None
    assert "no epoch, split, acc column" in validation.problem
    text = write_run(tmp_path / "text", val=["high", "0.7"], test=["0.1", "0.2"])
    assert (read_validation(text).value, read_validation(text).selected_epoch) == (0.7, 2)
    (text / METRICS).write_text("not parquet")
    assert "unreadable" in read_validation(text).problem
    trials = pd.DataFrame([dict(loss_name="ce", trial=0, status="diverged", val_value=math.nan),
                           dict(loss_name="ce", trial=1, status="completed", val_value=0.5)])
    assert choose(trials)["chosen"].tolist() == [False, True]
    assert ineligible("diverged", math.nan, validation.problem).startswith("it ended diverged (")


def test_an_empty_search_space_is_refused_before_any_run(tmp_path):
    result = run_cli("-m", "hydra/sweeper=tuned", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "hydra.sweeper.space is empty" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob(f"sweep/**/{SUMMARY}"))


@pytest.mark.slow
def test_a_study_whose_trial_diverges_in_epoch_1_finishes_without_choosing_it(tmp_path):
    sweep = tmp_path / "sweep"
    command = ("-m", "experiment=tuned_single_label", "loss=ce,nll", "seed=0", "hydra.sweeper.budget=2",
               "hydra.sweeper.space.ce={optim.lr:'1e-3,1e30'}", "hydra.sweeper.space.nll={optim.lr:'1e30,1e31'}",
               "trainer.epochs=1", "trainer.threads=1", "dataset.source=sample", "model.hidden=[8]",
               f"hydra.sweep.dir={sweep}")
    for attempt in ("first", "resumed"):
        result = run_cli(*command, cwd=tmp_path)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (attempt, result.stdout + result.stderr)
        tuning = pd.read_parquet(sweep / TUNING).set_index(["loss_name", "trial"])
        assert tuning["status"].tolist() == ["completed", "diverged", "diverged", "diverged"]
        assert tuning["chosen"].tolist() == [True, False, False, False]
        assert tuning["ineligible"].isna().tolist() == [True, False, False, False]
        assert "cannot be chosen: it ended diverged" in result.stdout
        assert "tuned nll: no trial completed" in result.stdout
        assert [json.loads(p.read_text())["loss_name"] for p in sweep.glob(f"compare/*/{SUMMARY}")] == ["ce"]
