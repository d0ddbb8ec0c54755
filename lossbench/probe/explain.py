"""Say which operation in torch's forward or backward causes each threshold the probe found.

Each finding is matched against candidate causes. A cause predicts an interval of |z| from the
dtype's floating-point facts (eps, tiny, max, smallest subnormal); the first cause whose interval
contains the measured threshold (give or take one grid step and the dtype's rounding of z) is the
explanation. A finding no cause predicts is reported as unexplained rather than forced to fit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .grid import DTYPES, N_CLASSES
from .thresholds import FIRST

BCE_EPS = 1e-12  # EPSILON in aten Loss.cpp: BCELoss backward is (p - y) / max(p(1-p), EPSILON)
LOG_CLAMP = 100.0  # BCELoss clamps log(p) and log(1-p) at -100 (documented)
M_MULTI = N_CLASSES - 1  # non-target logits sharing the probability mass; 1 for the binary case


@dataclass(frozen=True)
class Facts:
    eps: float
    tiny: float
    max: float
    denorm: float  # smallest subnormal
    opmath_max: float  # max of the type torch computes elementwise math in (float32 for 16-bit types)
    holds_bce_eps: bool  # False in float16: 1e-12 rounds to 0, the guard vanishes

    @classmethod
    def of(cls, name: str) -> "Facts":
        dtype = DTYPES[name]
        fi = torch.finfo(dtype)
        opmath = torch.float32 if fi.bits == 16 else dtype
        return cls(eps=fi.eps, tiny=fi.tiny, max=fi.max, denorm=fi.tiny * fi.eps,
                   opmath_max=torch.finfo(opmath).max,
                   holds_bce_eps=torch.tensor(BCE_EPS, dtype=dtype).item() > 0)


# cause -> (interval of |z| it predicts given facts and m, or None if it cannot occur; text)
CAUSES = {
    "eps_clamp": (
        lambda f, m: (math.log(1 / BCE_EPS),) * 2 if f.holds_bce_eps else None,
        "p(1-p) drops below the 1e-12 that BCELoss's backward divides by, "
        "dL/dp = (p-y)/max(p(1-p), 1e-12), from |z| = ln(1e12) = {lo:.2f}"),
    "exp_overflow": (
        lambda f, m: (math.log(f.opmath_max),) * 2,
        "e^-z overflows in sigmoid = 1/(1+e^-z) (|z| > ln(max) = {lo:.2f} of the compute type), "
        "so p = 1/inf = 0 exactly, before p could reach the subnormal range"),
    "p_underflow": (
        lambda f, m: (math.log(2 / f.denorm) - math.log(m),) * 2,
        "the probability ~{pterm} falls below half the smallest subnormal ({denorm:.3g}) "
        "and rounds to 0 (|z| > ln(2/denorm){lnm} = {lo:.2f})"),
    "subnormal": (
        lambda f, m: (math.log(1 / f.tiny) - math.log(m), math.log(2 / f.denorm) - math.log(m)),
        "a quantity ~{pterm} is subnormal (below tiny = {tiny:.3g}) for |z| in "
        "[{lo:.2f}, {hi:.2f}] and keeps only a few significant bits"),
    "inv_overflow": (
        lambda f, m: (math.log(f.max) - math.log(m),) * 2,
        "the backward divides by p ~ {pterm}, and 1/p exceeds max = {max:.5g} "
        "(|z| > ln(max){lnm} = {lo:.2f})"),
    "round_to_one": (
        lambda f, m: (math.log(2 / f.eps), math.log(4 * m / f.eps)),
        "the denominator 1 + {mterm} (or p itself) rounds to exactly 1, its small part being below "
        "half an ulp of 1 (eps = {eps:.3g}): from ln(2/eps) = {lo:.2f} if each e^-z meets the 1 "
        "on its own, up to ln(4*{m}/eps) = {hi:.2f} if only the result p is rounded"),
    "cancellation": (
        lambda f, m: (math.log(1 / (50 * f.eps)), math.log(4 * m / f.eps)),
        "1 - p ~ {mterm} only exists as a difference from 1, known to eps/2 per rounding "
        "(eps = {eps:.3g}), over 1% of it from |z| >= ln(1/(50 eps)) = {lo:.2f} on"),
    "log_clamp": (
        lambda f, m: (LOG_CLAMP,) * 2,
        "BCELoss clamps log(p) at -100, which binds from |z| = 100 while p is still representable"),
    "log_clamp_1pct": (
        lambda f, m: (LOG_CLAMP / (1 - 0.01),) * 2,
        "BCELoss clamps log(p) at -100, so the loss is 100 instead of |z|: 1% short from "
        "|z| = 100/0.99 = {lo:.2f}"),
}

_ROUND_RIGHT = "loss and gradient exactly 0 (exact ~ -{mterm}: harmless)"
_CANCEL_RIGHT = "the small loss and gradient are off by that rounding error (absolute, at most {meps}: harmless)"
_SUBNORMAL_LOG = "log of a subnormal p inherits its coarse rounding"

# (family, side, kind) -> candidate (cause, m, consequence), tried in order
MECHANISMS = {
    ("bce", "wrong", "grad_relerr_1pct"): [
        ("eps_clamp", 1, "so the gradient is (p-1)*p(1-p)*1e12 instead of p-1 = -1: it decays like "
                         "1e12*e^-|z| (4e-6 at z=-40) although the logit is confidently wrong")],
    ("bce", "right", "grad_relerr_1pct"): [
        ("eps_clamp", 1, "so the tiny exact gradient p-1 is scaled by p(1-p)*1e12 < 1 (harmless)"),
        ("cancellation", 1, _CANCEL_RIGHT)],
    ("bce", "wrong", "grad_zero"): [
        (cause, 1, "BCELoss's backward gives a finite dL/dp = -1/max(0, 1e-12) = -1e12 and sigmoid's "
                   "backward multiplies it by p(1-p) = 0: gradient exactly 0 where the exact one is -1")
        for cause in ("exp_overflow", "p_underflow")],
    ("bce", "right", "grad_zero"): [("round_to_one", 1, "so p - y = 0: " + _ROUND_RIGHT)],
    ("bce", "wrong", "grad_inf"): [
        ("inv_overflow", 1, "dL/dp = (p-1)/max(p(1-p), 1e-12) ~ -1/p overflows to -inf (the 1e-12 "
                            "guard is 0 in this dtype), and -inf times sigmoid' = p(1-p) > 0 stays -inf")],
    ("bce", "wrong", "grad_nan"): [
        (cause, 1, "then p(1-p) = 0 and the 1e-12 guard is 0 in this dtype: dL/dp = -1/0 = -inf, "
                   "times sigmoid' = 0 gives NaN")
        for cause in ("exp_overflow", "p_underflow")],
    ("bce", "right", "grad_nan"): [
        ("round_to_one", 1, "then p - y = 0 and p(1-p) = 0 with the 1e-12 guard rounded to 0: "
                            "dL/dp = 0/0 = NaN, a correct confident logit gets a NaN gradient")],
    ("bce", "wrong", "value_relerr_1pct"): [
        ("log_clamp_1pct", 1, "the cap is the documented clamp, not rounding"),
        *[(cause, 1, "log(0) is clamped at -100: loss 100 instead of |z|")
          for cause in ("exp_overflow", "p_underflow")],
        ("subnormal", 1, _SUBNORMAL_LOG)],
    ("bce", "right", "value_relerr_1pct"): [("cancellation", 1, "loss = -log(p) keeps only the rounding of p")],
    ("bce", "wrong", "saturates"): [
        ("log_clamp", 1, "the loss stays at 100 however wrong the logit"),
        ("exp_overflow", 1, "log(0) = -inf is clamped at -100: the loss is pinned at 100"),
        ("p_underflow", 1, "log(0) = -inf is clamped at -100: the loss jumps from ~|z| up to 100")],
    ("bce", "right", "saturates"): [("round_to_one", 1, "loss = -log(1) = 0")],
    ("bce_logits", "right", "grad_relerr_1pct"): [
        ("cancellation", 1, "the gradient sigmoid(z) - y is that difference, off by at most eps/2 absolute "
                            "(harmless; the loss, a log1p of e^-z, stays accurate)")],
    ("bce_logits", "right", "grad_zero"): [
        ("round_to_one", 1, "so sigmoid(z) - y = 0 exactly (exact ~ -e^-z: harmless)")],
    ("bce_logits", "right", "value_relerr_1pct"): [
        ("subnormal", 1, "the loss log1p(e^-z) ~ e^-z is that number (relative accuracy held until then)")],
    ("bce_logits", "right", "saturates"): [
        ("subnormal", 1, "the loss ~ e^-z underflows to 0 in that range (where exactly depends on how "
                         "the kernel's exp rounds subnormals)")],
    ("softmax", "right", "grad_relerr_1pct"): [
        ("cancellation", M_MULTI, "log_softmax = -log(1 + sum e^-z) and softmax - 1: " + _CANCEL_RIGHT)],
    ("softmax", "right", "grad_zero"): [
        ("round_to_one", M_MULTI, "log_softmax(target) = -log(1) = 0: " + _ROUND_RIGHT)],
    ("softmax", "right", "value_relerr_1pct"): [
        ("cancellation", M_MULTI, "the loss is the log of that rounded sum")],
    ("softmax", "right", "saturates"): [("round_to_one", M_MULTI, "the loss is exactly 0")],
    ("naive_nll", "wrong", "grad_nan"): [
        ("inv_overflow", M_MULTI, "torch.log's backward gives -1/p = -inf and softmax's backward "
                                  "p*(g - sum g*p) forms -inf - (-inf) = NaN for the target logit "
                                  "(+inf for the others); log_softmax never divides by p")],
    ("naive_nll", "wrong", "value_nonfinite"): [
        ("p_underflow", M_MULTI, "torch.log(0) = -inf: loss +inf (ce/nll never form p and stay exact)")],
    ("naive_nll", "wrong", "saturates"): [("p_underflow", M_MULTI, "the loss is stuck at +inf")],
    ("naive_nll", "wrong", "value_relerr_1pct"): [("subnormal", M_MULTI, _SUBNORMAL_LOG)],
    ("naive_nll", "right", "grad_nan"): [
        ("p_underflow", 1, "these are the non-target probabilities e^-z/(1+9e^-z): their log is -inf, "
                           "log's backward forms 0/0 = NaN for them (nll passes them a zero gradient) and "
                           "softmax's backward sum g*p spreads it to every logit: a correct confident "
                           "logit gets a NaN gradient")],
    ("naive_nll", "right", "grad_zero"): [
        ("round_to_one", M_MULTI, "softmax's p_target = 1, log(1) = 0: " + _ROUND_RIGHT)],
    ("naive_nll", "right", "grad_relerr_1pct"): [("cancellation", M_MULTI, _CANCEL_RIGHT)],
    ("naive_nll", "right", "value_relerr_1pct"): [("cancellation", M_MULTI, "log(p) keeps only the rounding of p")],
    ("naive_nll", "right", "saturates"): [("round_to_one", M_MULTI, "the loss is exactly 0")],
}

# A relative-error threshold that coincides with one of these is explained by it.
SAME_POINT = {
    "grad_relerr_1pct": ("grad_zero", "grad_inf", "grad_nan"),
    "value_relerr_1pct": ("value_nonfinite", "saturates"),
}
KINDS = [*FIRST, "saturates"]
LABELS = {
    "grad_relerr_1pct": "gradient >1% off", "grad_zero": "gradient exactly 0",
    "grad_inf": "gradient inf", "grad_nan": "gradient NaN", "value_relerr_1pct": "loss >1% off",
    "value_nonfinite": "loss inf/NaN", "saturates": "loss saturates",
}


def family(loss: str) -> str:
    return "softmax" if loss in ("ce", "nll") else loss


def _tolerance(z: float, facts: Facts, step: float) -> float:
    """A threshold is seen at the first grid point past it, and z itself is rounded to the dtype."""
    ulp = 2.0 ** math.floor(math.log2(z)) * facts.eps
    return step + ulp + 1e-9


def _words(m: int, lo: float, hi: float, facts: Facts) -> dict:
    return dict(vars(facts), m=m, lo=lo, hi=hi,
                pterm="e^-|z|" if m == 1 else f"e^-|z|/{m}",
                mterm="e^-z" if m == 1 else f"{m}e^-z",
                lnm="" if m == 1 else f" - ln {m}",
                meps="eps/2" if m == 1 else f"{m}*eps/2")


def _cause_text(kind: str, row: pd.Series, facts: Facts, step: float) -> str:
    z = row[kind]
    if kind in SAME_POINT:
        for other in SAME_POINT[kind]:
            if row[other] == z:
                return f"same point as '{LABELS[other]}'"
    candidates = MECHANISMS.get((family(row["loss"]), row["side"], kind), [])
    for cause, m, consequence in candidates:
        predict, text = CAUSES[cause]
        interval = predict(facts, m)
        tol = _tolerance(z, facts, step)
        if interval is not None and interval[0] - tol <= z <= interval[1] + tol:
            words = _words(m, *interval, facts)
            return text.format(**words) + "; " + consequence.format(**words)
    tried = ", ".join(c for c, _, _ in candidates) or "none"
    return f"UNEXPLAINED: no known cause predicts this |z| (candidates tried: {tried})"


def _measured(df: pd.DataFrame, row: pd.Series, z: float) -> str:
    sign = -1.0 if row["side"] == "wrong" else 1.0
    g = df[(df.loss == row["loss"]) & (df["dtype"] == row["dtype"])]
    point = g.iloc[int(np.argmin(np.abs(g.z.to_numpy() - sign * z)))]
    return (f"[z={point.z:+.1f}: loss {point.value:.4g} (exact {point.exact_value:.4g}), "
            f"grad {point.grad:.4g} (exact {point.exact_grad:.4g})]")


def dtype_notes(dtypes) -> list[str]:
    """The floating-point facts every prediction is derived from."""
    notes = []
    for name in dtypes:
        f = Facts.of(name)
        notes.append(
            f"{name}: eps={f.eps:.3g} tiny={f.tiny:.3g} max={f.max:.5g} smallest subnormal={f.denorm:.3g}; "
            f"ln(max)={math.log(f.max):.2f}, ln(2/eps)={math.log(2 / f.eps):.2f}, "
            f"ln(2/denorm)={math.log(2 / f.denorm):.2f}; 1e-12 representable: {f.holds_bce_eps}")
    return notes


def explain(thresholds: pd.DataFrame, df: pd.DataFrame) -> list[str]:
    """One line per finding (threshold reached), with its cause and the measured numbers there."""
    step = float(np.min(np.diff(np.unique(df.z.to_numpy()))))
    lines = []
    for _, row in thresholds.iterrows():
        facts = Facts.of(row["dtype"])
        where = f"{row['loss']} {row['dtype']} {row['side']} side"
        found = [k for k in KINDS if not np.isnan(row[k])]
        if not found:
            lines.append(f"{where}: no threshold within the grid; max |grad error| "
                         f"{row['max_abs_grad_err']:.2g}")
        for kind in found:
            lines.append(f"{where}: {LABELS[kind]} from |z|={row[kind]:.1f} "
                         f"{_measured(df, row, row[kind])}: {_cause_text(kind, row, facts, step)}")
    return lines
