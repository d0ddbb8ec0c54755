"""The report's Summary: every declared comparison of every question, adjusted together, none
chosen after the fact (verdicts.declared_verdicts, summary_bullets.question_bullet).

The old Summary chose per question its largest significant gain (and capped the bullets at 7):
a winner picked after the fact, without a correction across groups. These tests replace those
claims.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from lossbench.report.groups import find_groups
from lossbench.report.paired import paired_comparisons
from lossbench.report.summary_bullets import question_bullet, stability_bullets
from lossbench.report.verdicts import (SEED_COLUMNS, VERDICT_COLUMNS, Entry, declared_verdicts,
                                       verdict_seeds)
from lossbench.report.views import last_view

GAINS = {"ce": 0.0, "ce_smooth": 0.03, "mae": -0.04, "focal": 0.0005, "brier": 0.0}


def summary(noise: float, declared: bool = True, seeds: int = 6) -> pd.DataFrame:
    """One group's runs: each loss's test acc = 0.9 + its gain + a per-seed wobble."""
    rng = np.random.default_rng(int(noise * 10))
    rows = []
    for seed in range(seeds):
        wobble = rng.normal(0, 0.002, len(GAINS))
        for (loss, gain), w in zip(GAINS.items(), wobble):
            row = {"run": f"noise={noise},loss={loss},seed={seed}", "status": "completed",
                   "loss": loss, "seed": seed, "dataset": "mnist", "data_source": "sample",
                   "task": "single_label", "epochs_completed": 1, "cfg.dataset.label_noise": noise,
                   "cfg.dataset.split_seed": 100 + seed, "test_acc": 0.9 + gain + w,
                   "test_nll": 0.3 - gain}
            if declared:
                row |= {"cfg.question.study": "noise", "cfg.question.baseline": "ce",
                        "cfg.question.metric": "acc", "cfg.question.view": "last",
                        "cfg.question.comparisons": "['ce_smooth', 'mae', 'focal']"}
            rows.append(row)
    return pd.DataFrame(rows)


def entries(*frames: pd.DataFrame, method: str = "holm") -> list[Entry]:
    out = []
    for g in find_groups(pd.concat(frames, ignore_index=True)):
        frame = last_view(g)
        out.append(Entry("Label noise", dict(g.settings).get("dataset.label_noise", ""), g,
                         paired_comparisons(g, {"last": frame}, None, method), frame, "last"))
    return out


def test_the_summary_states_exactly_the_declared_comparisons_adjusted_together():
    mine = entries(summary(0.2), summary(0.4))
    table, _ = declared_verdicts(mine)
    assert list(table.columns) == VERDICT_COLUMNS
    # brier ran but is not declared: never stated; every declared loss in every group is
    assert sorted(table["loss"].unique()) == ["ce_smooth", "focal", "mae"]
    assert len(table) == 6 and (table["metric"] == "acc").all() and (table["view"] == "last").all()
    expected = multipletests(table["p"].to_numpy(), method="holm")[1]
    np.testing.assert_allclose(table["p_adj"], expected)  # one family of 6, not two of 3
    words = table.set_index(["group", "loss"])["verdict"]
    assert words[("0.2", "ce_smooth")] == "better" and words[("0.4", "mae")] == "worse"
    assert words[("0.2", "focal")] in ("equivalent", "inconclusive")


def test_an_undeclared_sweep_compares_every_loss_with_the_tasks_baseline():
    table, _ = declared_verdicts(entries(summary(0.2, declared=False)))
    assert sorted(table["loss"]) == ["brier", "ce_smooth", "focal", "mae"]
    assert (table["baseline"] == "ce").all() and not table["declared"].any()


def test_a_question_bullet_names_every_verdict_with_its_evidence():
    table, _ = declared_verdicts(entries(summary(0.2), summary(0.4)))
    bullet = question_bullet("Label noise", "a shared lr of 0.001 at 20 epochs", table)
    assert bullet.startswith("**Label noise** (a shared lr of 0.001 at 20 epochs; declared vs "
                             "`ce` on acc at the last epoch, 6 comparisons, 6 seeds): ")
    assert "better: `ce_smooth` (0.2): +0.029" in bullet and "6/6 seeds" in bullet
    assert "P(improvement) 1.00 [1.00, 1.00]" in bullet and "(Holm)" in bullet
    assert "worse: `mae` (0.2)" in bullet
    assert "`focal` (0.2)" in bullet and "`focal` (0.4)" in bullet  # nothing left unsaid


def test_a_question_over_groups_judged_on_two_metrics_names_each_effects_metric():
    # all_losses and all_losses_multi_label answer one question: acc on one task, map on the other
    table, _ = declared_verdicts(entries(summary(0.2), summary(0.4)))
    table.loc[table["group"] == "0.4", "metric"] = "map"
    bullet = question_bullet("Losses at shared settings", "x", table)
    assert "vs `ce` on acc or map at the last epoch" in bullet
    assert "better: `ce_smooth` (0.2): acc +0.029" in bullet and "`mae` (0.4): map -0.0" in bullet


def test_inconclusive_verdicts_carry_the_designs_minimum_detectable_effect():
    table, _ = declared_verdicts(entries(summary(0.2, seeds=3)))
    table.loc[:, "verdict"] = "inconclusive"
    bullet = question_bullet("Label noise", "x", table)
    assert "inconclusive: `focal`, `ce_smooth`, `mae`; the design detects differences of " \
           in bullet and "(80% power)" in bullet


def test_stress_fisher_p_values_join_the_summarys_family():
    stress = [np.array([0.001, 0.02, 0.5])]
    table, (fisher,) = declared_verdicts(entries(summary(0.2)), others=stress)
    expected = multipletests(np.concatenate([table["p"], stress[0]]), method="holm")[1]
    np.testing.assert_allclose(np.concatenate([table["p_adj"], fisher]), expected)
    rows = pd.DataFrame({"setting": ["lr=0.1"] * 3, "loss": ["bce", "mae", "gce"],
                         "reference": "ce", "diverged": [9, 3, 0], "n": 10, "ref_diverged": 0,
                         "ref_n": 10, "div_diff": [0.9, 0.3, 0.0], "div_low": [0.5, 0.0, -0.2],
                         "div_high": [1.0, 0.6, 0.2], "summary_p_adj": fisher, "adjust": "holm"})
    [bullet] = stability_bullets("mnist", rows)
    assert "`bce` vs `ce` (lr=0.1): diverged 9/10 vs 0/10" in bullet and "`gce`" not in bullet


def test_verdict_seeds_hold_the_values_each_verdict_was_computed_from():
    mine = entries(summary(0.2))
    table, _ = declared_verdicts(mine)
    seeds = verdict_seeds(mine, table)
    assert list(seeds.columns) == SEED_COLUMNS and len(seeds) == 3 * 6
    for _, v in table.iterrows():
        part = seeds[seeds["loss"] == v["loss"]]
        assert (part["value"] - part["baseline_value"]).mean() == pytest.approx(v["difference"])
    assert list(seeds.loc[seeds["loss"] == "mae", "split_seed"]) == [100 + s for s in range(6)]
