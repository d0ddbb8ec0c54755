"""Say which operation in torch's forward or backward causes each threshold the probe found.

Each finding is matched against candidate causes. A cause predicts an interval of |z| from the
dtype's floating-point facts (eps, tiny, max, smallest subnormal); the first cause whose interval
contains the measured threshold (give or take one grid step and the dtype's rounding of z) is the
explanation. A finding no cause predicts is reported as unexplained rather than forced to fit.
One check needs no cause: a saturation over which the exact loss itself moves by at most one
ulp of the pinned value is the dtype's resolution, and is said to be so.

Mechanisms are declared by each loss's module (`LossSpec.mechanisms`; families of losses that
run the same operations at the probed point share theirs, lossbench.losses._probe): a loss added
to the registry without them has its findings reported as unexplained, which the tests refuse.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from lossbench.losses._probe import M_MULTI

from .grid import DTYPES
from .probed import PROBED
from .thresholds import FIRST

BCE_EPS = 1e-12  # EPSILON in aten Loss.cpp: BCELoss backward is (p - y) / max(p(1-p), EPSILON)
LOG_CLAMP = 100.0  # BCELoss clamps log(p) and log(1-p) at -100 (documented)


@dataclass(frozen=True)
class Facts:
    eps: float
    tiny: float
    max: float
    denorm: float  # smallest subnormal
    opmath_max: float  # max of the type torch computes elementwise math in (float32 for 16-bit types)
    opmath_eps: float  # eps of that type: log_softmax's backward rounds to it, not to the dtype's
    holds_bce_eps: bool  # False in float16: 1e-12 rounds to 0, the guard vanishes

    @classmethod
    def of(cls, name: str) -> "Facts":
        dtype = DTYPES[name]
        fi = torch.finfo(dtype)
        opmath = torch.float32 if fi.bits == 16 else dtype
        return cls(eps=fi.eps, tiny=fi.tiny, max=fi.max, denorm=fi.tiny * fi.eps,
                   opmath_max=torch.finfo(opmath).max, opmath_eps=torch.finfo(opmath).eps,
                   holds_bce_eps=torch.tensor(BCE_EPS, dtype=dtype).item() > 0)


def _at(log_level: float, m: float, k: float) -> float:
    """|z| at which (e^-|z|/m)^k falls to e^log_level (logs: float64's denorm/2 is 0)."""
    return -log_level / k - math.log(m)


def _solve(c: float, k: float) -> float:
    """The |z| > 1 at which c |z|^k e^-|z| = 1 (fixed point of z = ln(c z^k))."""
    z = max(math.log(c), 1.0)
    for _ in range(50):
        z = math.log(c * z ** k)
    return z


# cause -> (interval of |z| it predicts given facts, m and k, or None if it cannot occur; text)
CAUSES = {
    "eps_clamp": (
        lambda f, m, k: (math.log(1 / BCE_EPS),) * 2 if f.holds_bce_eps else None,
        "p(1-p) drops below the 1e-12 that BCELoss's backward divides by, "
        "dL/dp = (p-y)/max(p(1-p), 1e-12), from |z| = ln(1e12) = {lo:.2f}"),
    "exp_overflow": (
        lambda f, m, k: (math.log(f.opmath_max),) * 2,
        "e^-z overflows in sigmoid = 1/(1+e^-z) (|z| > ln(max) = {lo:.2f} of the compute type), "
        "so p = 1/inf = 0 exactly, before p could reach the subnormal range"),
    "p_underflow": (
        lambda f, m, k: (math.log(2 / f.denorm) - math.log(m),) * 2,
        "the probability ~{pterm} falls below half the smallest subnormal ({denorm:.3g}) "
        "and rounds to 0 (|z| > ln(2/denorm){lnm} = {lo:.2f})"),
    "subnormal": (
        lambda f, m, k: (math.log(1 / f.tiny) - math.log(m), math.log(2 / f.denorm) - math.log(m)),
        "a quantity ~{pterm} is subnormal (below tiny = {tiny:.3g}) for |z| in "
        "[{lo:.2f}, {hi:.2f}] and keeps only a few significant bits"),
    "inv_overflow": (
        lambda f, m, k: (math.log(f.max) - math.log(m),) * 2,
        "the backward divides by p ~ {pterm}, and 1/p exceeds max = {max:.5g} "
        "(|z| > ln(max){lnm} = {lo:.2f})"),
    "round_to_one": (
        lambda f, m, k: (math.log(2 / f.eps), math.log(4 * m / f.eps)),
        "the denominator 1 + {mterm} (or p itself) rounds to exactly 1, its small part being below "
        "half an ulp of 1 (eps = {eps:.3g}): from ln(2/eps) = {lo:.2f} if each e^-z meets the 1 "
        "on its own, up to ln(4*{m}/eps) = {hi:.2f} if only the result p is rounded"),
    "cancellation": (
        lambda f, m, k: (math.log(1 / (50 * k * f.eps)), math.log(4 * m / f.eps)),
        "1 - p ~ {mterm} only exists as a difference from 1, known to eps/2 per rounding "
        "(eps = {eps:.3g}), over 1% of it{kpow} from |z| >= ln(1/(50{kmul} eps)) = {lo:.2f} on"),
    # The causes below speak of a small quantity q = (e^-|z|/m)^k (qterm) and where it crosses a
    # level T: |z| = ln(1/T)/k - ln m.
    "off_one": (
        lambda f, m, k: (_at(math.log(f.eps / 2), m, k), _at(math.log(f.eps / 4), m, k)),
        "q ~ {qterm} drops below half an ulp of 1 (between eps/4 and eps/2, eps = {eps:.3g}), so "
        "1 - q rounds to exactly 1 for |z| in [{lo:.2f}, {hi:.2f}]"),
    "log_resolution": (
        lambda f, m, k: (math.log(1 / (4 * f.eps)) - math.log(m), math.log(4 / f.eps) - math.log(m)),
        "log(1 - p) ~ -{pterm} is a logsumexp of O(1) log-probabilities, each known to about eps "
        "(= {eps:.3g}) absolute: once p is within a few eps of 0 (from eps/4 to 4 eps, |z| in "
        "[{lo:.2f}, {hi:.2f}]) it is lost in that rounding and 1 - p = exp(log(1 - p)) is exactly 1, "
        "off by ~eps relative (harmless)"),
    # The active term's weight a on log p_y and the passive term's per non-target class
    # coefficient c (= m |z|^k a) both enter log_softmax's backward, g_y - p_y sum_j g_j, computed
    # in the opmath type.
    "absorbed": (
        lambda f, m, k: (_solve(2 * m / f.opmath_eps, k), _solve(4 * M_MULTI * m / f.opmath_eps, k)),
        "log_softmax's backward sums the upstream gradients in its compute type (float32 for 16-bit "
        "dtypes, eps = {opmath_eps:.3g}): the passive term's gradient per non-target class, "
        "{ratio}e^-|z| times the active term's weight, is below half an ulp of that weight from "
        "|z| = {lo:.2f} (each term alone) to {hi:.2f} (all {M} together) and is absorbed; with p_y "
        "rounded to 1 the target's gradient is then exactly 0 (exact ~ -e^-z: harmless)"),
    "active_error": (
        lambda f, m, k: (_solve(M_MULTI * m / (400 * f.eps), k), _solve(M_MULTI * m / (50 * f.eps), k)),
        "the active term's gradient comes out of log_softmax's backward off by eps/2 to 4 eps "
        "(eps = {eps:.3g}) of its weight, while the exact gradient is the passive term's "
        "{M} x {ratio}e^-|z| times that weight: over 1% of it for |z| in [{lo:.2f}, {hi:.2f}]"),
    "power_underflow": (
        lambda f, m, k: (_at(math.log(f.tiny), m, k), _at(math.log(f.denorm) - math.log(2), m, k)),
        "q ~ {qterm} goes subnormal (below tiny = {tiny:.3g}) from |z| = {lo:.2f} and rounds to 0 "
        "below half the smallest subnormal ({denorm:.3g}) at |z| = {hi:.2f}"),
    "short_mantissa": (
        lambda f, m, k: (0.0, math.inf) if 3 * f.eps / 2 > 0.01 else None,
        "the dtype keeps {bits} significant bits: each rounding is off by up to eps/2 = "
        "{half_eps:.2%}, and three roundings in a row already exceed 1% at any z"),
    "near_root": (
        lambda f, m, k: (max(0.0, m - 100 * f.eps / k), m + 100 * f.eps / k),
        "the exact gradient crosses 0 at |z| = {m:.2f} with slope {k:.3g}; it is a difference of O(1) "
        "terms known to ~eps = {eps:.3g}, which is over 1% of it within 100 eps / slope of the "
        "root: |z| in [{lo:.2f}, {hi:.2f}]"),
    "log_clamp": (
        lambda f, m, k: (LOG_CLAMP,) * 2,
        "BCELoss clamps log(p) at -100, which binds from |z| = 100 while p is still representable"),
    "log_clamp_1pct": (
        lambda f, m, k: (LOG_CLAMP / (1 - 0.01),) * 2,
        "BCELoss clamps log(p) at -100, so the loss is 100 instead of |z|: 1% short from "
        "|z| = 100/0.99 = {lo:.2f}"),
}

class Mechanism(NamedTuple):
    """A cause that may produce a finding, with the m and k of its small quantity."""

    cause: str
    m: float
    consequence: str
    k: float = 1.0


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


def _tolerance(z: float, facts: Facts, step: float) -> float:
    """A threshold is seen at the first grid point past it, and z itself is rounded to the dtype."""
    ulp = 2.0 ** math.floor(math.log2(z)) * facts.eps
    return step + ulp + 1e-9


def _words(m: float, k: float, lo: float, hi: float, facts: Facts) -> dict:
    c = m ** -k
    return dict(vars(facts), m=m, k=k, lo=lo, hi=hi,
                pterm="e^-|z|" if m == 1 else f"e^-|z|/{m:g}",
                mterm="e^-z" if m == 1 else f"{m:g}e^-z",
                lnm="" if m == 1 else f" - ln {m:g}",
                meps="eps/2" if m == 1 else f"{m:g}*eps/2",
                qterm=("" if c == 1 else f"{c:.3g} ") + ("e^-|z|" if k == 1 else f"e^-{k:g}|z|"),
                kpow="" if k == 1 else f" (with the error {k:g}-fold)",
                kmul="" if k == 1 else f"*{k:g}",
                bits=round(-math.log2(facts.eps)) + 1, half_eps=facts.eps / 2,
                fifty_eps=50 * facts.eps, M=M_MULTI,
                ratio=f"{m:.3g}" + ("" if k == 0 else "|z|" if k == 1 else f"|z|^{k:g}") + " ")


def _ulp(value: float, facts: Facts) -> float:
    if value == 0:
        return facts.denorm
    return max(2.0 ** math.floor(math.log2(abs(value))) * facts.eps, facts.denorm)


def _unresolved(row: pd.Series, side: pd.DataFrame, facts: Facts) -> str | None:
    """A saturation where the exact loss itself moves by at most one ulp of the pinned value:
    the dtype cannot show the change (the value may sit either side of a rounding boundary)."""
    value = row["saturated_value"]
    if not np.isfinite(value):
        return None
    tail = side[side.z.abs() >= row["saturates"]].exact_value.to_numpy()
    moves, ulp = float(np.ptp(tail)), _ulp(value, facts)
    if moves > ulp:
        return None
    return (f"the exact loss moves by only {moves:.2g} over this tail, within one ulp ({ulp:.2g}) of "
            f"{value:g} in this dtype: the value is pinned by the dtype's resolution (harmless)")


def _cause_text(kind: str, row: pd.Series, side: pd.DataFrame, facts: Facts, step: float) -> str:
    z = row[kind]
    if kind in SAME_POINT:
        for other in SAME_POINT[kind]:
            if row[other] == z:
                return f"same point as '{LABELS[other]}'"
    candidates = [Mechanism(*entry) for entry in
                  PROBED[row["loss"]].mechanisms.get((row["side"], kind), [])]
    for cause, m, consequence, k in candidates:
        predict, text = CAUSES[cause]
        interval = predict(facts, m, k)
        tol = _tolerance(z, facts, step)
        if interval is not None and interval[0] - tol <= z <= interval[1] + tol:
            words = _words(m, k, *interval, facts)
            return text.format(**words) + "; " + consequence.format(**words)
    if kind == "saturates" and (text := _unresolved(row, side, facts)):
        return text
    tried = ", ".join(c.cause for c in candidates) or "none"
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
        sign = -1.0 if row["side"] == "wrong" else 1.0
        side = df[(df.loss == row["loss"]) & (df["dtype"] == row["dtype"]) & (np.sign(df.z) == sign)]
        for kind in found:
            lines.append(f"{where}: {LABELS[kind]} from |z|={row[kind]:.1f} "
                         f"{_measured(df, row, row[kind])}: "
                         f"{_cause_text(kind, row, side, facts, step)}")
    return lines
