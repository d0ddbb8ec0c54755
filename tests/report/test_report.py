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

from lossbench.runs.collect import collect
from lossbench.report import generate
from lossbench.report.__main__ import main
from lossbench.report.groups import find_groups
from lossbench.report.load import load
from lossbench.report.stats import paired_test, t_interval
from lossbench.report.tables import fmt_p
from lossbench.report.tuning_section import TUNING_TRIAL, mark_tuning
from report_pages import report_markdown
from run_dirs import make_sweep, write_run



@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A collected fixture sweep with its report in sweep/report."""
    root = make_sweep(tmp_path_factory.mktemp("sweep"))
    generate([root], say=lambda _: None)
    return root


@pytest.fixture(scope="module")
def report_md(sweep) -> str:
    """The main page and its appendix pages."""
    return report_markdown(sweep / "report")


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
    assert "Wilcoxon cannot reach p < 0.05 with fewer than 6" in four.note
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


def test_a_tuned_comparison_is_one_group_and_its_trials_are_left_out():
    lrs = {"optim.lr": {"ce": 0.001, "focal": 0.003}}
    compare = [dict(row, run=f"compare/{row['run']}", input_dir="sweep")
               for row in summary_rows(("ce", "focal"), **lrs)]
    trials = [dict(row, run=f"tune/{row['run']}", input_dir="sweep")
              for row in summary_rows(("ce", "focal"), seeds=(100,), **lrs)]
    shared = [dict(row, input_dir="shared") for row in summary_rows(("ce", "focal"), **{"optim.lr": 0.001})]
    tuning = pd.DataFrame({"run": [row["run"] for row in trials], "input_dir": "sweep",
                           "setting": ["optim.lr=0.001", "optim.lr=0.003,loss.gamma=2"]})
    summary = mark_tuning(pd.DataFrame(compare + trials + shared), tuning)
    assert summary[TUNING_TRIAL].tolist() == [False] * 4 + [True] * 2 + [False] * 4
    groups = find_groups(summary[~summary[TUNING_TRIAL]])
    assert [(g.title, g.losses, len(g.runs)) for g in groups] == [
        ("mnist / sample (single-label): optim.lr=0.001", ["ce", "focal"], 4),
        ("mnist / sample (single-label): optim.lr=tuned", ["ce", "focal"], 4)]
    assert set(groups[1].runs["run"].str[:8]) == {"compare/"} and groups[1].baseline == "ce"
    assert groups[1].members(summary[~summary[TUNING_TRIAL]])["run"].tolist() == [
        row["run"] for row in compare]
    # without tuning.parquet, each loss's own lr splits it off: nothing to pair with ce
    assert len(find_groups(mark_tuning(pd.DataFrame(compare), None))) == 2


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
    for name in ("summary", "epochs", "calibration"):  # and were collected one minute ago
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
    for name in ("summary", "epochs", "calibration"):
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
    csv = pd.read_csv(sweep / "report" / "tables" / "mnist-sample-final-metrics-last.csv")
    csv = csv.set_index("loss")
    shown = md_table_after(report_md, "View `last`: test metrics at each run's last epoch (a "
                                      "fixed budget), mean and 95% t-CI over seeds; `epoch` is "
                                      "the last epoch (a range if runs stopped early).")
    shown = shown.set_index("loss")
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
    paired = pd.read_csv(sweep / "report" / "tables" / "mnist-sample-paired-vs-ce-last.csv")
    bce = paired[(paired["loss"] == "bce") & (paired["metric"] == "acc")].iloc[0]
    assert bce["diff"] == pytest.approx((acc["bce"] - acc["ce"]).mean())
    assert bce["p_t"] == pytest.approx(stats.ttest_rel(acc["bce"], acc["ce"]).pvalue)
    # nll is bitwise ce: reported once as an identity check instead of printing nan
    caption = next(line for line in report_md.splitlines()
                   if line.startswith("View `last`: each loss minus `ce`, paired by seed"))
    nll = md_table_after(report_md, caption)
    nll = nll[nll["loss"] == "nll"]
    assert len(nll) == 1 and nll["metric"].iloc[0] == "all"
    assert (nll["seed t p"] == "—").all() and nll["note"].str.contains("identical").all()
    assert "nan" not in report_md.lower()


def test_group_verdicts_are_generated_from_the_numbers(report_md):
    assert "\n### mnist / sample\n" in report_md  # named within its study, no config hash
    assert "Largest effect on acc" in report_md and "Largest effect on map" in report_md
    # these seeds' Brier gaps do not survive the correction (test_report_stats has one that does)
    assert "No loss is better or worse calibrated than another by test Brier score" in report_md
    assert "Best calibrated" not in report_md
    assert "Wilcoxon signed-rank test cannot reach p < 0.05" in report_md
    assert "Holm-adjusted" in report_md and "=<" not in report_md


def test_summary_bullets_carry_effect_ci_and_adjusted_p(sweep, report_md):
    """Every verdict the Summary states is a row of tables/verdicts.csv, its numbers in the
    bullet of its question (the old Summary picked at most 7: a winner chosen after the fact)."""
    summary = report_md.split("## Summary")[1].split("\n## ")[0]
    bullets = [line for line in summary.splitlines() if line.startswith("- ")]
    main_page = (sweep / "report" / "report.md").read_text()
    tables = sweep / "report" / "tables"
    verdicts = pd.read_csv(tables / "verdicts.csv", keep_default_na=False, na_values=[""])
    assert len(bullets) == verdicts["question"].nunique() >= 1
    assert set(verdicts["adjust"]) == {"holm"}
    view = "selected" if (tables / "multilabel-synthetic-paired-vs-bce_logits-selected.csv").exists() else "last"
    row = verdicts[(verdicts["loss"] == "bce") & (verdicts["metric"] == "map")].iloc[0]
    assert row["view"] == view and row["baseline"] == "bce_logits"
    paired = pd.read_csv(tables / f"multilabel-synthetic-paired-vs-bce_logits-{view}.csv")
    same = paired[(paired["loss"] == "bce") & (paired["metric"] == "map")].iloc[0]
    assert row["difference"] == pytest.approx(same["diff"]) and row["p_adj"] >= same["p"]
    p = fmt_p(row["p_adj"])
    p = f"p < {p[1:]}" if p.startswith("<") else f"p = {p}"
    if row["verdict"] in ("better", "worse"):
        expected = (f"`bce`: {row['difference']:+.4f} [{row['ci_low']:+.4f}, "
                    f"{row['ci_high']:+.4f}], {row['k_of_n']} seeds")
        assert any(expected in b and f"{p} (Holm)" in b for b in bullets), (expected, bullets)
    else:
        assert any(f"{row['verdict']}" in b and "`bce`" in b for b in bullets), bullets
    for bullet in bullets:
        assert "a shared lr of 0.001 at 3 epochs" in bullet  # the condition it holds under
    assert main_page.index("## Summary") < main_page.index("## Losses at") < main_page.index("## Glossary")


def test_every_referenced_file_exists(sweep, report_md):
    out = sweep / "report"
    pages = [out / "report.md", *sorted((out / "appendix").glob("*.md"))]
    figures, tables = [], set()
    for page in pages:
        text = page.read_text()
        figures += [(page.parent / f).resolve() for f in re.findall(r"!\[[^]]*\]\(([^)]+\.(?:png|svg))\)", text)]
        tables |= {(page.parent / t).resolve() for t in re.findall(r"\(((?:\.\./)?tables/[^)]+\.csv)\)", text)}
    assert len(figures) == 7 and len(tables) >= 10  # 3 figures x 2 groups, and the forest plot
    for path in figures:
        assert path.read_bytes().startswith(b"\x89PNG" if path.suffix == ".png" else b"<?xml"), path
    for path in tables:
        assert path.exists(), path
    html = "".join(page.with_suffix(".html").read_text() for page in pages)
    assert html.count('src="data:image/') == len(figures)
    assert 'src="figures/' not in html and 'src="../figures/' not in html  # self-contained
    assert str(sweep) not in report_md and str(sweep) not in html  # no absolute paths


def test_two_generations_are_identical(sweep, tmp_path):
    generate([sweep], out=tmp_path / "again", say=lambda _: None)
    first, again = sweep / "report", tmp_path / "again"
    pages = ["report.md", "report.html", *(f"appendix/{p.name}" for p in (first / "appendix").iterdir())]
    for name in pages:
        assert (again / name).read_bytes() == (first / name).read_bytes(), name
    for image in (first / "figures").iterdir():
        assert (again / "figures" / image.name).read_bytes() == image.read_bytes(), image.name


def test_failed_runs_are_listed_and_left_out(report_md):
    excluded = md_table_after(report_md, "Runs that did not complete (failed, interrupted, "
                              "diverged or still running); left out of every comparison "
                              "(diverged stress runs are counted in Stability).")
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
    md = report_markdown(path.parent)
    assert "`a` (4 runs: 4 completed); `b` (3 runs: 2 completed, 1 failed)" in md
    assert "| b/broken | failed |" in md
    final = pd.read_csv(path.parent / "tables" / "mnist-sample-final-metrics-last.csv")
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
    md = report_markdown(generate([root], probe=probe, say=lambda _: None).parent)
    stability = md.split("## Stability")[1].split("\n## ")[0]
    assert "varied: `trainer.precision`" in stability
    verdicts = pd.read_csv(root / "report" / "tables" / "stability-mnist-sample-single_label-verdicts.csv")
    bce16 = verdicts[(verdicts["loss"] == "bce") & (verdicts["setting"] == "precision=16")].iloc[0]
    assert (bce16["diverged"], bce16["n"], bce16["ref_diverged"], bce16["ref_n"]) == (2, 2, 0, 2)
    assert bce16["fisher_p"] == pytest.approx(stats.fisher_exact([[2, 0], [0, 2]]).pvalue)
    assert bce16["verdict"] == "no difference shown"  # 2 seeds cannot make it significant
    appendix = md.split("\n## Non-finite events")[1]
    events = md_table_after(md, "Non-finite events per loss and stress setting, every run "
                                "included (counts are the runs' final cumulative counts).")
    bce16 = events[(events["loss"] == "bce") & (events["setting"] == "precision=16")].iloc[0]
    assert (bce16["diverged"], bce16["runs_with_nonfinite"], bce16["nonfinite_loss"]) == ("2", "2", "2")
    assert "stability-mnist-sample-single_label-grad-norm.png" in stability
    assert "stability-mnist-sample-single_label-acc-heatmap.png" in stability
    assert "Missing from the probe dir: probe.png" in stability
    assert "#### Thresholds" in appendix
    # the comparisons split by precision and leave the diverged runs out
    assert "## mnist / sample, float16\n" in md
    heat = pd.read_csv(root / "report" / "tables" / "stability-mnist-sample-single_label-acc-heatmap.csv")
    heat = heat.set_index(["row", "loss"])
    assert pd.isna(heat.loc[("precision=16", "bce"), "mean"])  # every bce run diverged: no value
    assert heat.loc[("precision=16", "bce"), "n_diverged"] == 2
    assert heat.loc[("precision=32", "bce"), "mean"] > 0


def test_overview_never_says_none_left_out_above_excluded_runs(tmp_path):
    for loss in ("ce", "bce"):
        for seed in (0, 1):
            write_run(tmp_path / "compared", f"{loss}-{seed}", loss=loss, seed=seed)
            write_run(tmp_path / "stress", f"{loss}-{seed}", loss=loss, seed=seed, steps=True,
                      status="diverged" if loss == "bce" else "completed")
    md = report_markdown(generate([tmp_path / "compared"], stress=[tmp_path / "stress"],
                                  say=lambda _: None).parent)
    overview = md.split("\n## Overview")[1].split("\n## ")[0]
    assert "none is left out" not in overview and "Every compared run completed" in overview
    assert "All 2 runs that did not complete are listed in the appendix" in overview
    assert md_table_after(md, "Runs that did not complete (failed, interrupted, diverged or still "
                              "running); left out of every comparison (diverged stress runs are "
                              "counted in Stability).")["status"].tolist() == ["diverged"] * 2
    alone = report_markdown(generate([tmp_path / "compared"], out=tmp_path / "alone",
                                     say=lambda _: None).parent)
    assert "Every run completed; none is left out." in alone


def test_contents_links_resolve_in_markdown_and_html(sweep):
    out = sweep / "report"
    for page in [out / "report.md", *sorted((out / "appendix").glob("*.md"))]:
        markdown, html = page.read_text(), page.with_suffix(".html").read_text()
        ids = re.findall(r'<h[1-6] id="([^"]+)"', html)
        assert len(ids) == len(set(ids))
        links = re.findall(r'<a href="#([^"]+)"', html)
        assert links and set(links) <= set(ids)
        # markdown: the same anchors, as GitHub derives them from the headings
        md_links = re.findall(r"\]\(#([^)]+)\)", markdown)
        assert md_links == links
        headings = [re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
                    for line in markdown.splitlines() if re.match(r"#{2,6} ", line)]
        assert set(md_links) <= set(headings)
    # the Summary first, and the contents unfolded above it
    main_page, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    top = [line for line in main_page.splitlines() if line.startswith("## ")]
    assert top[:2] == ["## Summary", "## Effects"]
    assert "<details>" not in html and html.index("<nav>") < html.index('<h2 id="summary">')


def test_figures_are_legible_at_the_page_width(monkeypatch, tmp_path):
    """No figure wider than the 1200 px page (so none is scaled down), no text under 10 px."""
    from lossbench.report import figures

    drawn = []
    original = figures.png
    monkeypatch.setattr(figures, "png", lambda fig: (drawn.append(fig), original(fig))[1])
    root = make_sweep(tmp_path / "sweep")
    for loss in ("ce", "nll", "bce", "bce_logits"):
        for precision in ("32", "16"):
            for lr in (0.001, 0.1):
                write_run(tmp_path / "stress", f"{loss}-{precision}-{lr}", loss=loss, steps=True,
                          cfg={"trainer.precision": precision, "optim.lr": lr})
    generate([root], stress=[tmp_path / "stress"], say=lambda _: None)
    assert len(drawn) >= 8
    for fig in drawn:
        width_px = fig.get_figwidth() * figures.DPI
        assert width_px <= 1200, fig
        for text in fig.findobj(lambda o: hasattr(o, "get_fontsize") and hasattr(o, "get_text")):
            if text.get_text() and text.get_visible():
                assert text.get_fontsize() * figures.DPI / 72 >= 10, text.get_text()


def test_learning_curves_take_a_log_axis_where_criteria_span_decades(monkeypatch):
    """nce_rce's criterion is ~50x ce's: on a linear axis ce's curve would be a flat line."""
    from lossbench.report import figures

    drawn = []
    original = figures.png
    monkeypatch.setattr(figures, "png", lambda fig: (drawn.append(fig), original(fig))[1])
    rows = [{"loss": loss, "split": split, "column": column, "epoch": epoch, "n_seeds": 3,
             "mean": value / epoch, "ci_low": value / epoch * 0.9, "ci_high": value / epoch * 1.1}
            for loss, scale in (("ce", 0.3), ("nce_rce", 15.0))
            for split, column, value in (("train", "loss_value", scale), ("test", "loss_value", scale),
                                         ("test", "acc", 0.9))
            for epoch in (1, 2, 3)]
    figures.learning_curves(pd.DataFrame(rows), ["ce", "nce_rce"], "acc")
    [fig] = drawn
    scales = {ax.get_title(): ax.get_yscale() for ax in fig.axes if ax.get_visible()}
    assert scales == {"train criterion, softmax family (log scale)": "log",
                      "test criterion, softmax family (log scale)": "log", "test acc": "linear"}
    assert len(fig.legends) == 1 and [t.get_text() for t in fig.legends[0].get_texts()] == [
        "ce", "nce_rce"]


