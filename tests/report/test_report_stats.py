"""The report's statistics on small hand-made tables: the two views (last epoch, val-selected
epoch), the crossed seeds x test-examples t-test, McNemar as a diagnostic, the corrected families, identity checks, Fisher's
test on divergence counts, and findings that only claim what the corrected tests back.

No training: summary / runs / predictions frames are written here as the collector would.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from lossbench.config import Study
from lossbench.report import figures, generate
from lossbench.report.document import Table
from lossbench.report.__main__ import main
from lossbench.report.findings import p_text
from lossbench.report.groups import direction, find_groups
from lossbench.report.load import QUESTION, STUDY, Inputs
from lossbench.report.paired import COVERS, CROSSED, SEED_T
from lossbench.report.sections import analyse, build_document, by_study, question_sections
from lossbench.report.stats import (crossed_test, divergence_test, ece_floor, mcnemar_exact,
                                    t_interval, verdict)
from lossbench.report.tables import ece_uncertainty, fmt
from report_pages import pages_markdown, report_markdown

METRICS = ("acc", "nll", "ece", "brier")


def metrics_of(acc: float, offset: float) -> dict:
    """Every single-label metric from an accuracy: losses that share acc and offset share all."""
    return {"acc": acc, "nll": 1.0 - acc + offset, "ece": 0.05 + offset,
            "brier": 0.5 - acc / 2 + offset}


def consistent(spec: dict, predictions: dict) -> dict:
    """The run's test acc at its last and its val-selected epoch set to the mean correctness of
    its predictions in that view, as a real run records them."""
    test = list(spec["test"])
    if "last" in predictions:
        test[-1] = float(np.mean(predictions["last"]))
    if "selected" in predictions and spec.get("val"):
        test[int(np.argmax(spec["val"]))] = float(np.mean(predictions["selected"]))
    return {**spec, "test": test}


def make_inputs(runs: dict, predictions: dict | None = None,
                diverged: dict | None = None) -> Inputs:
    """runs: (loss, seed) -> {"test": [acc per epoch], "val": [acc per epoch] or absent,
    "offset": float}; predictions: (loss, seed, view) -> bool array over test examples;
    diverged: loss -> number of extra diverged runs."""
    summary, rows = [], []
    for (loss, seed), spec in runs.items():
        run = f"loss={loss},seed={seed}"
        offset = spec.get("offset", 0.0)
        mine = {view: correct for (other, s, view), correct in (predictions or {}).items()
                if (other, s) == (loss, seed)}
        spec = consistent(spec, mine)
        for split in ("test", "val"):
            for epoch, acc in enumerate(spec.get(split, []), start=1):
                rows.append({"run": run, "loss": loss, "seed": seed, "epoch": epoch,
                             "split": split, "loss_value": 1 - acc, **metrics_of(acc, offset)})
                if split == "test":
                    rows.append({"run": run, "loss": loss, "seed": seed, "epoch": epoch,
                                 "split": "train", "loss_value": 1 - acc})
        last = metrics_of(spec["test"][-1], offset)
        summary.append({"run": run, "status": "completed", "input_dir": "fixture", "loss": loss,
                        "dataset": "mnist",
                        "data_source": "sample", "task": "single_label", "seed": seed,
                        "epochs_completed": len(spec["test"]),
                        **{f"test_{m}": v for m, v in last.items()}})
    for loss, n in (diverged or {}).items():
        for k in range(n):
            summary.append({"run": f"loss={loss},seed=div{k}", "status": "diverged",
                            "input_dir": "fixture", "loss": loss,
                            "dataset": "mnist", "data_source": "sample", "task": "single_label",
                            "seed": 100 + k, "epochs_completed": 1})
    preds = None
    if predictions:
        preds = pd.concat([
            pd.DataFrame({"run": f"loss={loss},seed={seed}", "view": view,
                          "example": np.arange(len(correct)), "correct": np.asarray(correct)})
            for (loss, seed, view), correct in predictions.items()], ignore_index=True)
    summary = pd.DataFrame(summary).sort_values("run").reset_index(drop=True)
    return Inputs(summary=summary, runs=pd.DataFrame(rows), calibration=pd.DataFrame({"run": []}),
                  steps=None, input_dirs=["fixture"], predictions=preds)


def only_group(inputs: Inputs, adjust: str = "holm"):
    (group,) = find_groups(inputs.completed)
    return analyse(group, inputs, adjust)


def correct_with(rng, n: int, p: float) -> np.ndarray:
    return rng.random(n) < p


# ---- pure statistics ----

def test_crossed_interval_covers_the_known_difference():
    rng = np.random.default_rng(1)
    # 5 seeds, 4,000 test examples: x is right with probability 0.90, the baseline 0.85
    diffs = [correct_with(rng, 4000, 0.90).astype(float) - correct_with(rng, 4000, 0.85)
             for _ in range(5)]
    first = crossed_test(np.array(diffs))
    assert first.n_seeds == 5 and first.low < 0.05 < first.high
    assert first.mean == pytest.approx(np.mean([d.mean() for d in diffs]))
    assert first.low > 0.03 and first.high < 0.07  # not a vacuous interval


def test_crossed_interval_is_wider_than_the_seed_interval_when_test_noise_dominates():
    # three seeds whose accuracy gaps barely vary (seed noise tiny) on 200 test examples each
    # (binomial noise large): the seed-only t-interval is far too narrow
    diffs = []
    for wins, losses in ((20, 15), (20, 15), (21, 15)):  # x right where the baseline is wrong
        diffs.append(np.repeat([1.0, -1.0, 0.0], [wins, losses, 200 - wins - losses]))
    seed_only = t_interval([d.mean() for d in diffs])
    both = crossed_test(np.array(diffs))
    assert both.mean == pytest.approx(seed_only.mean)
    assert (both.high - both.low) > 3 * (seed_only.high - seed_only.low)
    assert seed_only.low > 0 > both.low  # the seed-only interval claims a difference it lacks


def test_mcnemar_matches_statsmodels_and_the_binomial_test_on_a_hand_table():
    table = [[50, 12], [3, 35]]  # rows: x right / wrong; columns: baseline right / wrong
    x = np.repeat([True, True, False, False], [50, 12, 3, 35])
    baseline = np.repeat([True, False, True, False], [50, 12, 3, 35])
    p = mcnemar_exact(x, baseline)
    assert p == pytest.approx(mcnemar(table, exact=True).pvalue)
    assert p == pytest.approx(stats.binomtest(3, 15).pvalue)  # the discordant pairs only
    assert p < 0.05


def test_divergence_test_is_fishers_exact_test():
    assert divergence_test(5, 6, 0, 6) == pytest.approx(stats.fisher_exact([[5, 1], [0, 6]]).pvalue)
    assert divergence_test(1, 5, 0, 5) == 1.0
    assert np.isnan(divergence_test(0, 0, 1, 3))


def test_numbers_in_prose_never_read_p_equals_less_than_or_minus_zero():
    assert p_text("McNemar", 1e-7) == "McNemar p < 0.0001"
    assert p_text("McNemar", 0.01234) == "McNemar p = 0.0123"
    assert fmt(-3.2e-6, "+.4f") == "-3.2e-06"
    assert fmt(-0.0, "+.4f") == "0.0000" and fmt(0.0, "+.4f") == "0.0000"
    assert fmt(0.01234, "+.4f") == "+0.0123"


# ---- views ----

def val_and_test_runs(losses=("ce", "bce"), seeds=(0, 1, 2), val=True) -> dict:
    """Val acc peaks at epoch 2 for every run, test acc at epoch 3."""
    runs = {}
    for i, loss in enumerate(losses):
        for seed in seeds:
            shift = 0.01 * i + 0.002 * seed
            spec = {"test": [0.70 + shift, 0.80 + shift, 0.90 + shift], "offset": 0.1 * i}
            if val:
                spec["val"] = [0.75 + shift, 0.85 + shift, 0.82 + shift]
            runs[(loss, seed)] = spec
    return runs


def test_selected_view_reads_the_test_metric_at_the_val_best_epoch():
    r = only_group(make_inputs(val_and_test_runs()))
    assert list(r.views.frames) == ["last", "selected"] and r.views.note == ""
    final = r.final.set_index(["view", "loss"])
    assert final.loc[("selected", "ce"), "acc_mean"] == pytest.approx(0.802)  # epoch 2, not 3
    assert final.loc[("last", "ce"), "acc_mean"] == pytest.approx(0.902)
    assert final.loc[("selected", "ce"), ["epoch_min", "epoch_max"]].tolist() == [2, 2]
    assert set(r.paired["view"]) == {"last", "selected"}


def test_a_group_without_val_rows_reports_only_the_last_view():
    inputs = make_inputs(val_and_test_runs(val=False))
    r = only_group(inputs)
    assert list(r.views.frames) == ["last"]
    assert "no run of this group has validation rows" in r.views.note
    assert set(r.final["view"]) == {"last"} and set(r.paired["view"]) == {"last"}
    md = pages_markdown(build_document(inputs))
    assert "Only the `last` view" in md and "View `selected`" not in md


def test_runs_without_val_rows_are_left_out_of_the_selected_view_and_counted():
    runs = val_and_test_runs()
    del runs[("bce", 2)]["val"]
    r = only_group(make_inputs(runs))
    assert "leaves out 1 of 6 runs" in r.views.note
    final = r.final.set_index(["view", "loss"])
    assert final.loc[("selected", "bce"), "n_seeds"] == 2
    assert final.loc[("last", "bce"), "n_seeds"] == 3


# ---- paired comparisons ----

def test_holm_matches_multipletests_and_identical_losses_leave_the_family():
    runs = {}
    for seed, noise in enumerate((0.0, 0.004, -0.003, 0.006)):
        base = 0.90 + noise
        runs[("ce", seed)] = {"test": [base]}
        runs[("nll", seed)] = {"test": [base]}  # bitwise ce
        runs[("bce", seed)] = {"test": [base - 0.02 + noise / 2], "offset": 0.01}
        runs[("bce_logits", seed)] = {"test": [base - 0.02 + noise / 2], "offset": 0.01}  # = bce
        runs[("focal", seed)] = {"test": [base + 0.005 - noise], "offset": -0.01}
    for method in ("holm", "fdr_bh"):
        paired = only_group(make_inputs(runs), method).paired
        identity = paired[paired["identical"]].drop_duplicates(["loss", "baseline"])
        assert identity[["loss", "baseline"]].values.tolist() == [["nll", "ce"],
                                                                   ["bce_logits", "bce"]]
        assert paired.loc[paired["identical"], "p_adj"].isna().all()
        acc = paired[(paired["metric"] == "acc") & ~paired["identical"]]
        assert list(acc["loss"]) == ["bce", "focal"]  # a family of 2, not 4
        expected = multipletests(acc["p_t"].to_numpy(), method=method)[1]
        np.testing.assert_allclose(acc["p_adj"].to_numpy(), expected)
        assert (paired["adjust"] == method).all()
        assert (acc["ci_covers"] == COVERS[SEED_T]).all()  # no predictions: seeds only
        bce = acc.iloc[0]
        d = np.array([runs[("bce", s)]["test"][0] - runs[("ce", s)]["test"][0] for s in range(4)])
        assert bce["d_z"] == pytest.approx(d.mean() / d.std(ddof=1))
        assert bce["diff"] == pytest.approx(d.mean())
    assert list(paired.columns[:12]) == [
        "loss", "baseline", "metric", "view", "n_seeds", "diff", "diff_low", "diff_high",
        "ci_covers", "test", "p", "p_t"]


def predictions_for(runs: dict, rng, n: int = 300, p_right=None) -> dict:
    """Per run and view, correctness over n test examples; `p_right` maps loss -> P(correct)."""
    out = {}
    for loss, seed in runs:
        for view in ("last", "selected"):
            out[(loss, seed, view)] = correct_with(rng, n, p_right[loss])
    return out


def test_with_predictions_acc_gets_the_crossed_test_and_mcnemar_only_as_a_diagnostic():
    runs = val_and_test_runs(losses=("ce", "bce", "focal"))
    rng = np.random.default_rng(3)
    preds = predictions_for(runs, rng, p_right={"ce": 0.9, "bce": 0.8, "focal": 0.9})
    paired = only_group(make_inputs(runs, preds)).paired
    acc = paired[(paired["metric"] == "acc") & (paired["view"] == "selected")]
    assert (acc["ci_covers"] == COVERS[CROSSED]).all()
    assert (paired.loc[paired["metric"] != "acc", "ci_covers"] == COVERS[SEED_T]).all()
    # McNemar on the examples pooled over the 3 paired seeds, Holm over bce and focal
    for _, row in acc.iterrows():
        x = np.concatenate([preds[(row["loss"], s, "selected")] for s in range(3)])
        b = np.concatenate([preds[("ce", s, "selected")] for s in range(3)])
        assert row["p_mcnemar"] == pytest.approx(mcnemar_exact(x, b))
    np.testing.assert_allclose(acc["p_adj"], multipletests(acc["p"], method="holm")[1])
    for _, row in acc.iterrows():
        d = np.array([preds[(row["loss"], s, "selected")].astype(float)
                      - preds[("ce", s, "selected")] for s in range(3)])
        assert row["p"] == pytest.approx(crossed_test(d).p)
    assert acc.set_index("loss").loc["bce", "p_adj"] < 0.05
    # the tables' difference is the crossed test's point estimate: its CI is around it
    assert ((acc["diff_low"] < acc["diff"]) & (acc["diff"] < acc["diff_high"])).all()
    assert not paired["note"].str.contains("disagree").any()


def test_predictions_that_disagree_with_the_metrics_tables_are_flagged():
    runs = val_and_test_runs()
    preds = predictions_for(runs, np.random.default_rng(3), p_right={"ce": 0.9, "bce": 0.8})
    inputs = make_inputs(runs, preds)
    inputs.predictions.loc[inputs.predictions["run"] == "loss=bce,seed=0", "correct"] = False
    acc = only_group(inputs).paired.query("metric == 'acc'").set_index("view")
    assert "the stored predictions give a difference of" in acc.loc["last", "note"]
    assert "they disagree" in acc.loc["selected", "note"]


def test_each_view_tests_its_own_predictions():
    runs = val_and_test_runs()
    rng = np.random.default_rng(4)
    same = correct_with(rng, 300, 0.85)
    preds = {}
    for loss, seed in runs:
        preds[(loss, seed, "last")] = same  # the two losses agree on every example at the end
        preds[(loss, seed, "selected")] = correct_with(rng, 300, 0.95 if loss == "ce" else 0.7)
    paired = only_group(make_inputs(runs, preds)).paired.set_index(["metric", "view"])
    assert paired.loc[("acc", "last"), "p_mcnemar"] == 1.0
    assert paired.loc[("acc", "selected"), "p_mcnemar"] < 1e-6


# ---- findings and the document ----

def findings_text(inputs: Inputs) -> str:
    """The group's verdicts: they close its paired-comparison subsection."""
    md = pages_markdown(build_document(inputs))
    return md.split("Paired comparison vs")[1].split("\n#")[0]


