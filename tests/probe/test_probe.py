"""The probe measures what float arithmetic predicts.

Predictions here are derived from torch.finfo facts and torch's documented constants, never
copied from the probe's output. A threshold is seen at the first grid point past it, so a
predicted |z| is matched within one grid step (plus the dtype's own rounding of z).
"""
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from lossbench.losses import LOSSES
from lossbench.probe import exact, explain, find_thresholds, main, run_probe
from lossbench.probe.grid import loss_and_grad
from lossbench.probe.probed import N_CLASSES, PROBED, criterion, logits, targets, training_labels

STEP = 0.5
ZMAX = 120.0
F32, F16 = torch.finfo(torch.float32), torch.finfo(torch.float16)


@pytest.fixture(scope="module")
def df():
    return run_probe(zmax=ZMAX, step=STEP)


@pytest.fixture(scope="module")
def thresholds(df):
    return find_thresholds(df)


def rows(df, loss, dtype):
    return df[(df.loss == loss) & (df["dtype"] == dtype)]


def at(df, loss, dtype, z):
    g = rows(df, loss, dtype)
    return g.iloc[int(np.argmin(np.abs(g.z.to_numpy() - z)))]


def threshold(thresholds, loss, dtype, side, kind):
    t = thresholds
    return t[(t.loss == loss) & (t["dtype"] == dtype) & (t.side == side)][kind].item()


def first_grid_point_past(z_pred):
    return math.floor(z_pred / STEP + 1e-9) * STEP + STEP


def smallest_subnormal(fi):
    return fi.tiny * fi.eps


# --- the reference itself -------------------------------------------------------------------

