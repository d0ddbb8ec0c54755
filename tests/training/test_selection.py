import json
import math

import pandas as pd

from lossbench.training.selection import select_epoch, selected_epochs


def test_select_epoch_takes_the_first_maximum_and_skips_nan():
    assert select_epoch([0.5, 0.7, math.nan, 0.7, 0.6]) == 2
    assert select_epoch([math.nan, 0.1]) == 2
    assert select_epoch([math.nan]) is None


def test_selected_epochs_reads_val_rows_only_and_agrees_with_select_epoch():
    values = {"a": [0.3, 0.9, 0.9], "b": [0.8, 0.2, 0.5]}
    rows = [{"run": run, "epoch": e, "split": "val", "acc": v}
            for run, vs in values.items() for e, v in enumerate(vs, start=1)]
    rows += [{"run": "a", "epoch": 1, "split": "test", "acc": 1.0}, {"run": "c", "epoch": 1, "split": "test", "acc": 1.0}]
    chosen = selected_epochs(pd.DataFrame(rows), "acc")
    assert chosen.to_dict() == {run: select_epoch(vs) for run, vs in values.items()} == {"a": 2, "b": 1}


def test_a_run_selects_its_epoch_on_the_declared_validation_metric(tmp_path):
    """trainer.select_on=balanced_acc: the selected epoch is the first peak of validation
    balanced accuracy (what an imbalance question is judged on), not of accuracy."""
    from conftest import SMALL, run_cli

    done = run_cli("loss=ce", "dataset.source=sample", "dataset.imbalance_ratio=20",
                   "trainer.epochs=4", "trainer.threads=1", "trainer.select_on=balanced_acc",
                   "optim.lr=0.01", *SMALL, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    val = pd.read_parquet(tmp_path / "run" / "metrics.parquet").query("split == 'val'")
    assert summary["selected_epoch"] == select_epoch(val.sort_values("epoch")["balanced_acc"].tolist())