def curve_rows(losses) -> pd.DataFrame:
    return pd.DataFrame([
        {"loss": loss, "split": split, "column": column, "epoch": epoch, "n_seeds": 3,
         "mean": value / epoch + k / 100, "ci_low": value / epoch * 0.9, "ci_high": value / epoch * 1.1}
        for k, loss in enumerate(losses)
        for split, column, value in (("train", "loss_value", 0.3), ("test", "loss_value", 0.3),
                                     ("test", "acc", 0.9))
        for epoch in (1, 2, 3)])


def coloured(ax) -> set:
    """The colours of an axes' lines other than the grey of the losses not compared."""
    from matplotlib.colors import to_hex

    from lossbench.report.figures import OTHERS

    return {to_hex(line.get_color()) for line in ax.get_lines()} - {to_hex(OTHERS["color"])}


def test_learning_curves_colour_only_the_baseline_and_the_declared_comparisons(monkeypatch):
    """Seventeen coloured lines are unreadable: the losses the question compares get colours,
    the rest one grey, and the legend names the coloured ones."""
    from lossbench.report import figures
    from lossbench.report.groups import LOSS_ORDER

    drawn = []
    original = figures.png
    monkeypatch.setattr(figures, "png", lambda fig: (drawn.append(fig), original(fig))[1])
    softmax = [loss for loss in LOSS_ORDER if figures.family(loss) == "softmax"]
    figures.learning_curves(curve_rows(softmax), softmax, "acc", ["ce", "focal", "mae"])
    [fig] = drawn
    accuracy = [ax for ax in fig.axes if ax.get_title() == "test acc"][0]
    assert len(coloured(accuracy)) == 3 and len(accuracy.get_lines()) > 3 * 3
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["ce", "focal", "mae",
                                                                  "other losses"]


