"""The collector: run dirs (docs/results-schema.md) -> summary / runs / calibration / steps tables.

Fixture run dirs are written by `write_run`, following docs/results-schema.md with seeded random
numbers; test_report.py builds its sweeps with the same helpers.
"""

from __future__ import annotations

import errno
import json
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lossbench.collect import collect, main

SINGLE = ("acc", "nll", "ece", "brier")
MULTI = ("map", "f1_micro", "f1_macro", "subset_acc", "hamming")
TASK = {"mnist": ("single_label", "sample"), "multilabel": ("multi_label", "synthetic")}


def rng_for(*key) -> np.random.Generator:
    # nll reuses ce's numbers: the two losses are bitwise identical in the real harness too
    key = tuple("ce" if k == "nll" else k for k in key)
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def write_run(root: Path, rel: str, *, loss="ce", dataset="mnist", seed=0, epochs=3,
              status="completed", error=None, steps=False, cfg=None) -> Path:
    """One run dir per docs/results-schema.md: summary.json, metrics/calibration(/steps).parquet."""
    task, source = TASK[dataset]
    names = SINGLE if task == "single_label" else MULTI
    rng = rng_for(loss, dataset, seed, json.dumps(cfg, sort_keys=True))
    identity = {"loss": loss, "dataset": dataset, "data_source": source, "seed": seed}
    done = epochs if status == "completed" else max(epochs - 2, 1)
    rows = []
    for epoch in range(1, done + 1):
        for split in ("train", "test"):
            quality = 1 - 0.5 / epoch + rng.normal(0, 0.01)
            row = {**identity, "epoch": epoch, "split": split,
                   "loss_value": 1.0 / epoch + rng.normal(0, 0.02),
                   "epoch_time_s": rng.uniform(0.5, 1.5) if split == "train" else np.nan,
                   "samples_per_s": rng.uniform(1e3, 2e3) if split == "train" else np.nan}
            for name in names:
                lower = name in ("nll", "ece", "brier", "hamming")
                row[name] = (1 - quality) / 3 + rng.uniform(0, 0.01) if lower else quality
            rows.append(row)
    run = root / rel
    run.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(run / "metrics.parquet")
    edges = np.linspace(0, 1, 16)
    counts = rng.integers(0, 50, 15)
    conf = (edges[:-1] + edges[1:]) / 2
    pd.DataFrame({**identity, "bin": np.arange(15), "bin_lower": edges[:-1], "bin_upper": edges[1:],
                  "confidence": np.where(counts > 0, conf, np.nan),
                  "accuracy": np.where(counts > 0, np.clip(conf + rng.normal(0, 0.1, 15), 0, 1),
                                       np.nan),
                  "count": counts}).to_parquet(run / "calibration.parquet")
    if steps:
        n = done * 5
        pd.DataFrame({**identity, "step": np.arange(1, n + 1), "epoch": np.repeat(range(1, done + 1), 5),
                      "loss_value": rng.uniform(0, 1, n), "grad_norm": rng.uniform(0, 5, n),
                      "max_abs_logit": rng.uniform(0, 30, n), "saturated_frac": rng.uniform(0, 1, n),
                      "nonfinite_loss": np.zeros(n, int), "nonfinite_grad": np.zeros(n, int),
                      "skipped_steps": np.zeros(n, int)}).to_parquet(run / "steps.parquet")
    last_test = rows[-1]
    config = {"dataset": {"name": dataset, "source": "auto"}, "loss": {"name": loss},
              "model": {"name": "mlp", "hidden": [32], "logit_scale": 1.0},
              "optim": {"name": "adam", "lr": 0.001},
              "trainer": {"epochs": epochs, "precision": "32"}, "seed": seed}
    for key, value in (cfg or {}).items():
        section, name = key.split(".")
        config[section][name] = value
    summary = {"status": status, "error": error, **identity, "task": task,
               "data_origin": "fixture", "n_train": 100, "n_test": 50,
               "n_classes": 10, "epochs": epochs, "epochs_completed": done, "wall_time_s": 3.0,
               "device": "cpu", "threads": 1, "torch_version": "x", "lossbench_version": "0.1.0",
               "config": config, "overrides": [f"loss={loss}", f"seed={seed}"]}
    if status == "completed":
        summary |= {f"test_{name}": last_test[name] for name in (*names, "loss_value")}
        summary["mean_epoch_time_s"] = 1.0
    (run / "summary.json").write_text(json.dumps(summary))
    (run / ".hydra").mkdir()
    return run


def make_sweep(root: Path, seeds=(0, 1, 2, 3), extra=True) -> Path:
    """mnist (4 losses) + multilabel (2 losses) x seeds, plus a failed, a running and a torn run."""
    for loss in ("ce", "nll", "bce", "bce_logits"):
        for seed in seeds:
            write_run(root, f"loss={loss},seed={seed}", loss=loss, seed=seed)
    for loss in ("bce", "bce_logits"):
        for seed in seeds:
            write_run(root, f"dataset=multilabel,loss={loss},seed={seed}", loss=loss,
                      dataset="multilabel", seed=seed)
    if extra:
        write_run(root, "loss=bce,seed=9", loss="bce", seed=9, status="failed",
                  error="RuntimeError: boom | at step 3")
        write_run(root, "loss=ce,seed=9", loss="ce", seed=9, status="running")
        torn = write_run(root, "loss=nll,seed=9", loss="nll", seed=9)
        text = (torn / "summary.json").read_text()
        (torn / "summary.json").write_text(text[: len(text) // 2])  # killed mid-write
    return root


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

    monkeypatch.setattr("lossbench.collect.atomic_write", refuse)
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