def test_best_calibrated_is_named_only_when_the_corrected_test_backs_it():
    clear, noisy = {}, {}
    for seed, noise in enumerate((0.0, 0.002, -0.001, 0.003, -0.002)):
        for i, loss in enumerate(("ce", "bce", "focal")):
            clear[(loss, seed)] = {"test": [0.9 + noise], "offset": 0.03 * i + noise / 10}
            noisy[(loss, seed)] = {"test": [0.9 + noise], "offset": noise * (i - 1) * 3}
    assert "Best calibrated by test Brier score" in findings_text(make_inputs(clear))
    text = findings_text(make_inputs(noisy))
    assert "Best calibrated" not in text
    assert "No loss is better or worse calibrated than another by test Brier score" in text


def test_a_loss_whose_outputs_are_not_probabilities_is_never_ranked_on_calibration():
    """mse's softmax of regression outputs is a read-out, not its model: even with the lowest
    Brier score by far it is not named best calibrated, nor counted among the compared pairs."""
    runs = {}
    for seed, noise in enumerate((0.0, 0.002, -0.001, 0.003, -0.002)):
        for i, loss in enumerate(("mse", "ce", "bce", "focal")):
            runs[(loss, seed)] = {"test": [0.9 + noise], "offset": 0.03 * i + noise / 10}
    text = findings_text(make_inputs(runs))
    assert "Best calibrated by test Brier score (last, mean over seeds): `ce`" in text
    assert "over the 3 pairwise comparisons" in text and "`mse`" not in text.split("Best")[1]


