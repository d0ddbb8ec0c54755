"""The report's header and Setup section are read from the collected configs, not the clock."""

from __future__ import annotations

import pandas as pd

from lossbench.report.load import declare_old_runs
from lossbench.report.setup_section import STRESS_RUN, caveats, header_lines, setup_table, tuning_text


def summary(**columns) -> pd.DataFrame:
    """A collected summary as the report reads it: load declares old runs' study."""
    base = {"run": ["a", "b"], "status": ["completed", "completed"], "loss": ["ce", "bce"],
            "seed": [0, 0], "dataset": ["mnist", "mnist"], "data_source": ["sample", "sample"],
            "n_train": [4000, 4000], "n_test": [1000, 1000], "n_classes": [10, 10],
            "device": ["cpu", "cpu"], "threads": [2, 2], "torch_version": ["2.15", "2.15"],
            "lossbench_version": ["0.1.0", "0.1.0"], "wall_time_s": [1800.0, 1800.0],
            "cfg.optim.name": ["adam", "adam"], "cfg.optim.lr": [0.001, 0.001],
            "cfg.trainer.epochs": [10, 10], "cfg.trainer.precision": ["32", "32"],
            "input_dir": ["d", "d"]}
    return declare_old_runs(pd.DataFrame({**base, **columns}))


def test_header_reads_date_commit_and_versions_from_the_runs():
    lines = header_lines(summary(finished_at=["2026-11-24T10:00:00+00:00", "2026-11-25T09:00:00+00:00"],
                                 lossbench_commit=["abc123", "abc123"]))
    assert lines[0] == ("Last run finished 2026-11-25 (UTC); lossbench 0.1.0, commit abc123; torch "
                        "2.15; device cpu; threads per run 2.")
    assert lines[1] == "2 runs, 1.0 h of run wall time (the sum over runs)."
    assert "commit unknown" in header_lines(summary())[0]  # runs older than the field


def test_caveats_are_the_ones_that_apply():
    clean = caveats(summary(data_source=["full", "full"]))
    assert clean == []
    stressed = caveats(summary(**{"cfg.trainer.precision": ["16", "32"]}))
    assert any("MNIST sample" in c for c in stressed)
    assert any("CPU autocast, which is not CUDA autocast" in c for c in stressed)
    assert any("no GradScaler unless `trainer.loss_scaling=dynamic` (none here does)" in c for c in stressed)


def test_setup_table_lists_each_study_from_its_configs():
    table = setup_table(summary(**{"cfg.dataset.label_noise": [0.0, 0.4]}))
    assert list(table["study"]) == ["Label noise"]
    row = table.iloc[0]
    assert row["data"] == "mnist (sample): 4000 train / 1000 test, 10 classes"
    with_val = setup_table(summary(n_train=[3600, 3600], n_val=[400, 400])).iloc[0]
    assert with_val["data"] == "mnist (sample): 3600 train + 400 validation / 1000 test, 10 classes"
    assert (row["optimiser"], row["epochs"], row["conditions"]) == ("adam, lr 0.001", "10", "label noise 0, 0.4")


def test_stress_sweeps_get_their_own_setup_row():
    """A stress grid's runs (precision 16, lr 0.1) are not losses at shared settings."""
    both = summary(**{"cfg.trainer.precision": ["32", "16"], STRESS_RUN: [None, True]})
    table = setup_table(both)
    assert list(table["study"]) == ["Losses at shared settings", "Stability (stress grids)"]
    assert list(table["runs"]) == ["1", "1"] and table.iloc[1]["conditions"] == "precision 16"


def test_tuning_budget_and_spaces_come_from_tuning_parquet():
    tuning = pd.DataFrame({"loss_name": ["focal", "ce", "focal"], "budget": [8, 8, 8],
                           "val_metric": ["acc"] * 3, "space": ["lr: log[1e-4, 1e-2]; gamma: [0, 5]",
                                                                "lr: log[1e-4, 1e-2]", "same"]})
    assert tuning_text(tuning) == (
        "Tuning: 8 trials per loss, each loss's setting chosen by its validation acc at the "
        "selected epoch; search spaces: `ce`: lr: log[1e-4, 1e-2]; `focal`: lr: log[1e-4, 1e-2]; "
        "gamma: [0, 5].")


def test_setup_says_the_split_is_redrawn_per_seed_only_where_it_is():
    from lossbench.report.setup_section import SEED_VARIES, SPLIT_FOLLOWS_SEED, seed_text

    runs = pd.DataFrame({"seed": [0, 1, 2], "cfg.dataset.split_seed": [0, 1, 2]})
    assert seed_text(runs) == SPLIT_FOLLOWS_SEED
    assert seed_text(runs.assign(**{"cfg.dataset.split_seed": [None] * 3})) == SEED_VARIES
    assert seed_text(runs.drop(columns="cfg.dataset.split_seed")) == SEED_VARIES
