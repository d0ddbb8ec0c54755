"""The losses the probe covers and the one-row setup each is probed in.

Every loss in `lossbench.losses.LOSSES`, built by its spec with its default knobs (the criterion
the trainer trains with), with the float64 closed form and the mechanisms its module declares,
plus `naive_nll`: NLLLoss on torch.log(softmax(x)), the user mistake
the registry's `nll` avoids with log_softmax.

Setup: softmax-family losses get K = 10 logits, the target's (class 0) equal to z and the other
K-1 = 9 equal to 0, so z is the target's margin; sigmoid-family losses get the binary head's
single logit z with target 1. z < 0 is a confidently wrong logit, z > 0 a confidently right one.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from lossbench.losses import LOSSES, LossSpec, Probabilities, Targets, TrainingLabels
from lossbench.losses._probe import CANCEL_RIGHT, M_MULTI, N_CLASSES, ROUND_RIGHT, SUBNORMAL_LOG

TARGET = 0  # index of the target class in the multi-class setup


def _log_of_softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.softmax(logits, dim=1))


# Its exact form is nll's; its thresholds come from forming p, then its log.
NAIVE_MECHANISMS = {
    ("wrong", "grad_nan"): [
        ("inv_overflow", M_MULTI, "torch.log's backward gives -1/p = -inf and softmax's backward "
                                  "p*(g - sum g*p) forms -inf - (-inf) = NaN for the target logit "
                                  "(+inf for the others); log_softmax never divides by p")],
    ("wrong", "value_nonfinite"): [
        ("p_underflow", M_MULTI, "torch.log(0) = -inf: loss +inf (ce/nll never form p and stay exact)")],
    ("wrong", "saturates"): [("p_underflow", M_MULTI, "the loss is stuck at +inf")],
    ("wrong", "value_relerr_1pct"): [("subnormal", M_MULTI, SUBNORMAL_LOG)],
    ("right", "grad_nan"): [
        ("p_underflow", 1, "these are the non-target probabilities e^-z/(1+9e^-z): their log is -inf, "
                           "log's backward forms 0/0 = NaN for them (nll passes them a zero gradient) and "
                           "softmax's backward sum g*p spreads it to every logit: a correct confident "
                           "logit gets a NaN gradient")],
    ("right", "grad_zero"): [
        ("round_to_one", M_MULTI, "softmax's p_target = 1, log(1) = 0: " + ROUND_RIGHT)],
    ("right", "grad_relerr_1pct"): [("cancellation", M_MULTI, CANCEL_RIGHT)],
    ("right", "value_relerr_1pct"): [("cancellation", M_MULTI, "log(p) keeps only the rounding of p")],
    ("right", "saturates"): [("round_to_one", M_MULTI, "the loss is exactly 0")],
}


def _with_naive_nll() -> dict[str, LossSpec]:
    naive = replace(LOSSES["nll"], name="naive_nll", activation=_log_of_softmax,
                    summary="NLLLoss on torch.log(softmax(logits)): the mistake log_softmax avoids",
                    mechanisms=NAIVE_MECHANISMS)
    names = list(LOSSES)
    names.insert(names.index("nll") + 1, "naive_nll")
    return {name: naive if name == "naive_nll" else LOSSES[name] for name in names}


PROBED: dict[str, LossSpec] = _with_naive_nll()


def is_binary(loss: str) -> bool:
    """Sigmoid-family losses are probed on one Bernoulli logit, softmax-family on K classes."""
    return PROBED[loss].probabilities == Probabilities.sigmoid


def training_labels(loss: str) -> TrainingLabels:
    """Every class (or both outcomes) once: "balanced" class weights and pos_weight come out 1,
    so the weighted losses are probed as the losses they weight."""
    if is_binary(loss):
        return TrainingLabels(torch.tensor([0, 1]), n_classes=2, width=1)
    return TrainingLabels(torch.arange(N_CLASSES), n_classes=N_CLASSES, width=N_CLASSES)


def criterion(loss: str, dtype: torch.dtype) -> tuple[nn.Module, dict]:
    """The loss's criterion in `dtype` with one loss per row (reduction "none"), and the values
    it derived from the training labels."""
    spec = PROBED[loss]
    module, derived = spec.build(spec.params(), training_labels(loss))
    module.reduction = "none"
    return module.to(dtype), derived


def logits(loss: str, z: torch.Tensor) -> torch.Tensor:
    if is_binary(loss):
        return z[:, None].clone()
    x = torch.zeros(z.shape[0], N_CLASSES, dtype=z.dtype)
    x[:, TARGET] = z
    return x


def targets(loss: str, n: int, dtype: torch.dtype) -> torch.Tensor:
    if PROBED[loss].targets == Targets.index:
        return torch.full((n,), TARGET, dtype=torch.long)
    return torch.ones(n, 1, dtype=dtype)