def test_divergence_counts_are_compared_by_fishers_test_in_the_findings():
    runs = val_and_test_runs(seeds=(0, 1, 2))
    text = findings_text(make_inputs(runs, diverged={"bce": 3}))
    p = divergence_test(3, 6, 0, 3)
    assert f"`bce` diverged in 3/6 runs, `ce` in 0/3: Fisher's exact {p_text('', p)[1:]}" in text
    assert "not a difference at 0.05" in text


def test_findings_use_adjusted_p_values_and_say_so():
    runs = val_and_test_runs(losses=("ce", "bce", "focal"), seeds=range(5))
    preds = predictions_for(runs, np.random.default_rng(5),
                            p_right={"ce": 0.9, "bce": 0.8, "focal": 0.9})
    text = findings_text(make_inputs(runs, preds))
    assert "p adj: Holm-adjusted within each metric of this view" in text
    assert "the p of crossed t for acc" in text
    acc_rows = [line for line in text.splitlines() if line.startswith("| bce | acc |")]
    assert len(acc_rows) == 1 and all("| worse |" in row for row in acc_rows)  # the one view
    focal = [line for line in text.splitlines() if line.startswith("| focal | acc |")]
    assert focal and all("| inconclusive |" in row for row in focal)
    assert ("Test acc vs `ce` (selected; better/worse: Holm-adjusted p < 0.05, seed-level paired "
            "t p < 0.05 and a 95% CI excluding 0; equivalent: the CI inside the smallest effect "
            "of interest): worse: `bce`") in text
    assert "=<" not in text and "-0.0000" not in text


