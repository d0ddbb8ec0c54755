"""The comparison report: its numbers are the tables' numbers, it is reproducible, and bad input
gets a clear message and exit code 2 instead of a traceback.

Fixture sweeps come from test_collect.py (run dirs per docs/results-schema.md, seeded numbers);
the last test runs the real smoke sweep end to end.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lossbench.collect import collect
from lossbench.report import generate
from lossbench.report.__main__ import main
from lossbench.report.groups import find_groups
from lossbench.report.load import load
from lossbench.report.stats import paired_test, t_interval
from test_collect import make_sweep, write_run



@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A collected fixture sweep with its report in sweep/report."""
    root = make_sweep(tmp_path_factory.mktemp("sweep"))
    generate([root], say=lambda _: None)
    return root


@pytest.fixture(scope="module")
def report_md(sweep) -> str:
    return (sweep / "report" / "report.md").read_text()


def md_table_after(markdown: str, caption: str) -> pd.DataFrame:
    """The first markdown table after the line `caption`, as strings."""
    lines = markdown.splitlines()
    start = lines.index(caption) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return pd.DataFrame(rows[2:], columns=rows[0])


# ---- statistics ----

def test_t_interval_matches_scipy():
    x = np.random.default_rng(0).normal(size=5)
    ci = t_interval(x)
    low, high = stats.t.interval(0.95, 4, loc=x.mean(), scale=stats.sem(x))
    assert (ci.n, ci.mean) == (5, pytest.approx(x.mean()))
    assert (ci.low, ci.high) == (pytest.approx(low), pytest.approx(high))
    assert np.isnan(t_interval([1.0]).low) and t_interval([]).n == 0


