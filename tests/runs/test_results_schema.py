"""What a run and a collect write is what lossbench/runs/results_schema.py declares (and so what the
generated docs/reference/results-columns.md lists): one tiny real run per task, every key and
column checked against the declaration."""

from __future__ import annotations

import importlib
import json

import pyarrow.parquet as pq
import pytest

from conftest import SMALL, run_cli
from lossbench.runs import results_schema
from lossbench.runs.collect import collect


def written_names(path) -> list[str]:
    return sorted(json.loads(path.read_text())) if path.suffix == ".json" else pq.read_schema(path).names


@pytest.mark.parametrize("task_overrides", [
    # label noise adds the memorisation columns and label_noise_realised
    ("dataset.label_noise=0.2",),
    ("dataset=multilabel", "dataset.n_samples=600", "loss=bce_logits"),
], ids=["single_label", "multi_label"])
def test_a_run_writes_no_column_the_results_schema_does_not_declare(tmp_path, task_overrides):
    run_dir = tmp_path / "run"
    result = run_cli(*task_overrides, *SMALL, "trainer.epochs=1", "trainer.threads=1",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    undeclared = {}
    for run_file in results_schema.DECLARED_RUN_FILES:
        path = run_dir / run_file.name
        assert path.exists(), f"the run wrote no {run_file.name}"  # every file gets checked
        undeclared[run_file.name] = results_schema.undeclared(written_names(path), run_file.columns)
    collect(tmp_path)
    for name in results_schema.COLLECTED:
        undeclared[name + " (collected)"] = results_schema.undeclared(
            written_names(tmp_path / name), results_schema.collected_columns(name))
    assert not {name: columns for name, columns in undeclared.items() if columns}, (
        "declare these in lossbench/runs/results_schema.py, then run `python -m lossbench.docs_gen`")


def test_a_column_matches_only_its_own_name_or_pattern():
    probability = results_schema.Column("p_<k>", "")
    assert probability.matches("p_0") and probability.matches("p_12")
    assert not probability.matches("p_") and not probability.matches("top_p_0")
    assert results_schema.undeclared(["acc", "acc2", "p_3"], (results_schema.Column("acc", ""), probability)) == ["acc2"]


def test_the_columns_the_report_reads_by_name_are_declared():
    load = importlib.import_module("lossbench.report.load")  # lossbench.report.load is also a function
    for table, columns in load.COLUMNS.items():
        assert results_schema.undeclared(columns, results_schema.collected_columns(f"{table}.parquet")) == []