def test_verdicts_read_lower_is_better_for_calibration_after_temperature_scaling():
    assert direction("nll_ts", -0.01) == direction("ece_ts", -0.01) == "better"
    assert direction("brier_ts", 0.01) == direction("ece_classwise", 0.01) == "worse"
    assert direction("acc", 0.01) == "better" and direction("map", -0.01) == "worse"
    assert verdict(0.03, 0.02, 0.04, 0.001, 0.001, 0.02, lower_is_better=True) == "worse"
    assert verdict(-0.03, -0.04, -0.02, 0.001, 0.001, 0.02, lower_is_better=True) == "better"
    assert verdict(0.03, 0.02, 0.04, 0.2, 0.001, 0.02, lower_is_better=True) == "inconclusive"
    assert verdict(0.01, 0.0, 0.02, float("nan"), 0.01, 0.02) == ""


def test_a_verdict_needs_the_seed_level_test_and_a_ci_excluding_zero():
    """The reference study's sce vs ce at 80% noise: per-seed differences 0.048, 0.163, 0.411,
    -0.002, 0.173 give a seed-level t p of 0.09, whatever a pooled test says."""
    d = np.array([0.048, 0.163, 0.411, -0.002, 0.173])
    p_seed = stats.ttest_1samp(d, 0).pvalue
    assert 0.05 < p_seed < 0.1
    assert verdict(0.159, 0.01, 0.31, 0.00001, p_seed, 0.005) == "inconclusive"
    assert verdict(0.054, -0.0336, 0.1348, 0.00001, 0.001, 0.005) == "inconclusive"
    assert verdict(0.054, 0.01, 0.1348, 0.00001, 0.001, 0.005) == "better"
    assert verdict(-0.2, math.nan, math.nan, 0.001, math.nan, 0.005) == "inconclusive"  # one seed
    assert verdict(0.001, -0.003, 0.004, 0.5, 0.6, 0.005) == "equivalent"
    assert verdict(0.001, -0.003, 0.006, 0.5, 0.6, 0.005) == "inconclusive"
    # one seed: an interval over its test examples is no evidence of equivalence
    assert verdict(0.001, -0.003, 0.004, 0.5, math.nan, 0.005) == "inconclusive"


