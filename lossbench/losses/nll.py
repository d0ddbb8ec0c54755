"""nll: torch's NLLLoss on log_softmax(logits): the same number as ce, the log-softmax moved
outside the loss. Single-label. Mean over N."""

from torch import nn

from ._params import no_knobs
from ._probe import SOFTMAX, minus_log_p
from ._spec import log_softmax, plain, softmax

SPEC = softmax("nll", "NLLLoss on log_softmax(logits)", no_knobs("nll"), plain(nn.NLLLoss), "torch.nn",
               formula="-log_softmax(z)_y (the same number as ce)", exact=minus_log_p,
               activation=log_softmax, mechanisms=SOFTMAX, order=1)
