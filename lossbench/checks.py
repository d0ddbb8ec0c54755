"""The classic loss mistakes, caught with a message that says what is wrong and the fix.

Call it on your own tensors before a criterion:

    check_loss_inputs(nn.CrossEntropyLoss(), logits, target)

Every lossbench run applies it to its first batch. It costs one host sync, so it is not for
every step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lossbench.errors import LossInputError



def _tolerance(x: Tensor) -> float:
    """How far "rows sum to 1" / "logsumexp is 0" may miss in x's dtype. Rounding each entry to
    relative eps moves logsumexp by at most eps times the entropy (<= eps * ln C): 10 eps covers
    ten classes in bfloat16 and float16, and raw logits still miss by far more."""
    return max(1e-3, 10 * torch.finfo(x.dtype).eps) if x.is_floating_point() else 1e-3


def _is_distribution(x: Tensor) -> bool:
    sums = x.float().sum(dim=1)
    return bool(((x >= 0) & (x <= 1)).all() and torch.allclose(sums, torch.ones_like(sums), atol=_tolerance(x)))


def _check_index_target(name: str, input: Tensor, target: Tensor) -> None:
    if target.is_floating_point():
        if target.shape != input.shape:
            raise LossInputError(
                f"{name}: float target of shape {tuple(target.shape)} does not match input "
                f"{tuple(input.shape)}; give class indices (long, shape ({input.shape[0]},)) or "
                "class probabilities of the input's shape"
            )
        positives = (target > 0).sum(dim=1)
        if bool((positives > 1).any()) and bool(((target == 0) | (target == 1)).all()):
            raise LossInputError(
                f"{name}: multi-hot target (up to {int(positives.max())} positives in a row): "
                "softmax cross-entropy assumes exactly one class per sample. For multi-label "
                "data use BCEWithLogitsLoss on the logits with these float targets"
            )
        return
    if target.dim() != 1 or target.shape[0] != input.shape[0]:
        raise LossInputError(
            f"{name}: target of shape {tuple(target.shape)} does not match input "
            f"{tuple(input.shape)}: give one class index per row, shape ({input.shape[0]},)"
        )
    if bool(((target < 0) | (target >= input.shape[1])).any()):
        raise LossInputError(
            f"{name}: class indices must be in 0..{input.shape[1] - 1}, got "
            f"{int(target.min())}..{int(target.max())}"
        )


def _check_cross_entropy(input: Tensor, target: Tensor) -> None:
    if _is_distribution(input.detach()):
        raise LossInputError(
            "CrossEntropyLoss got probabilities (rows in [0, 1] summing to 1): it applies "
            "log_softmax itself, so a softmax before it squashes the logits twice. Pass the raw "
            "logits (drop the softmax)"
        )
    _check_index_target("CrossEntropyLoss", input, target)


def _check_nll(input: Tensor, target: Tensor) -> None:
    detached = input.detach()
    tolerance = _tolerance(detached)
    if bool((detached > tolerance).any()):
        raise LossInputError(
            f"NLLLoss got positive values (max {float(detached.max()):.3g}): it expects "
            "log-probabilities (<= 0), e.g. raw logits were passed. Apply log_softmax(dim=1) "
            "first, or use CrossEntropyLoss on the logits"
        )
    if _is_distribution(detached):
        raise LossInputError(
            "NLLLoss got probabilities (rows summing to 1); it expects log-probabilities. Use "
            "log_softmax instead of softmax, or CrossEntropyLoss on the logits"
        )
    lse = detached.float().logsumexp(dim=1)
    if not torch.allclose(lse, torch.zeros_like(lse), atol=tolerance):
        raise LossInputError(
            "NLLLoss got rows that are not log-probabilities (logsumexp != 0): apply "
            "log_softmax(dim=1) to the logits first, or use CrossEntropyLoss on the logits"
        )
    _check_index_target("NLLLoss", input, target)


def _check_binary(name: str, input: Tensor, target: Tensor) -> None:
    if not target.is_floating_point():
        raise LossInputError(
            f"{name} got {target.dtype} targets: it needs float 0/1 targets of the input's shape. "
            "For class indices use F.one_hot(target, num_classes).float() (or CrossEntropyLoss); "
            "for multi-hot labels use target.float()"
        )
    if target.shape != input.shape:
        raise LossInputError(
            f"{name}: input {tuple(input.shape)} and target {tuple(target.shape)} differ in shape; "
            "BCE scores every entry on its own, so they must match (one-hot or multi-hot targets)"
        )


def _check_bce(input: Tensor, target: Tensor) -> None:
    detached = input.detach()
    if bool(((detached < 0) | (detached > 1)).any()):
        raise LossInputError(
            f"BCELoss got values outside [0, 1] (range {float(detached.min()):.3g}.."
            f"{float(detached.max()):.3g}): it expects probabilities. Use BCEWithLogitsLoss on "
            "the raw logits (stable), or apply sigmoid first"
        )
    _check_binary("BCELoss", input, target)


def _check_bce_logits(input: Tensor, target: Tensor) -> None:
    _check_binary("BCEWithLogitsLoss", input, target)


_CHECKS = {
    nn.CrossEntropyLoss: _check_cross_entropy,
    nn.NLLLoss: _check_nll,
    nn.BCELoss: _check_bce,
    nn.BCEWithLogitsLoss: _check_bce_logits,
}


def check_loss_inputs(criterion: nn.Module, input: Tensor, target: Tensor) -> None:
    """Raise LossInputError if (input, target) is a known misuse of `criterion`."""
    if input.dim() != 2:
        raise LossInputError(
            f"{type(criterion).__name__}: input of shape {tuple(input.shape)}; lossbench checks "
            "(batch, classes) inputs"
        )
    for kind, check in _CHECKS.items():
        if isinstance(criterion, kind):
            check(input, target)
            return