# ---- the whole report on collected tables ----

def write_collected(root, inputs: Inputs, epochs: str = "epochs.parquet"):
    root.mkdir(parents=True)
    inputs.summary.to_parquet(root / "summary.parquet")
    inputs.runs.to_parquet(root / epochs)
    inputs.predictions.to_parquet(root / "predictions.parquet")
    return root


def test_report_with_predictions_is_byte_identical_and_takes_fdr_bh(tmp_path, capsys):
    runs = val_and_test_runs(losses=("ce", "nll", "bce"))
    runs.update({("nll", s): runs[("ce", s)] for s in range(3)})
    preds = predictions_for(runs, np.random.default_rng(6),
                            p_right={"ce": 0.9, "nll": 0.9, "bce": 0.85})
    preds.update({("nll", s, v): preds[("ce", s, v)]
                  for s in range(3) for v in ("last", "selected")})
    root = write_collected(tmp_path / "sweep", make_inputs(runs, preds))
    first = generate([root], out=tmp_path / "a", say=lambda _: None)
    again = generate([root], out=tmp_path / "b", say=lambda _: None)
    assert first.read_bytes() == again.read_bytes()
    md = report_markdown(first.parent)
    for view in ("selected",):  # the question's one view: the only one the report shows
        table = pd.read_csv(tmp_path / "a" / "tables" / f"mnist-sample-paired-vs-ce-{view}.csv")
        acc = table[(table["loss"] == "bce") & (table["metric"] == "acc")].iloc[0]
        assert acc["ci_covers"] == COVERS[CROSSED] and acc["adjust"] == "holm"
        assert table.loc[table["loss"] == "nll", "identical"].all()
        assert f"View `{view}`: each loss minus `ce`, paired by seed" in md
    assert "for acc it covers seeds and test examples (crossed t)" in md
    assert main([str(root), "--out", str(tmp_path / "bh"), "--adjust", "fdr_bh"]) == 0
    bh = pd.read_csv(tmp_path / "bh" / "tables" / "mnist-sample-paired-vs-ce-selected.csv")
    assert (bh["adjust"] == "fdr_bh").all()
    assert "Benjamini-Hochberg-adjusted" in report_markdown(tmp_path / "bh")
    with pytest.raises(SystemExit):
        main([str(root), "--adjust", "bonferroni"])
    assert "invalid choice: 'bonferroni'" in capsys.readouterr().err


