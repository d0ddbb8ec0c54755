"""The collector: run dirs (docs/results-schema.md) -> summary / runs / calibration / steps tables.

Fixture run dirs come from tests/run_dirs.py (`write_run`, `make_sweep`), shared with the report's
tests.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pandas as pd
import pytest

from lossbench.runs.collect import collect, main
from run_dirs import make_sweep, write_run


def test_collect_schema_and_row_counts(tmp_path):
    make_sweep(tmp_path)
    c = collect(tmp_path)
    assert len(c.summary) == 4 * 4 + 2 * 4 + 3
    assert c.summary["run"].is_unique
    assert c.summary["run"].is_monotonic_increasing
    assert "dataset=multilabel,loss=bce,seed=0" in set(c.summary["run"])
    # every scalar key of summary.json, no config/overrides; flattened config as cfg.*
    for column in ("status", "error", "loss", "dataset", "task", "data_source", "seed",
                   "epochs_completed", "test_acc", "test_map", "mean_epoch_time_s",
                   "cfg.optim.lr", "cfg.trainer.epochs", "cfg.model.hidden", "cfg.seed"):
        assert column in c.summary.columns, column
    assert "config" not in c.summary.columns and "overrides" not in c.summary.columns
    assert set(c.summary["cfg.model.hidden"].dropna()) == {"[32]"}
    # runs = the sum of every run's metrics rows, each tagged with its run
    expected = sum(len(pd.read_parquet(p)) for p in tmp_path.glob("*/metrics.parquet"))
    assert len(c.runs) == expected
    assert list(c.runs.columns[:1]) == ["run"]
    assert set(c.runs["run"]) <= set(c.summary["run"])
    assert len(c.calibration) == 15 * (4 * 4 + 2 * 4 + 3)
    assert c.steps is None and not (tmp_path / "steps.parquet").exists()
    # written, and what was written reads back equal
    for name, frame in (("summary", c.summary), ("epochs", c.runs), ("calibration", c.calibration)):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / f"{name}.parquet"), frame)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_half_written_summary_counts_as_failed(tmp_path):
    make_sweep(tmp_path, seeds=(0,))
    c = collect(tmp_path, write=False)
    torn = c.summary.set_index("run").loc["loss=nll,seed=9"]
    assert torn["status"] == "failed"
    assert "unreadable summary.json" in torn["error"]
    assert c.status_counts() == {"completed": 6, "running": 1, "failed": 2}
    assert not (tmp_path / "summary.parquet").exists()


def test_steps_collected_and_report_dir_skipped(tmp_path):
    write_run(tmp_path, "a", steps=True)
    write_run(tmp_path, "b", loss="bce", steps=False)
    write_run(tmp_path, "report/not-a-run", loss="bce")  # the report's output dir is skipped
    c = collect(tmp_path)
    assert list(c.summary["run"]) == ["a", "b"]
    assert set(c.steps["run"]) == {"a"} and len(c.steps) == 15
    assert (tmp_path / "steps.parquet").exists()


def test_mixed_type_config_values_are_stored_as_text(tmp_path):
    write_run(tmp_path, "p32", cfg={"trainer.precision": 32})
    write_run(tmp_path, "bf16", cfg={"trainer.precision": "bf16"})
    c = collect(tmp_path)
    assert sorted(pd.read_parquet(tmp_path / "summary.parquet")["cfg.trainer.precision"]) == [
        "32", "bf16"]
    assert c.summary["error"].isna().all()


def test_cli_prints_counts(tmp_path, capsys):
    make_sweep(tmp_path, seeds=(0,))
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "found 9 runs" in out and "6 completed, 1 running, 2 failed" in out
    assert "summary.parquet" in out


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_cli_bad_input_exits_2(tmp_path, capsys, case):
    target = tmp_path / "nope" if case == "missing" else tmp_path
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main([str(target)]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert str(target) in err and "Traceback" not in err
    assert ("does not exist" if case == "missing" else "holds no runs") in err


def test_cli_unwritable_dir_exits_2(tmp_path, capsys, monkeypatch):
    make_sweep(tmp_path, seeds=(0,), extra=False)

    # The tests run as root, whom chmod a-w does not stop: the write fails as a read-only
    # directory makes it fail for anyone else.
    def refuse(path, write):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr("lossbench.runs.collect.atomic_write", refuse)
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write the tables into {tmp_path} (Permission denied)" in err
    assert "Traceback" not in err


def test_recollecting_a_dir_collected_before_the_rename_replaces_its_runs_parquet(tmp_path):
    make_sweep(tmp_path, seeds=(0,))
    collect(tmp_path)
    # the dir as a collect before #19 left it: the per-epoch table named runs.parquet
    (tmp_path / "epochs.parquet").rename(tmp_path / "runs.parquet")
    manifest = tmp_path / ".lossbench-manifest.collect"
    manifest.write_text(manifest.read_text().replace("epochs.parquet", "runs.parquet"))
    (tmp_path / "my_runs.parquet").write_bytes(b"yours")
    collect(tmp_path)
    assert (tmp_path / "epochs.parquet").is_file() and not (tmp_path / "runs.parquet").exists()
    assert (tmp_path / "my_runs.parquet").read_bytes() == b"yours"