def test_many_comparisons_become_one_small_panel_each(monkeypatch):
    from lossbench.report import figures
    from lossbench.report.groups import LOSS_ORDER

    drawn = []
    original = figures.png
    monkeypatch.setattr(figures, "png", lambda fig: (drawn.append(fig), original(fig))[1])
    losses = list(LOSS_ORDER)
    figures.learning_curves(curve_rows(losses), losses, "acc", losses)
    [fig] = drawn
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == losses[1:]
    for ax in panels:  # the panel's loss (with its CI lines) and the baseline in black
        assert len(coloured(ax)) == 2 and "#000000" in coloured(ax)


def test_condition_and_memorisation_figures_colour_only_the_declared_losses(monkeypatch):
    """As in the learning curves: the baseline and the question's comparisons in colour, every
    other loss of the study one grey, the legend naming the coloured ones."""
    from lossbench.training.metrics import MEMORISATION
    from lossbench.report import figures
    from lossbench.report.groups import LOSS_ORDER

    drawn = []
    original = figures.png
    monkeypatch.setattr(figures, "png", lambda fig: (drawn.append(fig), original(fig))[1])
    losses = [loss for loss in LOSS_ORDER if figures.family(loss) == "softmax"]
    declared = ["ce", "gce", "sce"]
    points = pd.DataFrame([{"panel": panel, "loss": loss, "x": x, "mean": 0.9 - x,
                            "ci_low": 0.85 - x, "ci_high": 0.95 - x}
                           for panel in ("symmetric", "asymmetric") for loss in losses
                           for x in (0.0, 0.2, 0.4)])
    figures.condition_curves(points, "noise rate", "test accuracy", highlight=declared)
    curves = pd.DataFrame([{"panel": "symmetric 0.4", "loss": loss, "column": column,
                            "epoch": epoch, "mean": 0.1 * epoch}
                           for loss in losses for column in MEMORISATION for epoch in (1, 2, 3)])
    figures.memorisation(curves, declared)
    for fig in drawn:
        for ax in (ax for ax in fig.axes if ax.get_visible()):
            assert len(coloured(ax)) == len(declared) and len(ax.get_lines()) > len(losses)
        names = [t.get_text() for t in fig.legends[0].get_texts()]
        assert names[:len(declared) + 1] == [*declared, "other losses"]
    assert len(drawn) == 2


