"""experiment=which_loss: the panel of losses that fit the task, its dry run, its progress lines and
a report that opens with its recommendation."""

from types import SimpleNamespace

import pandas as pd
import pytest

from lossbench.losses import LOSSES, Task
from lossbench.runs.progress import Progress
from lossbench.report.paired import COLUMNS
from lossbench.report.recommendation import answer, avoid_items
from lossbench.runs.results import SUMMARY

from conftest import SMALL, run_cli
from report_pages import report_markdown


def dry_run(tmp_path, *overrides):
    return run_cli("-m", "experiment=which_loss", "hydra.sweeper.dry_run=true", *overrides,
                   f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)


@pytest.mark.parametrize("dataset, task", [("mnist", Task.single_label), ("multilabel", Task.multi_label)])
def test_dry_run_lists_every_loss_that_fits_the_task_and_trains_nothing(tmp_path, dataset, task):
    result = dry_run(tmp_path, f"dataset={dataset}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    fits = [name for name, spec in LOSSES.items() if task in spec.tasks]
    assert f"{len(fits)} losses ({', '.join(fits)}) x 6 trials" in output
    assert f"{len(fits) * (6 + 5)} runs" in output
    assert f"tune ({len(fits) * 6} runs" in output and f"compare ({len(fits) * 5} runs" in output
    assert "loss=focal_sigmoid optim.lr=<tuned> loss.gamma=<tuned> seed=4" in output
    assert not (tmp_path / "sweep").exists()


def test_a_loss_given_on_the_command_line_narrows_the_panel(tmp_path):
    result = dry_run(tmp_path, "loss=ce,focal")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "22 runs: 2 losses (ce, focal) x 6 trials" in result.stdout + result.stderr


def test_progress_counts_runs_and_estimates_from_the_trained_ones():
    now = [0.0]
    progress = Progress(5, clock=lambda: now[0])
    now[0] = 10.0  # the first run also loads the data
    assert progress.job_ended(ran=True) == "progress: 1/5 runs done, elapsed 10s, ETA 40s"
    now[0] = 12.0
    assert progress.job_ended(ran=True) == "progress: 2/5 runs done, elapsed 12s, ETA 6s"
    now[0] = 12.5  # a skipped run says nothing about how long the others take
    assert progress.job_ended(ran=False) == "progress: 3/5 runs done, elapsed 12s, ETA 4s"


def paired(rows):
    base = dict(baseline="ce", view="selected", n_seeds=5, diff_low=0.01, diff_high=0.03, ci_covers="",
                d_z=1.0, p_t=0.001, p_wilcoxon=0.06, p_mcnemar=float("nan"), p_adj=0.002, adjust="holm",
                identical=False, note="")
    return pd.DataFrame([{**base, **row} for row in rows], columns=COLUMNS)


def group(divergence=pd.DataFrame()):
    runs = pd.DataFrame({"input_dir": ["s"], "seed": [0]})
    return SimpleNamespace(group=SimpleNamespace(baseline="ce", verdict_metric="acc", runs=runs),
                           divergence=divergence)


def text(blocks):
    return " ".join(getattr(block, "text", " ".join(getattr(block, "items", []))) for block in blocks)


def test_recommendation_names_the_largest_significant_gain_else_the_baseline():
    rows = paired([dict(loss="focal", metric="acc", diff=0.01, verdict="better"),
                   dict(loss="ce_smooth", metric="acc", diff=0.02, verdict="better")])
    ece = paired([dict(loss="ce_smooth", metric="ece", diff=0.7, verdict="worse")])
    said = text(answer(group(), rows, ece))
    assert said.startswith("**Use `ce_smooth`**") and "+0.0200 [+0.0100, +0.0300]" in said
    assert "Its probabilities are worse calibrated than `ce`'s (`ce_smooth` vs `ce`: ece +0.7000" in said
    none = paired([dict(loss="focal", metric="acc", diff=-0.004, verdict="n.s.", p_adj=0.4)])
    said = text(answer(group(), none, ece))
    assert said.startswith("**`ce` is as good as anything tested**") and "p adj 0.4000" in said


def test_recommendation_says_what_to_avoid_and_why():
    rows = paired([dict(loss="mae", metric="acc", diff=-0.3, verdict="worse", diff_low=-0.4, diff_high=-0.2)])
    ece = paired([dict(loss="bce", metric="ece", diff=0.1, verdict="worse"),
                  dict(loss="mse", metric="ece", diff=0.5, verdict="worse")])
    diverged = pd.DataFrame([dict(loss="bce", diverged=2, runs=5)])
    tuning = pd.DataFrame({"input_dir": ["s"] * 2, "loss_name": ["bce", "bce"], "status": ["diverged", "completed"]})
    items = avoid_items(group(diverged), rows, ece, tuning, keep="mse")  # mse: the recommended one
    assert len(items) == 2
    assert items[0].startswith("`bce`: diverged in 2 of 5 comparison runs and 1 of 2 tuning trials "
                               "(a non-finite loss or gradient); worse calibrated (test ECE higher), `bce` vs `ce`")
    assert items[1].startswith("`mae`: worse, `mae` vs `ce`: acc -0.3000")


@pytest.mark.slow
def test_which_loss_on_the_sample_ends_with_a_report_that_opens_with_its_recommendation(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "experiment=which_loss", *SMALL, "loss=ce,ce_smooth", "trainer.epochs=1", "seed=0,1",
                     "trainer.threads=1", "hydra.sweeper.budget=2", 'hydra.sweeper.default_space={optim.lr:"1e-3,3e-3"}',
                     'hydra.sweeper.knob_space={optim.lr:"1e-3"}', f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "8 runs: 2 losses (ce, ce_smooth) x 2 trials" in output
    assert "estimated time for the other 7 runs" in output
    assert "progress: 1/8 runs done" in output and "progress: 8/8 runs done" in output
    report = report_markdown(sweep / "report")
    first = report.split("\n## ")[1]
    assert first.startswith("Recommendation\n")
    assert "is as good as anything tested" in first or "**Use `" in first
    assert "## Recommendation" in output  # printed at the end, too
    # each comparison seed trained on its own split: split_seed followed the seed
    summary = pd.read_parquet(sweep / "summary.parquet")
    compared = summary[summary["run"].str.startswith("compare/")]
    assert (compared["cfg.dataset.split_seed"] == compared["seed"]).all() and len(compared) == 4
    assert len(list(sweep.glob(f"compare/*/{SUMMARY}"))) == 4
