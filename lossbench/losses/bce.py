"""bce: torch's BCELoss on sigmoid(logits): -[y log p + (1-y) log(1-p)] per output, each log
clamped at -100 by torch, so saturated sigmoids cap the loss at 100 and zero the gradient.
One-hot targets on single-label data. Mean over N x C."""

import torch
from torch import nn

from ._params import no_knobs
from ._probe import CANCEL_RIGHT, ROUND_RIGHT, SUBNORMAL_LOG, minus_log_p
from ._spec import plain, sigmoid

MECHANISMS = {
    ("wrong", "grad_relerr_1pct"): [
        ("eps_clamp", 1, "so the gradient is (p-1)*p(1-p)*1e12 instead of p-1 = -1: it decays like "
                         "1e12*e^-|z| (4e-6 at z=-40) although the logit is confidently wrong")],
    ("right", "grad_relerr_1pct"): [
        ("eps_clamp", 1, "so the tiny exact gradient p-1 is scaled by p(1-p)*1e12 < 1 (harmless)"),
        ("cancellation", 1, CANCEL_RIGHT)],
    ("wrong", "grad_zero"): [
        (cause, 1, "BCELoss's backward gives a finite dL/dp = -1/max(0, 1e-12) = -1e12 and sigmoid's "
                   "backward multiplies it by p(1-p) = 0: gradient exactly 0 where the exact one is -1")
        for cause in ("exp_overflow", "p_underflow")],
    ("right", "grad_zero"): [("round_to_one", 1, "so p - y = 0: " + ROUND_RIGHT)],
    ("wrong", "grad_inf"): [
        ("inv_overflow", 1, "dL/dp = (p-1)/max(p(1-p), 1e-12) ~ -1/p overflows to -inf (the 1e-12 "
                            "guard is 0 in this dtype), and -inf times sigmoid' = p(1-p) > 0 stays -inf")],
    ("wrong", "grad_nan"): [
        (cause, 1, "then p(1-p) = 0 and the 1e-12 guard is 0 in this dtype: dL/dp = -1/0 = -inf, "
                   "times sigmoid' = 0 gives NaN")
        for cause in ("exp_overflow", "p_underflow")],
    ("right", "grad_nan"): [
        ("round_to_one", 1, "then p - y = 0 and p(1-p) = 0 with the 1e-12 guard rounded to 0: "
                            "dL/dp = 0/0 = NaN, a correct confident logit gets a NaN gradient")],
    ("wrong", "value_relerr_1pct"): [
        ("log_clamp_1pct", 1, "the cap is the documented clamp, not rounding"),
        *[(cause, 1, "log(0) is clamped at -100: loss 100 instead of |z|")
          for cause in ("exp_overflow", "p_underflow")],
        ("subnormal", 1, SUBNORMAL_LOG)],
    ("right", "value_relerr_1pct"): [("cancellation", 1, "loss = -log(p) keeps only the rounding of p")],
    ("wrong", "saturates"): [
        ("log_clamp", 1, "the loss stays at 100 however wrong the logit"),
        ("exp_overflow", 1, "log(0) = -inf is clamped at -100: the loss is pinned at 100"),
        ("p_underflow", 1, "log(0) = -inf is clamped at -100: the loss jumps from ~|z| up to 100")],
    ("right", "saturates"): [("round_to_one", 1, "loss = -log(1) = 0")],
}

SPEC = sigmoid("bce", "BCELoss on sigmoid(logits); one-hot targets on single-label data", no_knobs("bce"),
               plain(nn.BCELoss), "torch.nn", activation=torch.sigmoid,
               formula="-[y log p + (1 - y) log(1 - p)], p = sigmoid(z), each log clamped at -100",
               exact=minus_log_p, mechanisms=MECHANISMS, order=2)
