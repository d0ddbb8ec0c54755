"""The Stability section's generated Findings paragraph: where bce and bce_logits part ways.

A hand-built summary/steps frame with known answers tests the rule; the real stability smoke sweep
(8 runs, 1 epoch on the MNIST sample) tests the paragraph against the collected summary table.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lossbench.report import generate
from lossbench.report.stability_findings import boxes, fp, stability_findings

from conftest import run_sweep

P, S = "cfg.trainer.precision", "cfg.model.logit_scale"


def covered(text: str) -> set[tuple[str, str]]:
    """'precision 16 and 32, logit scale 1; precision 16, logit scale 100' -> its settings."""
    out = set()
    for box in text.split("; "):
        m = re.fullmatch(r"precision (.+), logit scale (.+)", box.strip())
        assert m, box
        values = [re.split(r", | and ", part) for part in m.groups()]
        out |= {(p, s) for p in values[0] for s in values[1]}
    return out


def sentence(text: str, start: str) -> str:
    found = [s for s in re.split(r"(?<=\.) ", text) if s.startswith(start)]
    assert len(found) == 1, (start, text)
    return found[0]


# ---- the rule on a hand-built sweep ----

ACC = {  # (precision, logit scale) -> loss -> final acc per seed (None = diverged)
    ("32", 1.0): {"bce": [0.900, 0.910, 0.905], "bce_logits": [0.901, 0.909, 0.906]},  # same
    ("32", 100.0): {"bce": [0.600, 0.620, 0.610], "bce_logits": [0.900, 0.905, 0.902]},  # acc only
    ("16", 100.0): {"bce": [None, None, None], "bce_logits": [0.890, 0.895, 0.893]},  # diverged
    ("16", 1.0): {"bce": [0.900, 0.905, 0.910], "bce_logits": [0.950, 0.900, 0.960]},  # gap, p>=0.05
}


def hand_built(losses=("ce", "bce", "bce_logits")):
    rows, steps = [], []
    for (precision, scale), accs in ACC.items():
        for loss in losses:
            values = accs.get(loss, [0.95, 0.951, 0.952])  # ce: fine everywhere
            for seed, acc in enumerate(values):
                run = f"{loss}-{precision}-{scale:g}-{seed}"
                diverged = acc is None
                rows.append({
                    "run": run, "loss": loss, "seed": seed, "dataset": "mnist", "task": "single_label",
                    "status": "diverged" if diverged else "completed",
                    "error": ("non-finite gradient at step 1 (0 non-finite losses, 1 non-finite "
                              "gradients so far)") if diverged else None,
                    "test_acc": np.nan if diverged else acc, "skipped_steps": 0,
                    P: precision, S: scale, "cfg.optim.lr": 0.001})
                for step in ((2,) if diverged else (10, 20, 30)):
                    steps.append({"run": run, "step": step, "grad_norm": np.nan if diverged else 1.0,
                                  "max_abs_logit": np.nan if diverged else 50.0,
                                  "saturated_frac": 0.0 if diverged else (0.3 if loss == "bce" else 0.1),
                                  "nonfinite_loss": 0, "nonfinite_grad": int(diverged),
                                  "skipped_steps": 0})
    rows.append({"run": "bce-failed", "loss": "bce", "seed": 7, "dataset": "mnist", "task": "single_label",
                 "status": "failed", "error": "oom", "test_acc": np.nan, "skipped_steps": 0,
                 P: "32", S: 1.0, "cfg.optim.lr": 0.001})
    return pd.DataFrame(rows), pd.DataFrame(steps)


def test_findings_on_a_hand_built_sweep():
    summary, steps = hand_built()
    text = " ".join(stability_findings(summary, steps, "acc"))
    assert "a combination of precision and logit scale" in text  # lr is constant: not named
    assert "They part ways in 2 of 4 settings where both ran." in text
    # divergence: bce 3/3 at float16 / scale 100, with the trainer's exact first step
    div = sentence(text, "bce diverged in a larger share of runs than bce_logits at ")
    assert covered(div.split(" at ", 1)[1].split(" (")[0]) == {("16", "100")}
    assert "bce diverged in 3/3 runs with 3 non-finite gradients, first at step 1" in div
    assert "bce_logits diverged in 0/3 runs, acc 0.893 ± 0.003 over 3 seeds" in div
    assert "bce unmeasured" in div  # the diverged runs logged no finite logits
    # accuracy only: 0.61 vs 0.90, consistent over the 3 seeds
    acc = sentence(text, "bce_logits reached a better mean final acc than bce at ")
    assert covered(acc.split(" at ", 1)[1].split(" (")[0]) == {("32", "100")}
    p = stats.ttest_rel(ACC[("32", 100.0)]["bce_logits"], ACC[("32", 100.0)]["bce"]).pvalue
    assert p < 0.05 and f"paired t-test p = {fp(p)}" in acc
    assert "mean saturated fraction bce 0.300, bce_logits 0.100" in acc
    # a gap >= 0.02 the paired test does not back is reported, not counted
    p = stats.ttest_rel(ACC[("16", 1.0)]["bce_logits"], ACC[("16", 1.0)]["bce"]).pvalue
    gap = sentence(text, "Not counted as parting ways")
    assert p >= 0.05 and f"3 paired seeds, paired t-test p = {fp(p)}" in gap and "precision 16, logit scale 1 (" in gap
    # they do not part ways where the accuracies agree; the failed run is left out, not counted
    same = sentence(text, "They do not part ways at ")
    assert covered(same.removeprefix("They do not part ways at ").split(":")[0]) == {("32", "1")}
    diff = abs(np.mean(ACC[("32", 1.0)]["bce_logits"]) - np.mean(ACC[("32", 1.0)]["bce"]))
    assert "no run of either diverged" in same and f"< 0.02 (at most {diff:.4f})" in same
    worst = sentence(text, "Worst setting per loss")
    assert "bce at precision 16, logit scale 100 (diverged in 3/3 runs)" in worst
    assert "bce_logits at precision 16, logit scale 100 (none diverged, acc 0.893" in worst
    assert "ce none: all 4 of its settings tie (acc 0.951 in each setting)" in worst
    assert "Softmax losses: ce never diverged and logged no non-finite value (12 runs over 4 settings)." in text
    assert "Left out (no training outcome, see Excluded runs): bce 1 failed." in text
    # deterministic: row order does not matter
    shuffled = summary.sample(frac=1, random_state=1)
    assert " ".join(stability_findings(shuffled, steps.sample(frac=1, random_state=2), "acc")) == text


def test_no_bce_logits_runs_says_nothing_about_parting_ways():
    summary, steps = hand_built(losses=("ce", "bce"))
    text = " ".join(stability_findings(summary, steps, "acc"))
    assert "part ways" not in text and "not compared" in text
    assert "Worst setting per loss" in text and "bce at precision 16, logit scale 100" in text
    no_steps = " ".join(stability_findings(summary, None, "acc"))  # no steps.parquet: no crash
    assert "part ways" not in no_steps and "saturated" not in no_steps


def test_boxes_cover_exactly_the_settings():
    keys = [("16", "1"), ("32", "1"), ("32", "100"), ("bf16", "10")]
    got = boxes(keys)
    assert sorted(k for b in got for k in [(p, s) for p in b[0] for s in b[1]]) == sorted(keys)
    assert boxes([("32", "1"), ("16", "1")]) == [(("16", "32"), ("1",))]


# ---- the real stability smoke sweep ----

@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("stability_smoke")
    done = run_sweep("stability_smoke", tmp / "sweep")
    assert done.returncode == 0, done.stderr[-3000:]  # diverged runs do not fail the sweep
    generate([tmp / "sweep"], out=tmp / "report", say=lambda _: None)
    return tmp


@pytest.mark.slow
def test_smoke_sweep_findings_match_the_summary(smoke):
    summary = pd.read_parquet(smoke / "sweep" / "summary.parquet")
    steps = pd.read_parquet(smoke / "sweep" / "steps.parquet")
    assert len(summary) == 8 and set(summary["status"]) <= {"completed", "diverged"}
    summary["setting"] = list(zip(summary[P].astype(str), summary[S].map("{:g}".format)))
    status = {(row["setting"], row["loss"]): row["status"] for _, row in summary.iterrows()}
    # float16 at logit scale 100: bce's sigmoid saturates and its gradient goes NaN, bce_logits trains
    assert (status[(("16", "100"), "bce")], status[(("16", "100"), "bce_logits")]) == (
        "diverged", "completed")

    md = (smoke / "report" / "report.md").read_text()
    stability = md.split("\n## Stability\n")[1].split("\n## ")[0]
    assert "Non-finite events per loss and stress setting" in stability
    for name in ("grad-norm", "acc-heatmap"):
        png = f"figures/stability-mnist-sample-single_label-{name}.png"
        assert f"({png})" in stability and (smoke / "report" / png).read_bytes().startswith(b"\x89PNG")

    text = next(line for line in stability.splitlines() if line.startswith("**Findings**"))
    # the rule by hand: with one seed only divergence or non-finite events can part them
    bad = steps[(steps["nonfinite_loss"] > 0) | (steps["nonfinite_grad"] > 0)]["run"]
    summary["trouble"] = (summary["status"] == "diverged") | summary["run"].isin(bad)
    apart = {s for s, part in summary.groupby("setting")
             if part.set_index("loss")["trouble"].nunique() > 1}
    assert ("16", "100") in apart
    assert f"They part ways in {len(apart)} of 4 settings where both ran." in text
    div = sentence(text, "bce diverged in a larger share of runs than bce_logits at ")
    named = covered(div.split(" at ", 1)[1].split(" (")[0])
    assert ("16", "100") in named and named <= apart
    assert "bce_logits diverged in 0/1 run, acc" in div
    if "They do not part ways at " in text:
        same = sentence(text, "They do not part ways at ")
        assert covered(same.removeprefix("They do not part ways at ").split(":")[0]).isdisjoint(apart)
    assert "nan" not in text.lower()


@pytest.mark.slow
def test_stress_dirs_feed_only_the_stability_section(smoke, smoke_sweep, tmp_path):
    md = generate([smoke_sweep.dir], out=tmp_path / "report", stress=[smoke / "sweep"],
                  say=lambda _: None).read_text()
    compared = md.split("## Stability")[0]
    # the comparison part holds only the smoke sweep's one group, not one per stress setting
    assert compared.count("### Paired comparison vs") == 1 and "logit_scale" not in compared
    assert "Stress sweeps, in the Stability section only: `sweep` (8 runs" in compared
    stability = md.split("## Stability")[1].split("\n## ")[0]
    assert "varied: trainer.precision, model.logit_scale" in stability
    excluded = md.split("## Excluded runs")[1]
    assert "diverged" in excluded  # the stress grid's diverged bce run is still listed