def test_closed_form_matches_logsumexp_where_no_cancellation():
    z = np.linspace(-30, 30, 61)
    x = np.zeros((z.size, N_CLASSES))
    x[:, 0] = z
    lse = np.logaddexp.reduce(x, axis=1)
    value, grad = exact("ce", z)
    np.testing.assert_allclose(value, lse - z, rtol=1e-12, atol=1e-12)  # lse - z cancels: abs only
    # softmax_t - 1 = -(sum of the non-target softmax entries), which does not cancel
    np.testing.assert_allclose(grad, -(N_CLASSES - 1) * np.exp(-lse), rtol=1e-12)
    value, grad = exact("bce_logits", z)
    np.testing.assert_allclose(value, np.log1p(np.exp(-z)), rtol=1e-12)
    np.testing.assert_allclose(grad, 1 / (1 + np.exp(-z)) - 1, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("loss", list(PROBED))
def test_exact_form_matches_float64_criterion(loss):
    """Checks both: the closed form in exact.py and the registry's criterion, where float64 holds
    (|z| <= 20). atol: float64 rounding of O(10) terms, for the gradient's and values' zeros."""
    z = np.linspace(-20, 20, 161)
    _, value, grad = loss_and_grad(loss, z, torch.float64)
    ref_value, ref_grad = exact(loss, z)
    np.testing.assert_allclose(value.numpy(), ref_value, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(grad.numpy(), ref_grad, rtol=1e-10, atol=1e-13)


def test_reference_gradient_survives_where_expm1_backward_cancels():
    """gce = (1 - p^q)/q: its exact gradient -p^q (1-p) at z = -60 (p^q ~ 1e-19, below float64's
    eps) is a normal number, not the 0 that torch's expm1 backward would give."""
    q = PROBED["gce"].params().q
    log_p = -np.logaddexp(0.0, math.log(N_CLASSES - 1) + 60.0)
    _, grad = exact("gce", np.array([-60.0]))
    assert grad[0] == pytest.approx(-np.exp(q * log_p) * -np.expm1(log_p), rel=1e-12)


def test_probe_covers_the_registry():
    assert set(LOSSES) | {"naive_nll"} == set(PROBED)


@pytest.mark.parametrize("loss", list(PROBED))
def test_balanced_knobs_are_one_in_the_probe(loss):
    """Class weights and pos_weight derived from the probe's labels are 1: it probes the loss,
    not a reweighting."""
    _, derived = criterion(loss, torch.float64)
    assert all(w == 1 for weights in derived.values() for w in weights)


@pytest.mark.parametrize("loss", list(LOSSES))
def test_per_row_losses_average_to_the_trained_loss(loss):
    """The probe reads one loss per row (reduction 'none'); their mean is what training sees."""
    spec = LOSSES[loss]
    z = torch.linspace(-8, 8, 7, dtype=torch.float64)
    x = logits(loss, z)
    x = x + torch.linspace(-1, 1, x.shape[1], dtype=torch.float64)  # non-target logits not all 0
    y = targets(loss, len(z), torch.float64)
    per_row, _ = criterion(loss, torch.float64)
    trained, _ = spec.build(spec.params(), training_labels(loss))
    rows = per_row(spec.activation(x), y)
    assert rows.numel() == len(z)
    assert rows.mean().item() == pytest.approx(trained.double()(spec.activation(x), y).item(), rel=1e-12)


# --- agreement where it should agree ---------------------------------------------------------

# Mixed tolerance: relative 1e-6 where the exact value is O(1) or larger, plus an absolute floor
# because near 0 these quantities only exist as differences from 1 (1 - p, log of a sum near 1).
# A number near 1 is known to eps/2 per rounding; sigmoid rounds once, and the softmax sum adds
# its K-1 small terms to the leading 1 one rounding each. Floors: 2x that worst case.
ATOL = {"bce_logits": F32.eps, "ce": N_CLASSES * F32.eps}


@pytest.mark.parametrize("loss", ["bce_logits", "ce"])
@pytest.mark.parametrize("column", ["value", "grad"])
def test_float32_agrees_with_reference(df, loss, column):
    g = rows(df, loss, "float32")
    got, ref = g[column].to_numpy(), g[f"exact_{column}"].to_numpy()
    assert np.all(np.isfinite(got))
    excess = np.abs(got - ref) - (1e-6 * np.abs(ref) + ATOL[loss])
    assert excess.max() <= 0, g.z.to_numpy()[np.argmax(excess)]


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16", "float16"])
def test_ce_is_log_softmax_plus_nll(df, dtype):
    ce, nll = rows(df, "ce", dtype), rows(df, "nll", dtype)
    np.testing.assert_array_equal(ce.value.to_numpy(), nll.value.to_numpy())
    np.testing.assert_array_equal(ce.grad.to_numpy(), nll.grad.to_numpy())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_bce_logits_exact_throughout(df, dtype):
    """Finite everywhere, gradient within one eps absolute (its relative error near 0 is rounding)."""
    g = rows(df, "bce_logits", dtype)
    assert g.value_finite.all() and g.grad_finite.all()
    assert np.abs(g.grad - g.exact_grad).max() < torch.finfo(getattr(torch, dtype)).eps


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_reference_taken_at_rounded_z(df, dtype):
    """On the wrong side bce_logits is z-ish; against unrounded z bfloat16 would look 0.3% off."""
    g = rows(df, "bce_logits", dtype)
    wrong = g[g.z < -20]
    assert wrong.rel_err_value.max() <= torch.finfo(getattr(torch, dtype)).eps


# --- the mission's measured facts ------------------------------------------------------------

def test_mission_facts_float32(df):
    bce = at(df, "bce", "float32", -40.0)
    # BCELoss's backward divides by max(p(1-p), 1e-12): the gradient is p(1-p)*1e12 ~ e^-40*1e12
    assert 2e-6 < -bce.grad < 8e-6
    assert -bce.grad == pytest.approx(math.exp(-40) * 1e12, rel=0.05)
    assert at(df, "bce_logits", "float32", -40.0).grad == pytest.approx(-1.0)
    far = rows(df, "bce", "float32").query("z <= -90")
    assert (far.value == 100).all() and (far.grad == 0).all()


def test_mission_facts_float16(df):
    assert at(df, "bce", "float16", -17.0).grad == -math.inf
    assert rows(df, "bce", "float16").query("z <= -20").grad.isna().all()
    confident = at(df, "bce", "float16", 100.0)
    assert confident.value == 0 and math.isnan(confident.grad)


# --- thresholds predicted from dtype facts ---------------------------------------------------

def test_float32_bce_thresholds(thresholds):
    t = lambda side, kind: threshold(thresholds, "bce", "float32", side, kind)  # noqa: E731
    # sigmoid = 1/(1+e^-z): e^-z overflows float32 before p could go subnormal, so p = 0
    # from ln(max); then loss = -clamp(log 0, -100) = 100 and the gradient is exactly 0.
    p_zero = math.log(F32.max)
    assert p_zero < math.log(2 / smallest_subnormal(F32))
    assert t("wrong", "grad_zero") == first_grid_point_past(p_zero)
    assert t("wrong", "saturates") == first_grid_point_past(p_zero)
    assert t("wrong", "saturated_value") == 100.0
    assert t("wrong", "max_loss") == 100.0
    # the 1e-12 guard starts distorting the gradient at p(1-p) = 1e-12, in any dtype holding it
    assert t("wrong", "grad_relerr_1pct") == first_grid_point_past(math.log(1e12))
    assert np.isnan(t("wrong", "grad_inf")) and np.isnan(t("wrong", "grad_nan"))
    # right side: p rounds to 1 once e^-z is below half an ulp of 1 (1 + e^-z or p itself rounded)
    assert math.log(2 / F32.eps) <= t("right", "grad_zero") <= math.log(4 / F32.eps) + STEP


def test_float64_bce_is_capped_too(thresholds):
    """The -100 clamp and the 1e-12 guard are not precision effects: float64 shows them."""
    t = lambda kind: threshold(thresholds, "bce", "float64", "wrong", kind)  # noqa: E731
    assert t("saturates") == 100.0 and t("saturated_value") == 100.0
    assert t("grad_relerr_1pct") == first_grid_point_past(math.log(1e12))


def test_float16_bce_thresholds(thresholds):
    t = lambda side, kind: threshold(thresholds, "bce", "float16", side, kind)  # noqa: E731
    assert torch.tensor(1e-12, dtype=torch.float16).item() == 0  # the guard vanishes in float16
    # dL/dp ~ -1/p overflows float16 when p < 1/max
    assert t("wrong", "grad_inf") == first_grid_point_past(math.log(F16.max))
    # p rounds to 0 below half the smallest subnormal: -1/0 * sigmoid'(=0) = NaN, loss jumps to 100
    p_zero = math.log(2 / smallest_subnormal(F16))
    assert t("wrong", "grad_nan") == first_grid_point_past(p_zero)
    assert t("wrong", "saturates") == first_grid_point_past(p_zero)
    assert t("wrong", "saturated_value") == 100.0
    # right side: p rounds to 1, p(1-p) = 0 and the guard is 0: 0/0
    assert math.log(2 / F16.eps) <= t("right", "grad_nan") <= math.log(4 / F16.eps) + STEP


@pytest.mark.parametrize("fi_dtype", ["float32", "float16"])
def test_naive_nll_thresholds(thresholds, fi_dtype):
    fi = torch.finfo(getattr(torch, fi_dtype))
    t = lambda side, kind: threshold(thresholds, "naive_nll", fi_dtype, side, kind)  # noqa: E731
    log_m = math.log(N_CLASSES - 1)  # p_target ~ e^-|z| / 9
    # torch.log's backward computes 1/p_target, which overflows at p < 1/max
    assert t("wrong", "grad_nan") == first_grid_point_past(math.log(fi.max) - log_m)
    # p_target rounds to 0: log(0) = -inf
    assert t("wrong", "value_nonfinite") == first_grid_point_past(
        math.log(2 / smallest_subnormal(fi)) - log_m)
    # right side: non-target p ~ e^-z rounds to 0, log's backward makes 0/0 for them
    assert t("right", "grad_nan") == first_grid_point_past(math.log(2 / smallest_subnormal(fi)))


@pytest.mark.parametrize("loss", ["ce", "nll"])
def test_log_softmax_losses_never_blow_up(df, thresholds, loss):
    g = df[df.loss == loss]
    assert g.grad_finite.all() and g.value_finite.all()  # every dtype, both sides
    t = thresholds[thresholds.loss == loss]
    assert t[["grad_inf", "grad_nan", "value_nonfinite"]].isna().all().all()
    assert t[t.side == "wrong"].grad_relerr_1pct.isna().all()


# --- the family beyond the four ---------------------------------------------------------------

def test_only_probability_losses_go_nonfinite(df):
    """bce and naive_nll take log of a formed probability; every other loss works from logits
    (log_softmax, logsigmoid, BCE-with-logits) and stays finite in every dtype."""
    broken = df[~(df.value_finite & df.grad_finite)].loss.unique()
    assert set(broken) == {"bce", "naive_nll"}


def test_mse_on_logits_never_breaks(thresholds):
    """No exp anywhere: the gradient 2k(z - M)/C is exact to rounding in every dtype."""
    t = thresholds[thresholds.loss == "mse"]
    kinds = ["grad_relerr_1pct", "grad_zero", "grad_nan", "value_relerr_1pct", "saturates"]
    assert t[kinds].isna().all().all()


@pytest.mark.parametrize("loss", ["mae", "gce"])
def test_a_wrong_logits_gradient_holds_while_it_is_a_normal_number(df, thresholds, loss):
    """1 - p_y from the logsumexp of the other classes (mae), p^q by exp (gce's derivative), not
    expm1's backward expm1(x) + 1, which was exactly 0 from (e^-|z|/9)^q < eps/4 on: in float32 the
    wrong side's gradient is within 1% of exact and non-zero wherever the exact one is a normal
    number, and only rounds to 0 once p itself is below half the smallest subnormal."""
    g = rows(df, loss, "float32")
    normal = g[(g.z < 0) & (g.exact_grad.abs() >= F32.tiny)]
    assert -normal.z.min() >= math.log(1 / F32.tiny) - math.log(N_CLASSES - 1) - STEP
    assert (normal.grad != 0).all() and (normal.rel_err_grad <= 0.01).all()
    z0 = threshold(thresholds, loss, "float32", "wrong", "grad_zero")
    assert np.isnan(z0) or z0 >= math.log(2 / smallest_subnormal(F32)) - math.log(N_CLASSES - 1)
    assert np.isnan(threshold(thresholds, loss, "float64", "wrong", "grad_relerr_1pct"))


@pytest.mark.parametrize("loss", ["sce", "nce_rce"])
def test_rce_gradient_holds_on_the_wrong_side_in_float16(thresholds, loss):
    """RCE = -A exp(log(1 - p_y)): its gradient A p (1 - p) no longer passes through expm1's
    backward, so in float16 the wrong side keeps the whole gradient within 1%."""
    assert np.isnan(threshold(thresholds, loss, "float16", "wrong", "grad_relerr_1pct"))


def test_mae_is_exact_until_one_minus_p_is_subnormal(thresholds):
    """Right side: 1 - p ~ 9e^-z is exp of an exact log, no longer the difference 1 - p that
    cancels from ln(1/(50 eps)) on: mae's loss and gradient hold to 1% until 9e^-z < tiny."""
    for kind in ("grad_relerr_1pct", "value_relerr_1pct"):
        z0 = threshold(thresholds, "mae", "float32", "right", kind)
        assert z0 >= math.log(1 / F32.tiny) + math.log(N_CLASSES - 1)
    assert np.isnan(threshold(thresholds, "mae", "float64", "right", "grad_relerr_1pct"))


def test_focal_float16_loss_underflows_as_a_cube(thresholds):
    """Right side: (1-p)^gamma (-log p) ~ (9e^-z)^(gamma+1) leaves float16's range long before
    p rounds to 1."""
    k = PROBED["focal"].params().gamma + 1
    z0 = threshold(thresholds, "focal", "float16", "right", "saturates")
    assert math.log(1 / F16.tiny) / k + math.log(9) <= z0
    assert z0 <= math.log(2 / smallest_subnormal(F16)) / k + math.log(9) + STEP
    assert z0 < threshold(thresholds, "ce", "float16", "right", "saturates")


def test_asl_logsigmoid_gradient_outlasts_bce_logits(thresholds):
    """asl's positive term differentiates logsigmoid (gradient sigmoid(-z), no cancellation):
    exact until e^-z is subnormal, where BCEWithLogitsLoss's sigmoid(z) - 1 cancels from
    ln(1/(50 eps))."""
    asl = threshold(thresholds, "asl", "float32", "right", "grad_relerr_1pct")
    assert math.log(1 / F32.tiny) <= asl <= math.log(2 / smallest_subnormal(F32))
    bce_logits = threshold(thresholds, "bce_logits", "float32", "right", "grad_relerr_1pct")
    assert math.log(1 / (50 * F32.eps)) <= bce_logits <= math.log(4 / F32.eps) + STEP < asl


# --- explanations -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def default_grid():
    df = run_probe()  # the CLI's grid: -120..120, step 0.1
    return df, find_thresholds(df)


def test_every_finding_on_the_default_grid_is_explained(default_grid):
    df, thresholds = default_grid
    lines = explain(thresholds, df)
    assert {line.split()[0] for line in lines} == set(PROBED)
    assert not [line for line in lines if "UNEXPLAINED" in line]


def test_every_finding_has_a_verified_cause(df, thresholds):
    lines = explain(thresholds, df)
    assert lines and not [line for line in lines if "UNEXPLAINED" in line]
    bce_zero = next(line for line in lines if line.startswith("bce float32 wrong side: gradient exactly 0"))
    assert "overflows" in bce_zero and "1e-12" in bce_zero


def test_explanation_refuses_a_threshold_no_cause_predicts(df, thresholds):
    fake = thresholds[(thresholds.loss == "bce") & (thresholds["dtype"] == "float32")
                      & (thresholds.side == "wrong")].copy()
    fake["grad_zero"] = 50.0
    line = next(line for line in explain(fake, df) if "gradient exactly 0" in line)
    assert "UNEXPLAINED" in line


# --- CLI --------------------------------------------------------------------------------------

def test_cli_writes_everything(tmp_path, capsys):
    out = tmp_path / "probe"
    assert main(["--out", str(out), "--step", "0.5", "--zmax", "30"]) == 0
    for name in ("probe.parquet", "probe.csv", "probe.png", "thresholds.csv", "thresholds.md"):
        assert (out / name).stat().st_size > 0, name
    table = pd.read_parquet(out / "probe.parquet")
    assert list(table.columns) == [
        "loss", "dtype", "z", "value", "grad", "exact_value", "exact_grad",
        "rel_err_value", "rel_err_grad", "value_finite", "grad_finite"]
    assert len(table) == len(PROBED) * 4 * 121
    printed = capsys.readouterr().out
    assert "grad=NaN" in printed and "bce_logits" in printed and "never" in printed


def test_probe_figure_is_legible_at_the_report_width(df, tmp_path, monkeypatch):
    """The report shows probe.png 1200 px wide (half its pixels): every text must stay >= 12 px
    there, the reference's old 5-column figure had 6 px tick labels."""
    from matplotlib.figure import Figure

    from lossbench.probe.figure import plot_probe

    saved = []
    original = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (saved.append(fig),
                                                                  original(fig, *a, **k))[1])
    path = plot_probe(df, tmp_path / "probe.png")
    [fig] = saved
    width, _ = Image.open(path).size
    assert width == 2400 and fig.get_figwidth() * 100 == 1200
    texts = [t for t in fig.findobj(lambda o: hasattr(o, "get_fontsize") and hasattr(o, "get_text"))
             if t.get_text() and t.get_visible()]
    assert any(t.get_text() == "ce" for t in texts)
    for text in texts:
        assert text.get_fontsize() * 100 / 72 >= 12, text.get_text()


@pytest.mark.parametrize("args, message", [
    (["--step", "-1"], "--step must be a finite number > 0"),
    (["--step", "abc"], "--step must be a number"),
    (["--step", "2", "--zmax", "1"], "must not exceed --zmax"),
    (["--zmax", "1e6"], "--zmax must be <="),
])
def test_cli_rejects_bad_grid(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code != 0
    assert message in capsys.readouterr().err


def test_cli_bad_out_is_a_message_not_a_traceback(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    done = subprocess.run([sys.executable, "-m", "lossbench.probe", "--out", str(a_file)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "--out" in done.stderr and "Traceback" not in done.stderr
