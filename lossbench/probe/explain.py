"""Say which operation in torch's forward or backward causes each threshold the probe found.

Each finding is matched against candidate causes. A cause predicts an interval of |z| from the
dtype's floating-point facts (eps, tiny, max, smallest subnormal); the first cause whose interval
contains the measured threshold (give or take one grid step and the dtype's rounding of z) is the
explanation. A finding no cause predicts is reported as unexplained rather than forced to fit.
One check needs no cause: a saturation over which the exact loss itself moves by at most one
ulp of the pinned value is the dtype's resolution, and is said to be so.

Mechanisms are listed per loss, or per family of losses that run the same operations at the
probed point (FAMILY): a loss added to the registry without them has its findings reported as
unexplained, which the tests refuse.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from .grid import DTYPES
from .probed import N_CLASSES, PROBED
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

_ROUND_RIGHT = "loss and gradient exactly 0 (exact ~ -{mterm}: harmless)"
_CANCEL_RIGHT = "the small loss and gradient are off by that rounding error (absolute, at most {meps}: harmless)"
_SUBNORMAL_LOG = "log of a subnormal p inherits its coarse rounding"

def _m(c: float, k: float) -> float:
    """The m of q = (e^-|z|/m)^k for q = c e^-k|z|."""
    return c ** (-1 / k)


_GAMMA = PROBED["focal"].params().gamma  # focal: the loss ~ (9e^-z)^(gamma+1) on the right side
_SMOOTH = PROBED["ce_smooth"].params().smoothing
_SMOOTH_T = 1 - _SMOOTH + _SMOOTH / N_CLASSES  # the target's share of the smoothed one-hot
_SIGMOID_FOCAL = PROBED["focal_sigmoid"].params()
_SF_K = _SIGMOID_FOCAL.gamma + 1  # its loss ~ alpha e^-(gamma+1)z on the right side
_Q = PROBED["gce"].params().q
_SCE = PROBED["sce"].params()
_NCE = PROBED["nce_rce"].params()
# The passive term c (1 - p_y) of each active-passive loss, next to the weight a of its active
# term's log p_y: (c, c/a per |z|^k, k). NCE's weight is alpha / |sum_k log p_k| ~ alpha / (9|z|).
_PASSIVE = {
    "poly1": (PROBED["poly1"].params().epsilon, PROBED["poly1"].params().epsilon, 0),
    "sce": (_SCE.beta * abs(_SCE.log_zero), _SCE.beta * abs(_SCE.log_zero) / _SCE.alpha, 0),
    "nce_rce": (_NCE.beta * abs(_NCE.log_zero), _NCE.beta * abs(_NCE.log_zero) * M_MULTI / _NCE.alpha, 1),
}
_ROUNDS = "log_softmax, logsumexp, exp and the sums each round"

# The family beyond the four. lossbench.criteria takes log(1 - p_y) as the logsumexp of the
# non-target log-probabilities, so 1 - p_y is exact on both sides; log p_y is log_softmax's, so
# the losses with a -log p_y term share ce's right side. Active-passive losses add a passive term
# c (1 - p_y) to an active one in log p_y; gce is a function of log p_y alone.
_FAMILY_MECHANISMS = {
    ("gce", "right", "grad_relerr_1pct"): [
        ("cancellation", M_MULTI, "log p_y = -log(1 + 9e^-z) from log_softmax: " + _CANCEL_RIGHT)],
    ("gce", "right", "value_relerr_1pct"): [
        ("cancellation", M_MULTI, "the loss is built from that rounded log p_y")],
    ("gce", "right", "grad_zero"): [
        ("round_to_one", M_MULTI, "log p_y = 0 and 1 - p_y^q = -expm1(0) = 0: " + _ROUND_RIGHT)],
    ("gce", "right", "saturates"): [("round_to_one", M_MULTI, "the loss is exactly 0")],
    ("gce", "wrong", "grad_relerr_1pct"): [
        ("power_underflow", M_MULTI, "the gradient -p^q (1-p), p^q = exp(q log p) taken directly "
                                     "(not as expm1(q log p) + 1), is proportional to it", _Q),
        ("short_mantissa", 1, _ROUNDS)],
    ("gce", "wrong", "grad_zero"): [
        ("power_underflow", M_MULTI, "p^q is 0, and with it the gradient", _Q)],
    ("gce", "wrong", "saturates"): [("off_one", M_MULTI, "the loss (1 - p^q)/q is 1/q exactly", _Q)],
    ("mae", "wrong", "grad_relerr_1pct"): [
        ("subnormal", M_MULTI, "p = exp(log p) in log_softmax's backward is that coarse, and the "
                               "gradient -2p(1-p) is proportional to it"),
        ("subnormal", M_MULTI / 2, "the gradient -2p(1-p) ~ 2e^-|z|/9 (formed in float32 for "
                                   "16-bit dtypes, then rounded) is that number"),
        ("short_mantissa", 1, _ROUNDS)],
    ("mae", "wrong", "grad_zero"): [
        ("p_underflow", M_MULTI, "p = exp(log p) in log_softmax's backward is 0, and with it the "
                                 "gradient -2p(1-p)"),
        ("p_underflow", M_MULTI / 2, "the gradient -2p(1-p) ~ 2e^-|z|/9, formed in float32 for "
                                     "16-bit dtypes, rounds to 0 in the dtype")],
    ("mae", "wrong", "value_relerr_1pct"): [("short_mantissa", 1, _ROUNDS)],
    ("mae", "wrong", "saturates"): [("log_resolution", M_MULTI, "the loss 2(1-p) is 2 exactly")],
    ("mae", "right", "grad_relerr_1pct"): [
        ("subnormal", 1 / M_MULTI, "1 - p = exp(log(1 - p)) ~ 9e^-z is that number, and the "
                                   "gradient -2p(1-p) is proportional to it"),
        ("short_mantissa", 1, _ROUNDS)],
    ("mae", "right", "value_relerr_1pct"): [
        ("subnormal", 1 / M_MULTI, "the loss 2(1-p) is proportional to it"),
        ("short_mantissa", 1, _ROUNDS)],
    ("mae", "right", "grad_zero"): [
        ("p_underflow", 1 / 2, "logsumexp's backward hands each non-target log-probability "
                               "2(1-p)/9 ~ 2e^-z, which is 0, and the target's gradient is 0 (harmless)")],
    ("mae", "right", "saturates"): [
        ("p_underflow", 1 / M_MULTI, "1 - p = exp(log(1 - p)) ~ 9e^-z is 0: the loss is 0 (harmless)")],
    **{("active_passive", "right", kind): [
        ("cancellation", M_MULTI, "the active term's log p_y = -log(1 + 9e^-z) comes from "
                                  "log_softmax, while the passive c(1 - p_y) = c exp(log(1 - p_y)) "
                                  "is exact: " + _CANCEL_RIGHT),
        ("subnormal", 1 / M_MULTI, "1 - p_y = exp(log(1 - p_y)) ~ 9e^-z carries the passive term, "
                                   "all that is left of the loss and its gradient"),
        ("short_mantissa", 1, _ROUNDS)]
       for kind in ("grad_relerr_1pct", "value_relerr_1pct")},
    ("active_passive", "right", "saturates"): [
        ("p_underflow", 1 / M_MULTI, "1 - p_y ~ 9e^-z is 0 and -log p_y was before: the loss is 0 "
                                     "(harmless)")],
    **{("active_passive", "wrong", kind): [("short_mantissa", 1, _ROUNDS)]
       for kind in ("grad_relerr_1pct", "value_relerr_1pct")},
    **{(loss, "right", "grad_zero"): [
        ("absorbed", ratio, f"the passive term is {c:g}(1 - p_y)", k),
        ("p_underflow", 1 / M_MULTI, "1 - p_y = exp(log(1 - p_y)) ~ 9e^-z is 0, and the active "
                                     "term's gradient had rounded to 0 before: 0 (harmless)"),
        ("subnormal", 1 / c, f"logsumexp's backward hands each non-target log-probability the "
                             f"passive term's gradient {c:g}e^-z in the dtype, where it rounds to 0; "
                             f"the active term's part has cancelled: 0 (harmless)")]
       for loss, (c, ratio, k) in _PASSIVE.items()},
    ("nce_rce", "right", "grad_relerr_1pct"): [
        ("active_error", _PASSIVE["nce_rce"][1], "NCE's weight alpha / |sum_k log p_k| shrinks like "
                                                 "1/|z|, so this comes later than for sce", 1)],
    ("focal", "right", "grad_relerr_1pct"): [
        ("cancellation", M_MULTI, "the loss ~ (1-p)^(gamma+1) multiplies that relative error "
                                  "by gamma+1 = {k:g}", _GAMMA + 1)],
    ("focal", "right", "value_relerr_1pct"): [
        ("cancellation", M_MULTI, "(1-p)^gamma (-log p) multiplies it by gamma+1 = {k:g}", _GAMMA + 1)],
    ("focal", "right", "grad_zero"): [
        ("power_underflow", _m((_GAMMA + 1) * M_MULTI ** (_GAMMA + 1), _GAMMA + 1),
         "the gradient ~ (gamma+1)(9e^-z)^(gamma+1) is 0 (harmless)", _GAMMA + 1),
        ("round_to_one", M_MULTI, "log p = 0, so the loss (1-p)^gamma (-log p) and its gradient "
                                  "are 0: " + _ROUND_RIGHT)],
    ("focal", "right", "saturates"): [
        ("power_underflow", 1 / M_MULTI, "the loss (1-p)^gamma (-log p) ~ (9e^-z)^(gamma+1) "
                                         "underflows to 0 (harmless)", _GAMMA + 1),
        ("round_to_one", M_MULTI, "the loss is exactly 0")],
    **{("focal", "wrong", kind): [
        ("short_mantissa", 1, _ROUNDS)]
       for kind in ("grad_relerr_1pct", "value_relerr_1pct")},
    ("ce_smooth", "right", "grad_relerr_1pct"): [
        ("near_root", math.log(M_MULTI) + math.log(_SMOOTH_T / (1 - _SMOOTH_T)),
         "the gradient p - (1 - eps + eps/K) of the smoothed target vanishes where p reaches the "
         "target's share (a relative error of a near-zero gradient: harmless)",
         _SMOOTH_T * (1 - _SMOOTH_T))],
    ("ce_smooth", "right", "value_relerr_1pct"): [
        ("short_mantissa", 1, "the loss averages the K rounded log-probabilities")],
    ("brier", "right", "grad_relerr_1pct"): [
        ("cancellation", M_MULTI, "the loss ~ (1-p)^2 doubles that relative error", 2)],
    ("brier", "right", "value_relerr_1pct"): [
        ("cancellation", M_MULTI, "(softmax - onehot)^2 doubles it", 2)],
    ("brier", "right", "grad_zero"): [
        ("power_underflow", _m(2 * M_MULTI, 2), "once p - 1 has rounded to 0, the gradient is "
                                                "softmax's backward of the nine non-target terms "
                                                "2 p_j^2 ~ 2e^-2z, and it is 0", 2),
        ("round_to_one", M_MULTI, "p - 1 = 0, and the non-target squares have underflowed "
                                  "before: the gradient is 0 (harmless)")],
    ("brier", "right", "saturates"): [
        ("power_underflow", 1, "the non-target squares p_j^2 ~ e^-2z are 0, p - 1 already was: "
                               "the loss is 0 (harmless)", 2),
        ("round_to_one", M_MULTI, "p - 1 = 0 and the non-target squares have underflowed before: "
                                  "the loss is 0")],
    ("brier", "wrong", "grad_relerr_1pct"): [
        ("subnormal", M_MULTI, "the gradient -(20/9) p (1-p)^2 is proportional to p")],
    ("brier", "wrong", "grad_zero"): [
        ("p_underflow", M_MULTI, "the gradient, proportional to p, is 0 (exact ~ -2e^-|z|/9 "
                                 "would be subnormal too)")],
    ("focal_sigmoid", "right", "grad_relerr_1pct"): [
        ("cancellation", 1, "torchvision forms p = sigmoid(z) and then 1 - p_t, and "
                            "(1 - p_t)^gamma multiplies that relative error by gamma = {k:g}",
         _SIGMOID_FOCAL.gamma)],
    ("focal_sigmoid", "right", "value_relerr_1pct"): [
        ("cancellation", 1, "torchvision's (1 - p_t)^gamma, with 1 - p_t formed from p = sigmoid(z), "
                            "multiplies it by gamma = {k:g}", _SIGMOID_FOCAL.gamma)],
    ("focal_sigmoid", "right", "grad_zero"): [
        ("power_underflow", _m(_SIGMOID_FOCAL.alpha * _SF_K, _SF_K),
         "the gradient ~ alpha (gamma+1) e^-(gamma+1)z is 0 (harmless)", _SF_K),
        ("round_to_one", 1, "sigmoid(z) = 1, so 1 - p_t = 0 and the gradient is 0: "
                            "(exact ~ -alpha (gamma+1) e^-(gamma+1)z: harmless)")],
    ("focal_sigmoid", "right", "saturates"): [
        ("power_underflow", _m(_SIGMOID_FOCAL.alpha, _SF_K),
         "the loss alpha (1-p)^gamma BCE ~ alpha e^-(gamma+1)z underflows to 0 (harmless)", _SF_K),
        ("round_to_one", 1, "1 - p_t = 0: the loss is 0")],
    ("asl", "right", "grad_relerr_1pct"): [
        ("subnormal", 1, "asl's positive term is logsigmoid(z), whose gradient sigmoid(-z) ~ e^-z "
                         "torch computes directly, without BCEWithLogitsLoss's sigmoid(z) - 1 "
                         "cancellation: exact until it is subnormal")],
    ("asl", "right", "grad_zero"): [
        ("p_underflow", 1, "logsigmoid's gradient sigmoid(-z) is 0 (harmless)")],
    ("asl", "right", "value_relerr_1pct"): [
        ("subnormal", 1, "the loss -logsigmoid(z) ~ e^-z is that number")],
    ("asl", "right", "saturates"): [
        ("subnormal", 1, "the loss ~ e^-z underflows to 0 in that range")],
}
# Losses whose mechanisms are another's: the same operations at the probed point.
FAMILY = {
    "ce": "softmax", "nll": "softmax",
    "ce_weighted": "softmax",  # weights 1 in the probe: CrossEntropyLoss itself
    "bce_pos_weight": "bce_logits",  # pos_weight 1 in the probe: BCEWithLogitsLoss itself
    **{loss: "active_passive" for loss in _PASSIVE},
}

# (loss or family, side, kind) -> candidate (cause, m, consequence[, k]), tried in order
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
    **_FAMILY_MECHANISMS,
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
    candidates = [Mechanism(*entry) for entry in (
        MECHANISMS.get((row["loss"], row["side"], kind), [])
        + MECHANISMS.get((FAMILY.get(row["loss"]), row["side"], kind), []))]
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
