"""Each comparison preset declares the question it answers (config.QuestionConfig), and the
declaration matches what the preset runs: its comparisons are exactly the swept losses other
than the baseline, the baseline is swept, and the metric is one the task reports."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hydra import compose

from conftest import initialize_config, sweep_grid
from lossbench.config import losses_for, question_problems
from lossbench.losses import LOSSES
from lossbench.training.metrics import METRICS
from lossbench.tasks import selectable

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "experiment"
PRESETS = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))  # stress presets ask theirs too


def composed(preset: str):
    with initialize_config():
        return compose(config_name="config", overrides=[f"experiment={preset}"])


@pytest.mark.parametrize("preset", PRESETS)
def test_every_comparison_preset_declares_the_comparisons_it_runs(preset):
    q = composed(preset).question
    assert question_problems(q) == []
    with initialize_config():
        hydra_cfg = compose(config_name="config", overrides=[f"experiment={preset}"],
                            return_hydra_config=True)
    sweeper = hydra_cfg.hydra.sweeper
    if sweeper.get("panel"):  # which_loss: the panel, its baseline and metric follow the data's task
        assert q.study and q.view and q.baseline is None and q.metric is None and list(q.comparisons) == []
        return
    assert q.study is not None and q.baseline and q.metric and q.view
    assert METRICS[q.metric].smallest_effect > 0  # a declared metric has a smallest effect
    choices = (sweep_grid(preset).get("loss") if "loss" in sweeper.params
               else list(sweeper.space))
    # a question names losses as the registry does; a swept choice may be a setting of one
    # (apl_sce is sce with the Active Passive Loss code's knobs)
    with initialize_config():
        losses = [compose(config_name="config", overrides=[f"experiment={preset}", f"loss={choice}"]).loss.name
                  for choice in choices]
    assert q.baseline in losses
    if q.comparisons:  # none listed (compare_losses): every other loss of the sweep
        assert sorted(q.comparisons) == sorted(loss for loss in losses if loss != q.baseline)


def test_the_imbalance_question_selects_its_epoch_on_the_metric_it_is_judged_on():
    cfg = composed("imbalance")
    assert cfg.question.metric == cfg.trainer.select_on == "balanced_acc"
    assert cfg.trainer.select_on in selectable("single_label")


def test_a_question_naming_an_unknown_loss_or_metric_is_refused_with_the_accepted_ones():
    q = composed("noise").question
    q.baseline, q.metric = "nosuch", "acc2"
    problems = question_problems(q)
    assert any("question.baseline: 'nosuch' is not a loss; accepted: asl" in p for p in problems)
    assert any("question.metric='acc2' is not a metric; accepted: acc" in p for p in problems)


@pytest.mark.parametrize("preset, task", [("all_losses", "single_label"), ("all_losses_multi_label", "multi_label")])
def test_an_every_loss_preset_sweeps_every_registry_loss_that_fits_its_task(preset, task):
    fits = [name for name, spec in LOSSES.items() if task in {t.value for t in spec.tasks}]
    assert sweep_grid(preset)["loss"] == fits
    assert composed(preset).question.comparisons == []  # so every other swept loss is compared


@pytest.mark.parametrize("preset", ["all_losses", "all_losses_multi_label"])
def test_a_loss_added_to_the_registry_joins_the_every_loss_presets(preset, monkeypatch):
    monkeypatch.setitem(LOSSES, "new_sigmoid_loss", dataclasses.replace(LOSSES["bce_logits"], name="new_sigmoid_loss"))
    assert sweep_grid(preset)["loss"][-1] == "new_sigmoid_loss"


def test_a_preset_asking_for_the_losses_of_an_unknown_task_is_refused_with_the_tasks():
    with pytest.raises(ValueError, match="'multilabel' is not a task; accepted: multi_label, single_label"):
        losses_for("multilabel")