def test_condition_studies_are_found_from_configs_and_render_twice_alike(tmp_path):
    """A DIR named 'imbalance' holding noisy runs is the noise study: configs decide, not names."""
    import json

    for loss in ("ce", "gce"):
        for seed in (0, 1):
            for noise in (0.0, 0.4):
                write_run(tmp_path / "imbalance", f"{loss}-{noise}-{seed}", loss=loss, seed=seed,
                          cfg={"dataset.label_noise": noise, "dataset.noise_kind": "symmetric"})
            for ratio in (1, 10):
                run = write_run(tmp_path / "other", f"{loss}-{ratio}-{seed}", loss=loss, seed=seed,
                                cfg={"dataset.imbalance_ratio": ratio})
                summary = json.loads((run / "summary.json").read_text())
                summary |= {"test_balanced_acc": 0.9 - 0.01 * ratio - 0.01 * seed,
                            "test_rare_recall": 0.8 - 0.02 * ratio}
                (run / "summary.json").write_text(json.dumps(summary))
    dirs = [tmp_path / "imbalance", tmp_path / "other"]
    md = generate(dirs, out=tmp_path / "first", say=lambda _: None).read_text()
    appendix = tmp_path / "first" / "appendix"
    noise = (appendix / "noise.md").read_text()
    assert "noise-acc-vs-rate.png" in noise and "noise 0.4" in noise
    points = pd.read_csv(tmp_path / "first" / "tables" / "noise-acc.csv")
    ce = points[(points["loss"] == "ce") & (points["x"] == 0.4)].iloc[0]
    summary = pd.read_parquet(tmp_path / "imbalance" / "summary.parquet")
    noisy_ce = summary[(summary["loss"] == "ce") & (summary["cfg.dataset.label_noise"] == 0.4)]
    assert ce["mean"] == pytest.approx(noisy_ce["test_acc"].mean()) and ce["n_seeds"] == 2
    imbalance = (appendix / "imbalance.md").read_text()
    assert "imbalance.png" in imbalance and "balanced accuracy, ratio 10" in imbalance
    assert "## Losses at shared settings" not in md  # the clean and balanced runs are studies' too
    assert not (appendix / "shared.md").exists()
    again = generate(dirs, out=tmp_path / "again", say=lambda _: None)
    assert again.read_bytes() == (tmp_path / "first" / "report.md").read_bytes()
    for png in (tmp_path / "first" / "figures").glob("*.png"):
        assert (tmp_path / "again" / "figures" / png.name).read_bytes() == png.read_bytes()


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
    from lossbench.runs.collect import collect

    # A copy: the shared sweep is read by other tests and must not gain a report dir.
    smoke_sweep = Path(shutil.copytree(smoke_sweep.dir, tmp_path / "sweep"))
    collected = collect(smoke_sweep)
    assert len(collected.summary) == 4 and collected.status_counts() == {"completed": 4}
    assert len(collected.runs) == collected.summary["epochs_completed"].sum() * 3  # train, val, test
    generate([smoke_sweep], say=lambda _: None)
    md = report_markdown(smoke_sweep / "report")
    assert "### mnist / sample\n" in md and "### Paired comparison vs ce" in md
    for name in re.findall(r"\((?:\.\./)?(figures/[^)]+\.png)\)", md):
        assert (smoke_sweep / "report" / name).exists()
    acc = collected.summary.groupby("loss")["test_acc"].mean()
    # the question's one view: the only final-metrics table the group has
    [table] = (smoke_sweep / "report" / "tables").glob("mnist-sample-final-metrics-*.csv")
    final = pd.read_csv(table)
    assert final.set_index("loss")["acc_mean"].to_dict() == pytest.approx(acc.to_dict())


