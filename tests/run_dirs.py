"""Fixture run dirs, written by `write_run` as docs/results-schema.md describes them, with seeded
random numbers; `make_sweep` builds a sweep of them. The collector's, the report's and the owned-files
tests build their inputs with these."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from lossbench.training.metrics import LOWER_IS_BETTER, N_BINS, equal_width_edges


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
                lower = name in LOWER_IS_BETTER
                row[name] = (1 - quality) / 3 + rng.uniform(0, 0.01) if lower else quality
            rows.append(row)
    run = root / rel
    run.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(run / "metrics.parquet")
    edges = equal_width_edges(N_BINS)
    counts = rng.integers(0, 50, N_BINS)
    conf = (edges[:-1] + edges[1:]) / 2
    pd.DataFrame({**identity, "bin": np.arange(N_BINS), "bin_lower": edges[:-1], "bin_upper": edges[1:],
                  "confidence": np.where(counts > 0, conf, np.nan),
                  "accuracy": np.where(counts > 0, np.clip(conf + rng.normal(0, 0.1, N_BINS), 0, 1),
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
