"""bce_logits: torch's BCEWithLogitsLoss on raw logits: bce's formula computed from z with
log-sum-exp (softplus), exact where sigmoid saturates. Each output an independent Bernoulli;
single- and multi-label. Mean over N x C."""

from torch import nn

from ._params import no_knobs
from ._probe import minus_log_p
from ._spec import plain, sigmoid

MECHANISMS = {
    ("right", "grad_relerr_1pct"): [
        ("cancellation", 1, "the gradient sigmoid(z) - y is that difference, off by at most eps/2 absolute "
                            "(harmless; the loss, a log1p of e^-z, stays accurate)")],
    ("right", "grad_zero"): [
        ("round_to_one", 1, "so sigmoid(z) - y = 0 exactly (exact ~ -e^-z: harmless)")],
    ("right", "value_relerr_1pct"): [
        ("subnormal", 1, "the loss log1p(e^-z) ~ e^-z is that number (relative accuracy held until then)")],
    ("right", "saturates"): [
        ("subnormal", 1, "the loss ~ e^-z underflows to 0 in that range (where exactly depends on how "
                         "the kernel's exp rounds subnormals)")],
}

SPEC = sigmoid("bce_logits", "BCEWithLogitsLoss on logits (sigmoid + BCE fused, log-sum-exp)",
               no_knobs("bce_logits"), plain(nn.BCEWithLogitsLoss), "torch.nn",
               formula="-[y log p + (1 - y) log(1 - p)] = softplus(z) - y z, p = sigmoid(z)",
               exact=minus_log_p, mechanisms=MECHANISMS, order=3)
