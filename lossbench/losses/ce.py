"""ce: torch's CrossEntropyLoss on raw logits (log_softmax + NLL in one op):
-log p_y = -z_y + logsumexp(z). Classes are mutually exclusive; single-label. Mean over N."""

from torch import nn

from ._params import no_knobs
from ._probe import SOFTMAX, minus_log_p
from ._spec import plain, softmax

SPEC = softmax("ce", "CrossEntropyLoss on logits (log_softmax + NLL fused)", no_knobs("ce"),
               plain(nn.CrossEntropyLoss), "torch.nn", formula="-log p_y = -z_y + logsumexp(z)",
               exact=minus_log_p, mechanisms=SOFTMAX, order=0)
