"""The Stability section's verdict table: every loss against the baseline per stress setting.

A hand-built summary frame with known answers tests the rule (`compare`, `verdict`,
`verdict_table`); the real stability smoke sweep (8 runs, 1 epoch on the MNIST sample) tests the
table against the collected summary table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from lossbench.report import generate
from lossbench.report.stability import heat_cells, with_settings
from lossbench.report.stability_verdicts import compare, ended_runs, verdict, verdict_table

from conftest import run_sweep
from report_pages import report_markdown

P, S = "cfg.trainer.precision", "cfg.model.logit_scale"


# ---- the rule on a hand-built sweep ----

SEEDS = 6
ACC = {  # (precision, logit scale) -> loss -> final acc per seed (None = diverged)
    ("32", 1.0): {"bce": [0.900, 0.910, 0.905, 0.902, 0.908, 0.903],
                  "bce_logits": [0.901, 0.909, 0.906, 0.903, 0.907, 0.902]},  # alike
    ("32", 100.0): {"bce": [0.600, 0.620, 0.610, 0.605, 0.615, 0.612],
                    "bce_logits": [0.900, 0.905, 0.902, 0.903, 0.904, 0.901]},  # acc only
    ("16", 100.0): {"bce": [None] * SEEDS,
                    "bce_logits": [0.890, 0.895, 0.893, 0.891, 0.894, 0.892]},  # diverged
    ("16", 1.0): {"bce": [0.900, 0.905, 0.910, 0.850, 0.960, 0.930],
                  "bce_logits": [0.950, 0.900, 0.960, 0.880, 0.905, 0.940]},  # noise
}
CE = [0.950, 0.951, 0.952, 0.953, 0.954, 0.955]  # fine everywhere


def hand_built(losses=("ce", "bce", "bce_logits")) -> pd.DataFrame:
    rows = []
    for (precision, scale), accs in ACC.items():
        for loss in losses:
            for seed, acc in enumerate(accs.get(loss, CE)):
                diverged = acc is None
                rows.append({
                    "run": f"{loss}-{precision}-{scale:g}-{seed}", "loss": loss, "seed": seed,
                    "dataset": "mnist", "data_source": "sample", "task": "single_label",
                    "status": "diverged" if diverged else "completed",
                    "first_nonfinite_step": 1 if diverged else None,
                    "first_nonfinite": "gradient" if diverged else None,
                    "test_acc": np.nan if diverged else acc, P: precision, S: scale,
                    "cfg.optim.lr": 0.001})
    rows.append({"run": "bce-failed", "loss": "bce", "seed": 7, "dataset": "mnist",
                 "data_source": "sample", "task": "single_label", "status": "failed",
                 "test_acc": np.nan, P: "32", S: 1.0, "cfg.optim.lr": 0.001})
    return with_settings(pd.DataFrame(rows))[0]


def row(table: pd.DataFrame, setting: str, loss: str, reference: str) -> pd.Series:
    hit = table[(table["setting"] == setting) & (table["loss"] == loss) & (table["reference"] == reference)]
    assert len(hit) == 1, (setting, loss, reference)
    return hit.iloc[0]


def test_verdict_table_on_a_hand_built_sweep():
    table = verdict_table(hand_built(), "ce", "acc", {"bce": "bce_logits"})
    # every loss against the baseline in every setting, and the declared pair bce vs bce_logits
    assert set(zip(table["loss"], table["reference"])) == {("bce", "ce"), ("bce_logits", "ce"),
                                                           ("bce", "bce_logits")}
    assert len(table) == 3 * len(ACC)
    diverged = row(table, "precision=16, logit_scale=100", "bce", "bce_logits")
    assert (diverged["diverged"], diverged["n"], diverged["ref_diverged"]) == (SEEDS, SEEDS, 0)
    assert diverged["fisher_p"] == pytest.approx(stats.fisher_exact([[6, 0], [0, 6]]).pvalue)
    assert diverged["verdict"] == "diverges more" and np.isnan(diverged["mean"])
    # the failed run is no training outcome: 6 bce runs at float32 / scale 1, not 7
    assert row(table, "precision=32, logit_scale=1", "bce", "ce")["n"] == SEEDS
    # accuracy only: consistent over 6 seeds
    acc = row(table, "precision=32, logit_scale=100", "bce", "bce_logits")
    assert acc["diff"] == pytest.approx(np.mean(ACC[("32", 100.0)]["bce"]) - np.mean(ACC[("32", 100.0)]["bce_logits"]))
    assert acc["p_t"] == pytest.approx(stats.ttest_rel(ACC[("32", 100.0)]["bce"], ACC[("32", 100.0)]["bce_logits"]).pvalue)
    assert acc["verdict"] == "lower acc (worse)"
    assert row(table, "precision=32, logit_scale=100", "bce_logits", "ce")["verdict"] == "lower acc (worse)"
    assert row(table, "precision=16, logit_scale=1", "bce", "bce_logits")["verdict"] == "no difference shown"
    # Holm within the table, each kind of test one family; no Fisher test where nothing diverged
    tested = table["p_t"].notna()
    assert table.loc[tested, "p_adj"].to_numpy() == pytest.approx(
        multipletests(table.loc[tested, "p_t"], method="holm")[1])
    assert table["fisher_p"].notna().sum() == 2  # bce vs ce and vs bce_logits at float16 / 100
    # row order does not depend on the input's
    shuffled = verdict_table(hand_built().sample(frac=1, random_state=1), "ce", "acc", {"bce": "bce_logits"})
    pd.testing.assert_frame_equal(shuffled, table)


NOISE = "cfg.dataset.label_noise"


def noisy_sweep() -> pd.DataFrame:
    """ce and mae at label noise 0 and 0.4 (the noise kind follows the rate), 4 seeds each, the
    stress columns the same everywhere: mae is no better clean and far better under noise."""
    acc = {(0.0, "ce"): [0.97, 0.98, 0.975, 0.972], (0.0, "mae"): [0.971, 0.978, 0.976, 0.97],
           (0.4, "ce"): [0.70, 0.72, 0.71, 0.73], (0.4, "mae"): [0.95, 0.96, 0.955, 0.97]}
    return pd.DataFrame([
        {"run": f"{loss}-{noise}-{seed}", "loss": loss, "seed": seed, "dataset": "mnist",
         "data_source": "sample", "task": "single_label", "status": "completed", "test_acc": value,
         P: "32", S: 1.0, "cfg.optim.lr": 0.01, NOISE: noise,
         "cfg.dataset.noise_kind": "symmetric" if noise else "none", "cfg.dataset.split_seed": seed}
        for (noise, loss), values in acc.items() for seed, value in enumerate(values)])


def test_runs_that_differ_in_label_noise_are_never_pooled_in_the_stability_section():
    runs, varying = with_settings(noisy_sweep())
    # the noise rate names the setting; the noise kind it implies and the split seed (the
    # pairing key) do not
    assert varying == [P, "cfg.model.logit_scale", "cfg.optim.lr", NOISE]
    assert set(runs["setting"]) == {"precision=32, logit_scale=1, lr=0.01, dataset.label_noise=0",
                                    "precision=32, logit_scale=1, lr=0.01, dataset.label_noise=0.4"}
    table = verdict_table(runs, "ce", "acc")
    assert len(table) == 2 and (table["n"] == 4).all()
    noisy = row(table, "precision=32, logit_scale=1, lr=0.01, dataset.label_noise=0.4", "mae", "ce")
    assert noisy["diff"] == pytest.approx(np.mean([0.95, 0.96, 0.955, 0.97]) - np.mean([0.70, 0.72, 0.71, 0.73]))
    assert noisy["verdict"] == "higher acc (better)"
    assert row(table, "precision=32, logit_scale=1, lr=0.01, dataset.label_noise=0", "mae", "ce")["verdict"] == \
        "no difference shown"
    cells = heat_cells(runs, varying, "acc")
    assert len(cells) == 4 and (cells["n"] == 4).all() and cells["sd"].max() < 0.02


def frame(loss: str, values: list) -> pd.DataFrame:
    return pd.DataFrame({"loss": loss, "seed": range(len(values)), "setting": "s",
                         "diverged": [v is None for v in values],
                         "value": [np.nan if v is None else v for v in values]})


def test_compare_counts_divergence_and_pairs_completed_seeds():
    out = compare(frame("bce", [None, 0.5, 0.7]), frame("ce", [0.6, 0.6, 0.6]))
    assert (out["diverged"], out["n"], out["ref_diverged"], out["ref_n"]) == (1, 3, 0, 3)
    assert out["n_pairs"] == 2 and out["diff"] == pytest.approx(0.0)  # seeds 1 and 2 only
    assert out["mean"] == pytest.approx(0.6) and out["sd"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert out["fisher_p"] == pytest.approx(1.0)
    assert np.isnan(compare(frame("a", [0.5, 0.6]), frame("b", [0.4, 0.5]))["fisher_p"])  # none diverged
    rerun = pd.concat([frame("bce", [None, 0.5]), frame("bce", [None, 0.5])])  # two sweeps, same seeds
    counted = compare(rerun, frame("ce", [0.6, 0.6]))
    assert (counted["diverged"], counted["n"]) == (1, 2)  # per seed, not per run


@pytest.mark.parametrize("numbers, metric, expected", [
    ({"fisher_p_adj": 0.01, "diverged": 0, "n": 5, "ref_diverged": 5, "ref_n": 5}, "acc", "diverges less"),
    ({"fisher_p_adj": np.nan, "diverged": 3, "n": 3, "ref_diverged": 3, "ref_n": 3}, "acc", "both diverged"),
    ({"p_adj": 0.001, "diff": 0.2}, "nll", "higher nll (worse)"),
    ({"p_adj": 0.001, "diff": 0.2}, "map", "higher map (better)"),
    ({"p_adj": 0.2, "diff": 0.2}, "acc", "no difference shown"),
    ({"p_adj": np.nan, "diff": 0.0, "identical": True}, "acc", "identical"),
])
def test_verdict_rule(numbers, metric, expected):
    base = {"fisher_p_adj": np.nan, "diverged": 0, "n": 3, "ref_diverged": 0, "ref_n": 3,
            "p_adj": np.nan, "diff": np.nan, "identical": False}
    assert verdict(pd.Series({**base, **numbers}), metric) == expected


def test_ended_runs_reads_divergence_from_status_not_error_text():
    runs = hand_built()
    runs.loc[runs["status"] == "diverged", "error"] = "no step number in here"
    ended = ended_runs(runs, "acc")
    assert ended["diverged"].sum() == SEEDS and len(ended) == len(runs) - 1


# ---- the real stability smoke sweep ----

@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("stability_smoke")
    done = run_sweep("stability_smoke", tmp / "sweep")
    assert done.returncode == 0, done.stderr[-3000:]  # diverged runs do not fail the sweep
    generate([tmp / "sweep"], out=tmp / "report", say=lambda _: None)
    return tmp


@pytest.mark.slow
def test_smoke_sweep_verdicts_match_the_summary(smoke):
    summary = pd.read_parquet(smoke / "sweep" / "summary.parquet")
    assert len(summary) == 8 and set(summary["status"]) <= {"completed", "diverged"}
    summary["setting"] = [f"precision={p}, logit_scale={s:g}" for p, s in zip(summary[P].astype(str), summary[S])]
    status = {(row["setting"], row["loss"]): row["status"] for _, row in summary.iterrows()}
    # float16 at logit scale 100: bce's sigmoid saturates and its gradient goes NaN, bce_logits trains
    assert (status[("precision=16, logit_scale=100", "bce")],
            status[("precision=16, logit_scale=100", "bce_logits")]) == ("diverged", "completed")
    diverged = summary[summary["status"] == "diverged"]
    assert diverged["first_nonfinite_step"].notna().all() and set(diverged["first_nonfinite"]) <= {"loss", "gradient"}

    md = report_markdown(smoke / "report")
    stability = md.split("\n## Stability\n")[1].split("\n## ")[0]
    for name in ("grad-norm", "acc-heatmap"):
        png = f"figures/stability-mnist-sample-single_label-{name}.png"
        assert f"(../{png})" in stability and (smoke / "report" / png).read_bytes().startswith(b"\x89PNG")
    verdicts = pd.read_csv(smoke / "report" / "tables" / "stability-mnist-sample-single_label-verdicts.csv")
    # bce_logits is the baseline here (no ce ran): one row per setting, counts from the summary
    assert list(verdicts["loss"]) == ["bce"] * 4 and set(verdicts["reference"]) == {"bce_logits"}
    for _, r in verdicts.iterrows():
        assert r["diverged"] == int(status[(r["setting"], "bce")] == "diverged")
        assert r["ref_diverged"] == int(status[(r["setting"], "bce_logits")] == "diverged")
    assert "nan" not in stability.lower()


@pytest.mark.slow
def test_stress_dirs_feed_only_the_stability_section(smoke, smoke_sweep, tmp_path):
    out = tmp_path / "report"
    generate([smoke_sweep.dir], out=out, stress=[smoke / "sweep"], say=lambda _: None)
    pages = {page.stem: page.read_text() for page in (out / "appendix").glob("*.md")}
    md = (out / "report.md").read_text()
    compared = "\n".join(text for name, text in pages.items() if name not in ("stability", "excluded"))
    # the comparison part holds only the smoke sweep's one group, not one per stress setting
    assert compared.count("### Paired comparison vs") == 1 and "logit_scale" not in compared
    assert "Stress sweeps, in the Stability section only: `sweep` (8 runs" in compared
    assert "varied: `trainer.precision`, `model.logit_scale`" in pages["stability"]
    summary = md.split("\n## Summary")[1].split("\n## ")[0]
    # one run per setting, one setting where a run diverged: 1/1 vs 0/1 cannot differ
    assert ("**Stability, mnist / sample (single-label)** (1 divergence comparison): no loss "
            "diverges at a different rate.") in summary
    assert "diverged" in pages["excluded"]  # the stress grid's diverged bce run is still listed


def test_a_zero_gradient_stays_in_the_grad_norm_curves():
    """A saturated BCELoss has a gradient norm of exactly 0: the run's curve must not vanish."""
    from lossbench.report.stability import grad_curves

    runs = pd.DataFrame({"run": ["a", "b"], "loss": ["bce", "ce"], "setting": ["lr=0.1"] * 2})
    steps = pd.DataFrame({"run": ["a", "a", "b", "b"], "step": [10, 20, 10, 20],
                          "grad_norm": [0.0, 0.0, 1.5, np.nan]})
    curves = grad_curves(runs, steps).set_index(["loss", "step"])
    assert curves.loc[("bce", 10), "median"] == 0.0 and curves.loc[("bce", 20), "median"] == 0.0
    assert ("ce", 20) not in curves.index  # a non-finite norm is left out


def test_a_heatmap_of_one_loss_in_one_panel_keeps_its_layout():
    """One loss at one lr with a long setting label: the figure leaves its cell room, where a
    figure sized by its cells alone made matplotlib drop the layout (a warning on every report)."""
    import warnings

    from lossbench.report import figures

    runs, varying = with_settings(noisy_sweep()[lambda d: d["loss"] == "ce"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert figures.heatmap(heat_cells(runs, varying, "acc"), "acc").startswith(b"\x89PNG")


def test_a_key_tuned_per_loss_is_one_setting_not_one_per_loss():
    """The comparison runs of a tuned study train each loss at its own chosen lr: the lr reads
    'tuned' (as in the report's groups), so the losses still meet in one setting."""
    runs = noisy_sweep()[lambda d: d[NOISE] == 0.0].copy()
    runs["cfg.optim.lr"] = runs["loss"].map({"ce": 0.01, "mae": 0.1})
    runs["tuned_keys"] = "optim.lr"
    runs, varying = with_settings(runs)
    assert set(runs["setting"]) == {"precision=32, logit_scale=1, lr=tuned"}
    assert len(verdict_table(runs, "ce", "acc")) == 1