def test_tables_collected_before_epochs_parquet_was_named_give_the_same_report(tmp_path):
    # results/reference/data/ holds runs.parquet: the per-epoch table's name before #19
    runs = val_and_test_runs(losses=("ce", "bce"))
    inputs = make_inputs(runs, predictions_for(runs, np.random.default_rng(7),
                                               p_right={"ce": 0.9, "bce": 0.85}))
    new = write_collected(tmp_path / "new" / "sweep", inputs)
    old = write_collected(tmp_path / "old" / "sweep", inputs, epochs="runs.parquet")
    selected = "View `selected`: each loss minus `ce`, paired by seed"
    generate([new], out=tmp_path / "a", say=lambda _: None)
    generate([old], out=tmp_path / "b", say=lambda _: None)
    report_new = report_markdown(tmp_path / "a")
    assert selected in report_new  # the selected view needs the per-epoch val rows
    assert report_markdown(tmp_path / "b") == report_new

def test_losses_that_are_the_same_function_up_to_rounding_are_reported_once():
    """bce_pos_weight on balanced binary data has pos_weight 1: bce_logits up to ~1e-8 in its
    logged numbers, with the same per-example correctness. It is an identity, not a loss."""
    runs = val_and_test_runs(losses=("ce", "bce_logits"), seeds=range(4))
    preds = predictions_for(runs, np.random.default_rng(7), p_right={"ce": 0.9, "bce_logits": 0.8})
    for seed in range(4):
        twin = runs[("bce_logits", seed)]
        runs[("bce_pos_weight", seed)] = {**twin, "offset": twin["offset"] + 1e-8}
        for view in ("last", "selected"):
            preds[("bce_pos_weight", seed, view)] = preds[("bce_logits", seed, view)]
    paired = only_group(make_inputs(runs, preds)).paired
    twin = paired[paired["loss"] == "bce_pos_weight"]
    assert twin["identical"].all() and (twin["baseline"] == "bce_logits").all()
    assert twin["p_adj"].isna().all()
    # the same numbers with other per-example answers are two functions, however close
    preds[("bce_pos_weight", 0, "last")] = np.roll(preds[("bce_logits", 0, "last")], 1)
    paired = only_group(make_inputs(runs, preds)).paired
    assert not paired.loc[(paired["loss"] == "bce_pos_weight") & (paired["view"] == "last"),
                          "identical"].any()


