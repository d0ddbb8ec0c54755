"""A run's epochs go to its journal while it trains and become its parquet tables when it ends;
a run killed outright keeps every epoch it finished, readable by collect."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import SMALL, compose_config
from lossbench.runs.collect import collect
from lossbench.runs.journal import FILES, JOURNAL, PREDICTIONS_NOW, Journal, read_journal
from lossbench.runs import results
from lossbench.runs.owned import PlantedLink
from lossbench.runs.results import (CALIBRATION, METRICS, PER_CLASS, PREDICTIONS, STEPS, TABLES, RunFiles,
                                    arrow_table, read_run_table, remove_journal)
from lossbench.runs.run import execute

IDENTITY = {"loss": "ce", "dataset": "mnist", "data_source": "sample", "seed": 0}


def epoch(files: RunFiles, number: int) -> None:
    """An epoch's records as the loop hands them over; epoch 2 adds a column, as a val split's
    metrics would."""
    extra = {"ece": 0.1 * number} if number > 1 else {}
    files.add_epoch(
        [{"epoch": number, "split": split, "loss_value": number / 10, "acc": 0.5 + number / 100, **extra}
         for split in ("train", "test")],
        [{"bin": b, "count": number * b} for b in range(3)],
        [{"step": 10 * number, "epoch": number, "grad_norm": float(number)}],
        [{"epoch": number, "split": "test", "class": c, "recall": c / 10} for c in range(2)],
        {"example": np.arange(4), "view": np.array(["last"] * 4), "p_0": np.full(4, number / 10)})


def test_a_run_that_ends_turns_its_journal_into_the_tables_the_journal_held(tmp_path):
    files = RunFiles(tmp_path, IDENTITY)
    for number in (1, 2, 3):
        epoch(files, number)
    assert {p.name for p in tmp_path.iterdir()} == set(FILES)  # no parquet file while it trains
    journaled = {name: read_run_table(tmp_path, name).to_pandas() for name in TABLES}
    assert journaled[METRICS]["epoch"].tolist() == [1, 1, 2, 2, 3, 3]
    assert journaled[METRICS]["ece"].isna().tolist() == [True, True, False, False, False, False]
    assert journaled[CALIBRATION]["count"].tolist() == [0, 3, 6]  # the last epoch's table
    assert journaled[PREDICTIONS]["p_0"].tolist() == [0.3] * 4
    assert len(journaled[STEPS]) == 3 and len(journaled[PER_CLASS]) == 6
    assert (journaled[METRICS][list(IDENTITY)] == pd.Series(IDENTITY)).all().all()

    files.write_tables()
    assert {p.name for p in tmp_path.iterdir()} == set(TABLES)
    for name in TABLES:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / name), journaled[name])
        pd.testing.assert_frame_equal(read_run_table(tmp_path, name).to_pandas(), pd.read_parquet(tmp_path / name))


def test_an_epoch_torn_by_a_kill_is_left_out_and_the_finished_ones_are_read(tmp_path):
    files = RunFiles(tmp_path, IDENTITY)
    epoch(files, 1)
    epoch(files, 2)
    whole = (tmp_path / JOURNAL).stat().st_size
    epoch(files, 3)
    files.journal.close()
    third = (tmp_path / JOURNAL).stat().st_size - whole
    for cut in (1, third // 2, third - 1):  # the kill came mid-way through epoch 3's append
        os.truncate(tmp_path / JOURNAL, whole + third - cut)
        assert read_run_table(tmp_path, METRICS).to_pandas()["epoch"].tolist() == [1, 1, 2, 2], cut
        assert read_run_table(tmp_path, CALIBRATION).to_pandas()["count"].tolist() == [0, 2, 4]


def test_the_journal_is_not_written_through_a_planted_link(tmp_path):
    target = tmp_path / "target"
    target.write_text("yours")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / JOURNAL).symlink_to(target)
    with pytest.raises(PlantedLink):
        epoch(RunFiles(tmp_path / "run", IDENTITY), 1)
    assert target.read_text() == "yours"


def test_a_run_that_ends_inside_its_first_epoch_writes_an_empty_metrics_table_over_an_earlier_runs(tmp_path):
    earlier = RunFiles(tmp_path, IDENTITY)
    epoch(earlier, 1)
    earlier.write_tables()
    diverged = RunFiles(tmp_path, IDENTITY)  # a rerun in the same dir: its last steps, no epoch
    diverged.add_epoch([], [], [{"step": 3, "epoch": 1, "grad_norm": float("nan")}])
    assert len(read_run_table(tmp_path, METRICS)) == 0 and len(read_run_table(tmp_path, STEPS)) == 1
    diverged.write_tables()
    assert pq.read_table(tmp_path / METRICS).num_rows == 0
    assert pq.read_table(tmp_path / STEPS).column("grad_norm").to_pylist() != [1.0]


def test_tables_that_cannot_be_written_leave_the_journal_and_the_run_still_records_its_status(tmp_path, monkeypatch,
                                                                                          capsys):
    run_dir = tmp_path / "run"
    cfg = compose_config("dataset.source=sample", *SMALL, "trainer.epochs=2", "trainer.threads=1")
    write_table = results.write_table

    def planted(path, records):  # a link planted at metrics.parquet while the run trained
        if path.name == METRICS:
            raise PlantedLink(path)
        write_table(path, records)

    monkeypatch.setattr(results, "write_table", planted)
    summary = execute(cfg, run_dir, threads=1, overrides=[])
    monkeypatch.undo()
    assert summary["status"] == "completed"
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    assert (run_dir / JOURNAL).exists() and not (run_dir / METRICS).exists()
    assert read_run_table(run_dir, METRICS).column("epoch").to_pylist() == [1, 1, 1, 2, 2, 2]

    # resume=true: a finished run that left its journal is rerun, not skipped, and says why
    rerun = execute(cfg, run_dir, threads=1, overrides=[])
    assert rerun["status"] == "completed" and "its journal is there" in capsys.readouterr().out
    assert not (run_dir / JOURNAL).exists() and pq.read_table(run_dir / METRICS).num_rows == 6


def test_a_link_at_the_journals_name_hides_no_table(tmp_path):
    files = RunFiles(tmp_path, IDENTITY)
    epoch(files, 1)
    files.write_tables()
    elsewhere = tmp_path.parent / f"{tmp_path.name}-journal"
    elsewhere.mkdir()
    Journal(elsewhere).add_epoch({METRICS: arrow_table([{"epoch": 9}])})
    (tmp_path / JOURNAL).symlink_to(elsewhere / JOURNAL)
    assert read_run_table(tmp_path, METRICS).column("epoch").to_pylist() == [1, 1]


def test_removing_the_journal_leaves_a_link_at_its_name_and_the_links_target(tmp_path):
    target = tmp_path / "yours"
    target.write_text("yours")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / JOURNAL).symlink_to(target)
    (tmp_path / "run" / PREDICTIONS_NOW).write_bytes(b"lossbench's")
    remove_journal(tmp_path / "run")
    assert (tmp_path / "run" / JOURNAL).is_symlink() and target.read_text() == "yours"
    assert not (tmp_path / "run" / PREDICTIONS_NOW).exists()


@pytest.mark.slow
def test_a_run_killed_outright_keeps_its_finished_epochs_for_collect_and_a_rerun_replaces_them(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "lossbench", *SMALL, "trainer.epochs=500", "trainer.threads=1",
               f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(read_journal(run_dir).get(METRICS, [])) < 2:  # two epochs closed
            assert process.poll() is None and time.monotonic() < deadline, "the run never finished its epochs"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "running"
    assert not list(run_dir.glob("*.parquet"))

    collected = collect(tmp_path, write=False)
    epochs = collected.runs
    finished = int(epochs["epoch"].max())
    assert finished >= 2 and epochs["epoch"].tolist() == [e for e in range(1, finished + 1) for _ in range(3)]
    assert set(collected.predictions["epoch"]) <= set(range(1, finished + 1)) and len(collected.steps) >= finished

    rerun = subprocess.run([*command[:-3], "trainer.epochs=2", "trainer.threads=1", f"hydra.run.dir={run_dir}"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert not any((run_dir / name).exists() for name in (JOURNAL, PREDICTIONS_NOW))
    assert pq.read_table(run_dir / METRICS).column("epoch").to_pylist() == [1, 1, 1, 2, 2, 2]