def test_memorisation_colours_tell_every_loss_apart():
    """There the line style means true vs noisy label, so every registry loss needs its own colour
    (with ten colours ce and mae shared one)."""
    from lossbench.report.figures import style
    from lossbench.report.groups import LOSS_ORDER

    colours = [style(loss)["color"] for loss in LOSS_ORDER]
    assert len(set(colours)) == len(LOSS_ORDER)
    assert style("ce")["color"] != style("mae")["color"]


def test_imbalanced_groups_are_judged_on_balanced_accuracy():
    """On a balanced test set plain accuracy averages away what a loss does to the rare classes."""
    from lossbench.report.groups import Group

    def group(ratio):
        runs = pd.DataFrame({"run": ["a"], "loss": ["ce"], "test_acc": [0.9],
                             "test_balanced_acc": [0.8], "test_rare_recall": [0.5],
                             "cfg.dataset.imbalance_ratio": [ratio]})
        return Group("mnist", "sample", "single_label", (), runs)

    assert group(100.0).metrics[-2:] == ("balanced_acc", "rare_recall")
    assert group(100.0).verdict_metric == "balanced_acc"
    assert "balanced_acc" not in group(1.0).metrics and group(1.0).verdict_metric == "acc"


def test_grad_norm_axis_keeps_every_median_curve_in_view(monkeypatch):
    """A saturated BCE's gradient vanishes (~1e-6): that curve is the finding, so it is drawn on the
    bottom edge rather than cut away, while a few huge spikes must not set the top."""
    from lossbench.report import figures

    drawn = []
    original = figures.png
    monkeypatch.setattr(figures, "png", lambda fig: (drawn.append(fig), original(fig))[1])
    settings = [f"lr={k}" for k in range(24)]  # bce saturates in one of them: under 1% of norms
    rows = [{"setting": setting, "loss": loss, "step": step, "median": median, "min": median / 2,
             "max": median * (1e6 if step == 10 and loss == "ce" else 2)}
            for setting in settings
            for loss, median in (("ce", 1.0), ("nll", 1.0), ("bce_logits", 0.1),
                                 ("bce", 1e-6 if setting == "lr=0" else 0.1))
            for step in range(10, 200, 10)]
    figures.grad_norm_curves(pd.DataFrame(rows), settings, ["ce", "nll", "bce", "bce_logits"])
    ax = drawn[0].axes[0]
    low, high = ax.get_ylim()
    assert 1.0 < high < 1e5 and low < 0.1 / 2  # every healthy curve in view
    bce = [line for line in ax.get_lines() if line.get_label() == "bce"][0]
    assert min(bce.get_ydata()) >= low and min(bce.get_ydata()) < 0.1 / 50  # on the bottom edge


def test_a_declared_comparison_names_the_registry_loss_whatever_its_knobs():
    """apl_mnist declares `focal`; its runs are labelled focal(gamma=0.5): still compared."""
    from lossbench.report.groups import Group

    runs = pd.DataFrame({"run": ["a", "b", "c", "d"], "test_acc": [0.9] * 4,
                         "loss": ["ce", "focal(gamma=0.5)", "gce", "mae(scale=1)"],
                         "loss_name": ["ce", "focal", "gce", "mae"],
                         "cfg.question.baseline": ["ce"] * 4,
                         "cfg.question.comparisons": ["['focal', 'gce']"] * 4})
    group = Group("mnist", "sample", "single_label", (), runs)
    assert group.baseline == "ce" and group.comparisons == ["focal(gamma=0.5)", "gce"]
