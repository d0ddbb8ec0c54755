"""The report's Summary: at most 7 verdicts, each with its difference, CI and adjusted p, read from
the paired tables' columns."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from lossbench.report.paired import verdict
from lossbench.report.summary_bullets import MAX_BULLETS, lead, paired_candidates, select

BULLET = re.compile(r"(acc|map) ([+-]\d\.\d{4}|0\.0000) \[[+-]?\d\.\d{4}, [+-]?\d\.\d{4}\], p [=<] [\d.]+ \((Holm|BH)\)")


def contract_frame(losses, diffs, p_adj, view="selected", metric="acc") -> pd.DataFrame:
    rows = []
    for loss, diff, p in zip(losses, diffs, p_adj):
        for v in ("last", view):
            rows.append({"loss": loss, "baseline": "ce", "metric": metric, "view": v, "n_seeds": 10,
                         "diff": diff if v == view else -diff, "diff_low": diff - 0.01,
                         "diff_high": diff + 0.01, "ci_covers": "test set", "d_z": 1.0, "p_t": p / 3,
                         "p_wilcoxon": p, "p_mcnemar": p, "p_adj": p, "adjust": "holm",
                         "identical": False, "verdict": verdict(metric, diff if v == view else -diff,
                                                                 diff - 0.01, diff + 0.01, p)})
    rows.append({**rows[0], "loss": "nll", "diff": 0.0, "diff_low": 0.0, "diff_high": 0.0,
                 "p_adj": np.nan, "identical": True, "verdict": "identical"})
    return pd.DataFrame(rows)


def test_bullets_are_at_most_seven_and_carry_diff_ci_and_adjusted_p():
    losses = [f"loss{i}" for i in range(12)]
    candidates = []
    for group in range(9):
        frame = contract_frame(losses, [0.001 * (i + 1) for i in range(12)],
                               [0.001 if i % 2 else 0.5 for i in range(12)])
        candidates += paired_candidates(group, group, f"group {group}", "a shared lr of 0.001 at 10 epochs",
                                        frame, "acc")
    bullets = select(candidates)
    assert len(bullets) == MAX_BULLETS
    for bullet in bullets:
        assert BULLET.search(bullet), bullet
        assert "a shared lr of 0.001 at 10 epochs" in bullet and "(Holm)" in bullet
        assert "validation-selected epoch" in bullet  # the selected view is preferred over last
    # the first group's bullet is its largest significant effect: loss11 (+0.012, p_adj 0.001)
    assert "`loss11` vs `ce`: better, acc +0.0120 [+0.0020, +0.0220], p = 0.0010 (Holm)" in bullets[0]
    assert not any("`nll`" in b for b in bullets)  # identical pairs are no verdict


def test_a_group_without_significant_effects_says_so_with_its_numbers():
    frame = contract_frame(["bce"], [-0.02], [0.2], metric="map")
    [bullet] = select(paired_candidates(0, 0, "multilabel", "tuned per loss", frame, "map"))
    assert "`bce` vs `ce`: no difference shown, map -0.0200 [-0.0300, -0.0100], p = 0.2000 (Holm)" in bullet
    assert "(tuned per loss)" in bullet


def test_a_question_leads_with_its_largest_gain_over_the_baseline():
    """`mae` is the largest effect but a loss; the bullet names the largest significant gain."""
    frame = contract_frame(["mae", "ce_smooth", "brier"], [-0.04, 0.015, 0.02], [0.001, 0.001, 0.3])
    best = lead(paired_candidates(0, 0, "shared", "x", frame, "acc"))
    assert "`ce_smooth` vs `ce`: better, acc +0.0150" in best.text
    worse_only = contract_frame(["mae", "gce"], [-0.04, -0.02], [0.001, 0.001])
    best = lead(paired_candidates(0, 0, "shared", "x", worse_only, "acc"))
    assert "`mae` vs `ce`: worse, acc -0.0400" in best.text
    lower = contract_frame(["a", "b"], [-0.03, 0.05], [0.001, 0.001], metric="hamming")
    best = lead(paired_candidates(0, 0, "shared", "x", lower, "hamming"))
    assert "`a` vs `ce`: better, hamming -0.0300" in best.text  # a lower hamming is the gain


def test_each_question_gets_a_bullet_before_any_gets_a_second():
    strong = contract_frame(["a", "b", "c"], [0.05, 0.04, 0.03], [0.001, 0.001, 0.001])
    null = contract_frame(["d"], [0.02], [0.6])
    candidates = (paired_candidates(0, 0, "shared", "x", strong, "acc")
                  + paired_candidates(1, 1, "noise", "x", null, "acc"))
    bullets = select(candidates)
    assert [b.split("`")[1] for b in bullets] == ["a", "b", "c", "d"]  # page order
    assert "no difference shown" in bullets[-1]
    many = candidates + paired_candidates(0, 2, "shared 2", "x", contract_frame(
        [f"e{i}" for i in range(8)], [0.015] * 8, [0.001] * 8), "acc")
    chosen = select(many)
    assert len(chosen) == MAX_BULLETS and any("`d`" in b for b in chosen)  # noise kept its one
