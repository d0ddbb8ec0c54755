"""The report reads what the registries and the presets declare, and guesses nothing they state:
a metric's direction and smallest effect from lossbench.training.metrics.METRICS, a task's baseline and
primary metric from lossbench.tasks.TASKS, a sweep's study (stress or not) and pairs from its
preset's question. Old runs without a declaration get theirs once, where the tables are read."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

import lossbench.report
from lossbench.config import BOOKKEEPING_KEYS, EXECUTION_KEYS, Study
from lossbench.losses import LOSSES
from lossbench.training.metrics import (CALIBRATION, CLASS_BALANCE, CRITERION, MEMORISATION, METRICS,
                               MULTI_LABEL, SINGLE_LABEL, TEMPERATURE_SCALED)
from lossbench.report.groups import is_setting_column
from lossbench.report.load import PAIRS, STUDY, declare_old_runs
from lossbench.report import generate
from lossbench.tasks import TASKS, selectable
from run_dirs import write_run

REPORT = Path(lossbench.report.__file__).parent
PRESETS = Path(__file__).resolve().parents[2] / "conf" / "experiment"


def named_literals(path: Path, names: set[str]) -> list[str]:
    """file:line of every string literal in `path` that is one of `names`."""
    tree = ast.parse(path.read_text())
    return [f"{path.name}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names]


def test_report_code_names_no_loss_and_no_metric():
    names = set(LOSSES) | set(METRICS)
    names |= {f"test_{name}" for name in names}
    found = [hit for path in sorted(REPORT.glob("*.py")) for hit in named_literals(path, names)]
    assert found == [], "the report decides by a loss's or a metric's name:\n" + "\n".join(found)


def test_the_name_check_finds_a_planted_name(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text('def lower(m):\n    return m in ("nll", "brier")\n')
    assert named_literals(planted, set(METRICS)) == ["planted.py:2: 'nll'", "planted.py:2: 'brier'"]


def test_every_metric_a_run_writes_has_one_record():
    written = (SINGLE_LABEL + CALIBRATION + MULTI_LABEL + CLASS_BALANCE + MEMORISATION
               + TEMPERATURE_SCALED + (CRITERION,))
    assert set(written) == set(METRICS)
    assert {m for m in METRICS if METRICS[m].proper} >= {"nll", "brier"}
    assert all(METRICS[m].higher_is_better for task in TASKS for m in selectable(task))


@pytest.mark.parametrize("task", list(TASKS))
def test_each_task_names_its_own_baseline_and_metrics(task):
    facts = TASKS[task]
    assert task in LOSSES[facts.baseline].tasks
    for metric in (facts.metric, *facts.metrics, *facts.balance, *facts.common,
                   *([facts.calibration] if facts.calibration else [])):
        assert task in METRICS[metric].tasks, metric
    assert METRICS[facts.metric].higher_is_better  # a run selects its epoch by maximising it


@pytest.mark.parametrize("preset", sorted(p.stem for p in PRESETS.glob("*.yaml")))
def test_every_preset_declares_its_study(preset):
    question = OmegaConf.load(PRESETS / f"{preset}.yaml").get("question")
    assert question is not None and question.get("study") in {s.value for s in Study}


def test_a_stress_preset_declares_the_pair_question_2_is_about():
    question = OmegaConf.load(PRESETS / "stability.yaml").question
    assert question.study == Study.stability.value and dict(question.pairs) == {"bce": "bce_logits"}


def old_summary(**columns) -> pd.DataFrame:
    rows = {"run": ["a", "b"], "input_dir": ["d", "d"], "dataset": ["mnist", "mnist"], **columns}
    return pd.DataFrame(rows)


def test_an_old_stress_run_takes_its_presets_study_and_pairs_at_load():
    filled = declare_old_runs(old_summary(experiment=["stability", "stability"]))
    assert list(filled[STUDY]) == ["stability", "stability"]
    assert list(filled[PAIRS + "bce"]) == ["bce_logits", "bce_logits"]


def test_an_old_ad_hoc_run_is_placed_by_its_settings_and_a_declared_one_as_declared():
    noisy = declare_old_runs(old_summary(experiment=[None, None],
                                         **{"cfg.dataset.label_noise": [0.0, 0.4]}))
    assert list(noisy[STUDY]) == ["noise", "noise"]  # the clean run is the noise rate 0
    declared = declare_old_runs(old_summary(experiment=["stability", "x"],
                                            **{STUDY: ["imbalance", "binary"]}))
    assert list(declared[STUDY]) == ["imbalance", "binary"]
    assert PAIRS + "bce" not in declared


def test_keys_that_change_no_result_split_no_group():
    assert set(BOOKKEEPING_KEYS) <= set(EXECUTION_KEYS)
    for key in EXECUTION_KEYS:
        assert not is_setting_column(f"cfg.{key}")
    assert not is_setting_column("cfg.logger.mlflow.tracking_uri")  # a whole group
    assert is_setting_column("cfg.optim.lr") and is_setting_column("cfg.trainer.log_every_x")


def test_runs_declaring_a_stress_sweep_feed_only_the_stability_section(tmp_path):
    root = tmp_path / "mixed"
    for loss in ("ce", "bce"):
        for seed in (0, 1, 2):
            write_run(root, f"{loss}-{seed}", loss=loss, seed=seed)
            for precision in ("32", "16"):
                run = write_run(root, f"stress-{loss}-{precision}-{seed}", loss=loss, seed=seed,
                                steps=True, cfg={"trainer.precision": precision})
                summary = json.loads((run / "summary.json").read_text())
                summary["config"]["question"] = {"study": "stability"}
                (run / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "report"
    generate([root], out=out, say=lambda _: None)
    compared = "\n".join(page.read_text() for page in [out / "report.md", *(out / "appendix").glob("*.md")]
                         if page.name != "stability.md")
    assert compared.count("### Paired comparison vs") == 1 and "precision=16" not in compared
    assert "Stress sweeps, in the Stability section only: `mixed` (12 runs" in compared
    verdicts = pd.read_csv(tmp_path / "report" / "tables" / "stability-mnist-sample-single_label-verdicts.csv")
    assert set(verdicts["setting"]) == {"precision=32", "precision=16"}
