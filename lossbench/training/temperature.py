"""Temperature scaling (Guo et al. 2017): one scalar T > 0 divides a run's logits, fitted on the
validation split's logits by minimising their NLL with L-BFGS, then applied to the test logits.
T > 1 softens an over-confident model; argmax, and so accuracy, is unchanged.

Fitted per epoch on that epoch's val logits (detached, float64), through the run's own map from
logits to probabilities (lossbench.losses.probabilities: a softmax, or the sigmoid losses'
renormalised sigmoids), so the NLL minimised is the NLL the run reports.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from lossbench.training import metrics
from lossbench.losses import LossSpec, Task, probabilities
from lossbench.training.optim import LBFGS

SCALED = ("temperature", "nll_ts", "ece_ts", "brier_ts")
# sklearn's log_loss clips probabilities at float64's eps: the same floor keeps the objective
# finite where a confident wrong prediction's probability underflows to 0.
EPS = float(np.finfo(np.float64).eps)


def val_nll(spec: LossSpec, logits: torch.Tensor, labels: torch.Tensor, temperature) -> torch.Tensor:
    """Mean NLL of labels under the run's probabilities of logits / temperature."""
    probs = probabilities(spec, logits / temperature, Task.single_label)
    return -torch.log(probs.gather(1, labels[:, None]).clamp_min(EPS)).mean()


def fit_temperature(spec: LossSpec, logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T minimising the NLL of (logits / T, labels); NaN when the logits are not finite.
    L-BFGS works on log T, so T stays > 0 without a constraint."""
    logits = logits.detach().to("cpu", torch.float64)
    labels = labels.to("cpu", torch.long)
    if not torch.isfinite(logits).all():
        return math.nan
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = LBFGS([log_t], lr=1.0, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        nll = val_nll(spec, logits, labels, log_t.exp())
        nll.backward()
        return nll

    optimizer.step(closure)
    return float(log_t.detach().exp())


def scaled_metrics(spec: LossSpec, val_logits: Optional[torch.Tensor], val_labels: Optional[np.ndarray],
                   test_logits: torch.Tensor, test_labels: np.ndarray) -> dict[str, float]:
    """T fitted on the val logits and the test NLL, ECE and Brier after dividing by it; NaN
    without a val split (single-label only)."""
    if val_logits is None:
        return dict.fromkeys(SCALED, math.nan)
    temperature = fit_temperature(spec, val_logits, torch.from_numpy(val_labels))
    scaled = probabilities(spec, test_logits.detach().to("cpu", torch.float64) / temperature, Task.single_label)
    nll, ece, brier = metrics.nll_ece_brier(scaled.numpy(), test_labels)
    return {"temperature": temperature, "nll_ts": nll, "ece_ts": ece, "brier_ts": brier}