def test_the_calibration_floor_averages_every_runs_floor():
    """Each run's ECE is judged against the floor its own confidences give, so the table's floor
    is their mean over the runs, not the first run's."""
    runs = {"sure": (14, 0.98, 1000), "unsure": (8, 0.55, 1000)}  # run: (bin, confidence, count)
    rows = pd.DataFrame([{"run": run, "bin": b, "count": count, "confidence": confidence,
                          "accuracy": confidence} for run, (b, confidence, count) in runs.items()])
    floors = [ece_floor(np.full(count, confidence)).mean for _, confidence, count in runs.values()]
    assert floors[1] > 2 * floors[0]  # the runs' floors differ: the first alone is not the mean
    assert ece_uncertainty(rows)["ece_floor"] == pytest.approx(np.mean(floors))


def study_inputs(study: str, losses=("ce", "bce")) -> Inputs:
    """val_and_test_runs (val peaks at epoch 2, test at 3) declared as one question's runs."""
    inputs = make_inputs(val_and_test_runs(losses))
    inputs.summary[STUDY] = study
    return inputs


def test_the_images_ap_table_reads_the_questions_view_not_the_last_epoch():
    """One view per question: the per-label AP table reads the epoch the Summary reads (here the
    val-selected epoch 2), not each run's last epoch (3)."""
    inputs = study_inputs(Study.images.value)
    inputs.per_class = pd.DataFrame([
        {"run": run, "epoch": epoch, "split": "test", "class": label, "ap": epoch / 10 + label,
         "train_count": 10} for run in inputs.summary["run"] for epoch in (1, 2, 3)
        for label in (0, 1)])
    r = only_group(inputs)
    assert r.views.primary == "selected"
    [section] = question_sections(inputs, by_study(inputs, [r]))
    [table] = [b for b in section.blocks if isinstance(b, Table) and b.name == "images-ap-per-label"]
    assert table.data.groupby("class")["ap"].unique().map(list).to_dict() == {
        0: [pytest.approx(0.2)], 1: [pytest.approx(1.2)]}
    assert set(table.data["n_runs"]) == {3}  # every seed of each loss


def test_condition_figures_colour_the_questions_baseline_and_comparisons(monkeypatch):
    """The noise figures colour what the question compares (declared baseline and comparisons),
    as the learning curves do, not every loss of the study."""
    inputs = study_inputs(Study.noise.value, ("ce", "bce", "mae"))
    inputs.summary[QUESTION + "baseline"] = "ce"
    inputs.summary[QUESTION + "comparisons"] = "['mae']"
    drawn = []
    monkeypatch.setattr(figures, "condition_curves",
                        lambda *args, highlight=None, **kwargs: drawn.append(highlight) or b"")
    question_sections(inputs, by_study(inputs, [only_group(inputs)]))
    assert drawn == [["ce", "mae"]]