def test_paired_test_edge_cases_say_why():
    same = paired_test([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert same.identical and same.mean_diff == 0 and same.t_p is None and "identical" in same.note
    one = paired_test([0.9], [0.8])
    assert one.t_p is None and "too few for a t-test" in one.note
    constant = paired_test([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
    assert constant.t_p is None and "t-test undefined" in constant.note
    x, y = np.array([0.91, 0.92, 0.90, 0.95]), np.array([0.90, 0.90, 0.91, 0.92])
    four = paired_test(x, y)
    assert four.t_p == pytest.approx(stats.ttest_rel(x, y).pvalue)
    assert four.wilcoxon_p == pytest.approx(stats.wilcoxon(x, y).pvalue)
    assert "Wilcoxon cannot reach p<0.05 with fewer than 6" in four.note
    six = paired_test(np.arange(6) + 1.0, np.zeros(6))
    assert six.significant and six.wilcoxon_p < 0.05 and "Wilcoxon" not in six.note


def test_groups_split_by_settings_that_differ_within_a_loss_and_seed():
    rows = [{"run": f"{loss}-{p}-{seed}", "loss": loss, "seed": seed, "dataset": "mnist",
             "data_source": "sample", "task": "single_label", "cfg.trainer.precision": p,
             "cfg.trainer.epochs": 5 if p == "16" else 10, "cfg.loss.name": loss,
             "cfg.seed": seed, "cfg.data.root": "data"}
            for loss in ("ce", "bce") for p in ("32", "16") for seed in (0, 1)]
    groups = find_groups(pd.DataFrame(rows))
    assert [g.title for g in groups] == ["mnist / sample (single-label): trainer.precision=16",
                                         "mnist / sample (single-label): trainer.precision=32"]
    assert groups[0].settings == (("trainer.epochs", "5"), ("trainer.precision", "16"))
    assert [len(g.runs) for g in groups] == [4, 4] and groups[0].baseline == "ce"


def summary_rows(losses, seeds=(0, 1), **cfg) -> list[dict]:
    """Completed summary rows of a mnist sample sweep; cfg values may be {loss: value} dicts."""
    return [{"run": f"loss={loss},seed={seed}", "loss": loss, "seed": seed, "dataset": "mnist",
             "data_source": "sample", "task": "single_label", "test_acc": 0.9, "cfg.seed": seed,
             "cfg.loss.name": loss,
             **{f"cfg.{k}": v.get(loss) if isinstance(v, dict) else v for k, v in cfg.items()}}
            for loss in losses for seed in seeds]


def test_a_preset_changed_between_sweeps_is_not_pooled():
    # Each loss has one lr, so nothing differs within a loss and seed; the lrs still differ.
    rows = summary_rows(("ce", "bce_logits"), **{"optim.lr": {"ce": 0.05, "bce_logits": 0.01}})
    groups = find_groups(pd.DataFrame(rows))
    assert [(g.title, g.losses) for g in groups] == [
        ("mnist / sample (single-label): optim.lr=0.01", ["bce_logits"]),
        ("mnist / sample (single-label): optim.lr=0.05", ["ce"]),
    ]


@pytest.mark.parametrize("focal", ["focal(gamma={})", "focal"], ids=["labelled", "one-label"])
def test_loss_parameters_never_split_the_baseline_off(focal):
    rows = summary_rows(("ce",), **{"loss.weight": {"ce": "[1.0, 2.0]"}, "optim.lr": 0.001})
    for gamma in (1.0, 2.0):
        label = focal.format(gamma)
        rows += summary_rows((label,), **{"loss.gamma": {label: gamma}, "optim.lr": 0.001})
    groups = find_groups(pd.DataFrame(rows))
    assert len(groups) == 1 and groups[0].settings == ()
    assert groups[0].baseline == "ce" and len(groups[0].runs) == len(rows)


def test_where_a_run_executed_never_splits_a_group():
    where = {"trainer.threads": {"ce": 1, "bce": 4}, "trainer.device": {"ce": "cpu", "bce": "auto"},
             "experiment": {"ce": "smoke", "bce": None}, "resume": {"ce": True, "bce": False},
             "dataset.root": {"ce": "data", "bce": "/scratch/mnist"},
             "dataset.download": {"ce": False, "bce": True}, "trainer.log_every": {"ce": 50, "bce": 10}}
    groups = find_groups(pd.DataFrame(summary_rows(("ce", "bce"), **where)))
    assert len(groups) == 1 and groups[0].settings == () and groups[0].losses == ["ce", "bce"]


# ---- tables that no longer describe the runs ----

def sweep_collected_a_while_ago(root: Path) -> Path:
    for loss in ("ce", "bce"):
        for seed in (0, 1):
            write_run(root, f"loss={loss},seed={seed}", loss=loss, seed=seed,
                      status="failed" if (loss, seed) == ("bce", 1) else "completed", error="oom")
    collect(root)
    now = (root / "summary.parquet").stat().st_mtime
    for summary in root.glob("*/summary.json"):  # the runs ended two minutes ago
        os.utime(summary, (now - 120, now - 120))
    for name in ("summary", "runs", "calibration"):  # and were collected one minute ago
        os.utime(root / f"{name}.parquet", (now - 60, now - 60))
    return root


@pytest.mark.parametrize("change, says", [
    ("rerun", "has 1 run summary newer than its summary.parquet"),
    ("copied-in", "has 1 run missing from its summary.parquet"),
])
def test_tables_older_than_their_runs_are_collected_again(tmp_path, change, says):
    root = sweep_collected_a_while_ago(tmp_path)
    if change == "rerun":  # the failed run, rerun to completion after the collect
        shutil.rmtree(root / "loss=bce,seed=1")
        write_run(root, "loss=bce,seed=1", loss="bce", seed=1)
    else:  # a run dir copied in with its old times kept (cp -p, rsync -a)
        run = write_run(root, "loss=bce,seed=2", loss="bce", seed=2)
        past = (root / "summary.parquet").stat().st_mtime - 60
        os.utime(run / "summary.json", (past, past))  # as old as the tables: only its absence tells
    messages = []
    summary = load([root], say=messages.append).summary.set_index("run")
    assert messages == [f"{root} {says}: collecting it first"]
    assert summary["status"].eq("completed").sum() == 4
    assert len(pd.read_parquet(root / "summary.parquet")) == len(summary)


def test_current_tables_and_tables_without_runs_are_read_as_they_are(tmp_path):
    root = sweep_collected_a_while_ago(tmp_path / "sweep")
    copied = tmp_path / "tables"  # like results/reference/data: the tables, no run dirs
    copied.mkdir()
    for name in ("summary", "runs", "calibration"):
        shutil.copy(root / f"{name}.parquet", copied)
    messages = []
    for directory in (root, copied):
        summary = load([directory], say=messages.append).summary
        assert (summary["status"] == "failed").sum() == 1
    assert messages == []


# ---- the report on a fixture sweep ----

def test_table_numbers_equal_a_groupby_over_summary(sweep, report_md):
    summary = pd.read_parquet(sweep / "summary.parquet")
    done = summary[(summary["status"] == "completed") & (summary["dataset"] == "mnist")]
    expected = done.groupby("loss")[["test_acc", "test_ece"]].mean()
    seeds = done.groupby("loss")["seed"].nunique()
    csv = pd.read_csv(sweep / "report" / "tables" / "mnist-sample-final-metrics.csv").set_index("loss")
    shown = md_table_after(report_md, "Final test metrics (last epoch), mean and 95% t-CI over "
                                      "seeds.").set_index("loss")
    assert list(shown.index) == ["ce", "nll", "bce", "bce_logits"]
    for loss, row in expected.iterrows():
        assert csv.loc[loss, "acc_mean"] == pytest.approx(row["test_acc"], abs=1e-12)
        assert csv.loc[loss, "n_seeds"] == seeds[loss] == 4
        assert shown.loc[loss, "acc (95% CI)"].startswith(f"{row['test_acc']:.4f} [")
        assert shown.loc[loss, "ece (95% CI)"].startswith(f"{row['test_ece']:.4f} [")


def test_paired_comparison_pairs_by_seed(sweep, report_md):
    summary = pd.read_parquet(sweep / "summary.parquet")
    done = summary[(summary["status"] == "completed") & (summary["dataset"] == "mnist")]
    acc = done.pivot(index="seed", columns="loss", values="test_acc")
    paired = pd.read_csv(sweep / "report" / "tables" / "mnist-sample-paired-vs-ce.csv")
    bce = paired[(paired["loss"] == "bce") & (paired["metric"] == "acc")].iloc[0]
    assert bce["mean_diff"] == pytest.approx((acc["bce"] - acc["ce"]).mean())
    assert bce["ttest_p"] == pytest.approx(stats.ttest_rel(acc["bce"], acc["ce"]).pvalue)
    # nll is bitwise ce: the report says so instead of printing nan
    nll = md_table_after(report_md, "Each loss minus `ce`, paired by seed.")
    nll = nll[nll["loss"] == "nll"]
    assert (nll["t-test p"] == "—").all() and nll["note"].str.contains("identical").all()
    assert "nan" not in report_md.lower()
    assert "`nll` is identical to `ce` on every paired seed" in report_md


def test_findings_are_generated_from_the_numbers(report_md):
    findings = report_md.split("## Findings")[1].split("\n## ")[0]
    assert "### mnist / sample (single-label)" in findings
    assert "### multilabel / synthetic (multi-label)" in findings
    assert "Largest effect on acc" in findings and "Largest effect on map" in findings
    assert "Best calibrated" in findings
    assert "Wilcoxon signed-rank test cannot reach p<0.05" in findings


def test_every_referenced_file_exists(sweep, report_md):
    out = sweep / "report"
    figures = re.findall(r"!\[[^]]*\]\((figures/[^)]+\.png)\)", report_md)
    tables = set(re.findall(r"\((tables/[^)]+\.csv)\)", report_md))
    assert len(figures) == 8 and len(tables) >= 10  # 4 figures x 2 groups
    for name in figures:
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    for name in tables:
        assert (out / name).exists(), name
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(figures)
    assert 'src="figures/' not in html and "<img" in html  # self-contained
    assert str(sweep) not in report_md and str(sweep) not in html  # no absolute paths


def test_two_generations_are_identical(sweep, tmp_path):
    generate([sweep], out=tmp_path / "again", say=lambda _: None)
    first, again = sweep / "report", tmp_path / "again"
    assert (again / "report.md").read_text() == (first / "report.md").read_text()
    assert (again / "report.html").read_bytes() == (first / "report.html").read_bytes()
    for png in (first / "figures").glob("*.png"):
        assert (again / "figures" / png.name).read_bytes() == png.read_bytes(), png.name


def test_failed_runs_are_listed_and_left_out(report_md):
    excluded = md_table_after(report_md, "Runs that did not complete (failed, interrupted, "
                              "diverged or still running); left out of every statistic above.")
    assert list(excluded["run"]) == ["loss=bce,seed=9", "loss=ce,seed=9", "loss=nll,seed=9"]
    assert list(excluded["status"]) == ["failed", "running", "failed"]
    assert "RuntimeError: boom \\| at step 3" in report_md
    assert "unreadable summary.json" in excluded["error"].iloc[2]
    assert "(27 runs: 24 completed, 2 failed, 1 running)" in report_md
    assert "seed 9" not in report_md.split("## Excluded runs")[0]


def test_several_dirs_are_concatenated_with_prefixed_runs(tmp_path):
    for name, seeds in (("a", (0, 1)), ("b", (2,))):
        for loss in ("ce", "bce"):
            for seed in seeds:
                write_run(tmp_path / name, f"loss={loss},seed={seed}", loss=loss, seed=seed)
    write_run(tmp_path / "b", "broken", loss="bce", seed=5, status="failed", error="oom")
    messages = []
    path = generate([tmp_path / "a", tmp_path / "b"], say=messages.append)
    assert path == tmp_path / "a" / "report" / "report.md"
    assert any("collecting it first" in m for m in messages)
    md = path.read_text()
    assert "`a` (4 runs: 4 completed); `b` (3 runs: 2 completed, 1 failed)" in md
    assert "| b/broken | failed |" in md
    final = pd.read_csv(path.parent / "tables" / "mnist-sample-final-metrics.csv")
    assert list(final["n_seeds"]) == [3, 3]


def test_stability_section_with_steps_and_probe(tmp_path):
    root = tmp_path / "stress"
    for loss in ("ce", "bce"):
        for precision in ("32", "16"):
            for seed in (0, 1):
                diverged = loss == "bce" and precision == "16"
                run = write_run(root, f"{loss}-{precision}-{seed}", loss=loss, seed=seed, steps=True,
                                status="diverged" if diverged else "completed",
                                cfg={"trainer.precision": precision})
                if diverged:
                    steps = pd.read_parquet(run / "steps.parquet")
                    steps.loc[steps.index[-1], ["nonfinite_loss", "grad_norm"]] = [1, np.inf]
                    steps.to_parquet(run / "steps.parquet")
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "thresholds.md").write_text("# Thresholds\n\n| loss | z |\n| --- | --- |\n| bce | 17 |\n")
    md = generate([root], probe=probe, say=lambda _: None).read_text()
    stability = md.split("## Stability")[1].split("\n## ")[0]
    assert "varied: trainer.precision" in stability
    events = md_table_after(md, "Non-finite events per loss and stress setting, every run "
                                "included (counts are the runs' final cumulative counts).")
    bce16 = events[(events["loss"] == "bce") & (events["setting"] == "precision=16")].iloc[0]
    assert (bce16["diverged"], bce16["runs_with_nonfinite"], bce16["nonfinite_loss"]) == ("2", "2", "2")
    assert "stability-mnist-sample-single_label-grad-norm.png" in stability
    assert "stability-mnist-sample-single_label-acc-heatmap.png" in stability
    assert "#### Thresholds" in stability and "Missing from the probe dir: probe.png" in stability
    # the comparisons split by precision and leave the diverged runs out
    assert "## mnist / sample (single-label): trainer.precision=16" in md
    heat = pd.read_csv(root / "report" / "tables" / "stability-mnist-sample-single_label-acc-heatmap.csv")
    heat = heat.set_index("setting")
    assert pd.isna(heat.loc["precision=16", "bce"])  # every bce run diverged: no value, no crash
    assert heat.loc["precision=32", "bce"] > 0


# ---- bad input ----

def only_failed(tmp_path: Path) -> Path:
    write_run(tmp_path / "failed", "loss=ce,seed=0", status="failed", error="boom")
    write_run(tmp_path / "failed", "loss=ce,seed=1", status="diverged", error="nan")
    return tmp_path / "failed"


@pytest.mark.parametrize("case, says", [
    ("missing", "does not exist"),
    ("empty", "holds no runs"),
    ("only_failed", "holds no completed runs (1 diverged, 1 failed)"),
])
def test_bad_input_exits_2_with_a_message(tmp_path, capsys, case, says):
    target = {"missing": lambda: tmp_path / "nope", "empty": lambda: tmp_path,
              "only_failed": lambda: only_failed(tmp_path)}[case]()
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main([str(target)]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert str(target) in err and says in err and "Traceback" not in err


def test_bad_probe_dir_exits_2(sweep, tmp_path, capsys):
    assert main([str(sweep), "--out", str(tmp_path / "r"), "--probe", str(tmp_path)]) == 2
    assert "holds neither probe.png nor thresholds.md" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["a-file", "under-a-file", "read-only"])
def test_unwritable_out_exits_2(sweep, tmp_path, capsys, monkeypatch, case):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    out = {"a-file": a_file, "under-a-file": a_file / "sub", "read-only": tmp_path / "r"}[case]
    if case == "read-only":
        # The tests run as root, whom chmod a-w does not stop: the write fails as a read-only
        # directory makes it fail for anyone else.
        def refuse(path, write):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

        monkeypatch.setattr("lossbench.report.atomic_write", refuse)
    assert main([str(sweep), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    why = {"a-file": "it is a file", "under-a-file": "Not a directory",
           "read-only": "Permission denied"}[case]
    assert f"lossbench.report: error: cannot write the report into {out} ({why})" in err
    assert "Traceback" not in err


def test_cli_process_has_no_traceback(tmp_path):
    target = only_failed(tmp_path)
    done = subprocess.run([sys.executable, "-m", "lossbench.report", str(target)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert f"lossbench.report: error: {target} holds no completed runs" in done.stderr
    assert "Traceback" not in done.stderr


# ---- end to end: the real smoke sweep ----

@pytest.mark.slow
def test_smoke_sweep_collects_and_reports(smoke_sweep, tmp_path):
    from lossbench.collect import collect

    # A copy: the shared sweep is read by other tests and must not gain a report dir.
    smoke_sweep = Path(shutil.copytree(smoke_sweep.dir, tmp_path / "sweep"))
    collected = collect(smoke_sweep)
    assert len(collected.summary) == 4 and collected.status_counts() == {"completed": 4}
    assert len(collected.runs) == collected.summary["epochs_completed"].sum() * 3  # train, val, test
    md = generate([smoke_sweep], say=lambda _: None).read_text()
    assert "## mnist / sample (single-label)" in md and "### Paired comparison vs ce" in md
    for name in re.findall(r"\((figures/[^)]+\.png)\)", md):
        assert (smoke_sweep / "report" / name).exists()
    acc = collected.summary.groupby("loss")["test_acc"].mean()
    final = pd.read_csv(smoke_sweep / "report" / "tables" / "mnist-sample-final-metrics.csv")
    assert final.set_index("loss")["acc_mean"].to_dict() == pytest.approx(acc.to_dict())
