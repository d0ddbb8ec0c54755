"""The classic loss mistakes, caught with a message that says what is wrong and the fix.

Call it on your own tensors before a criterion:

    check_loss_inputs(nn.CrossEntropyLoss(), logits, target)

Every lossbench run applies it to its first batch. It costs a handful of host syncs (each
check reads a flag back), so it is for a first batch, not for every step.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from lossbench.losses import SigmoidLoss, SoftmaxLoss
from lossbench.errors import LossInputError


def _tolerance(x: Tensor) -> float:
    """How far "rows sum to 1" / "logsumexp is 0" may miss in x's dtype. Rounding each entry to
    relative eps moves logsumexp by at most eps times the entropy (<= eps * ln C): 10 eps covers
    ten classes in bfloat16 and float16, and raw logits still miss by far more."""
    return max(1e-3, 10 * torch.finfo(x.dtype).eps) if x.is_floating_point() else 1e-3


def _is_distribution(x: Tensor) -> bool:
    sums = x.float().sum(dim=1)
    return bool(((x >= 0) & (x <= 1)).all() and torch.allclose(sums, torch.ones_like(sums), atol=_tolerance(x)))


def _shown(value: float, bounds: tuple[float, ...]) -> str:
    """Three significant digits, more when those would round a value beyond a bound onto it
    (1.0000001 is not shown as 1)."""
    for digits in range(3, 18):
        text = f"{value:.{digits}g}"
        if value in bounds or float(text) not in bounds:
            return text
    return repr(value)


def _value_range(x: Tensor, bounds: tuple[float, ...] = (0.0, 1.0)) -> str:
    return f"{_shown(float(x.min()), bounds)}..{_shown(float(x.max()), bounds)}"


def _check_arguments(name: str, input: Any, target: Any) -> None:
    """What every criterion needs before its values can be looked at."""
    for argument, value in (("input", input), ("target", target)):
        if not isinstance(value, Tensor):
            raise LossInputError(
                f"{name}: {argument} is a {type(value).__name__}, not a torch.Tensor; criteria take "
                "tensors: convert it with torch.as_tensor(...) (torch.stack for a list of tensors)"
            )
    if target.device != input.device:
        raise LossInputError(
            f"{name}: input is on {input.device} but target on {target.device}; both must be on "
            "one device: move the target with target.to(input.device)"
        )
    if not input.is_floating_point():
        raise LossInputError(
            f"{name}: input of dtype {input.dtype}; a loss takes floating-point scores "
            "(logits, probabilities or log-probabilities): use input.float()"
        )


def _class_rows(name: str, input: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """CrossEntropyLoss/NLLLoss inputs as (rows, classes), targets as (rows,) class indices or
    (rows, classes) probabilities. torch takes the classes in dim 1 of (N, C) and (N, C, d1, ...)
    and in dim 0 of an unbatched (C,); index targets have the input's shape without the class
    dim, probability targets the input's shape."""
    if input.dim() == 0:
        raise LossInputError(f"{name}: input is a scalar; give one score per class, shape (C,) or "
                             "(batch, C, ...)")
    batched = input.dim() >= 2
    index_shape = (input.shape[:1] + input.shape[2:]) if batched else torch.Size()
    if target.is_floating_point() and target.shape == index_shape != input.shape:
        raise LossInputError(
            f"{name}: float target of shape {tuple(target.shape)}, the shape of class indices: give "
            "indices as int64 (target.long()), or class probabilities of the input's shape "
            f"{tuple(input.shape)}")
    expected = input.shape if target.is_floating_point() else index_shape
    if target.shape != expected:
        raise LossInputError(
            f"{name}: shape mismatch: input {tuple(input.shape)} and target {tuple(target.shape)}. "
            f"Class indices have the input's shape without its class dim, {tuple(index_shape)}; "
            f"class probabilities the input's shape")
    if not batched:
        return input[None], target[None]
    classes = input.shape[1]
    rows = input.movedim(1, -1).reshape(-1, classes)
    return rows, target.movedim(1, -1).reshape(-1, classes) if target.is_floating_point() else target.reshape(-1)


def _check_class_weight(criterion: nn.Module, name: str, classes: int) -> None:
    weight = getattr(criterion, "weight", None)
    if weight is not None and tuple(weight.shape) != (classes,):
        raise LossInputError(
            f"{name}: weight of shape {tuple(weight.shape)} for an input with {classes} classes: "
            f"give one weight per class, shape ({classes},)")


def _check_broadcast_weights(criterion: nn.Module, name: str, input: Tensor) -> None:
    """BCE's weight and pos_weight must broadcast to the input's shape (pos_weight along the
    classes, the last dim of a (batch, classes) input)."""
    for key in ("weight", "pos_weight"):
        weight = getattr(criterion, key, None)
        if weight is None:
            continue
        try:
            fits = torch.broadcast_shapes(weight.shape, input.shape) == input.shape
        except RuntimeError:
            fits = False
        if not fits:
            raise LossInputError(
                f"{name}: {key} of shape {tuple(weight.shape)} does not broadcast to the input "
                f"{tuple(input.shape)}: give one value per class, shape ({input.shape[-1]},) for a "
                "(batch, classes) input, or a single value")


def _check_finite(name: str, input: Tensor, target: Tensor) -> None:
    detached = input.detach()
    if not bool(torch.isfinite(detached).all()):
        nan = int(detached.isnan().sum())
        inf = int(detached.isinf().sum())
        hint = ""
        if bool((detached == float("-inf")).any()):
            hint = (" (-inf is what log(softmax(x)) gives where the softmax underflows; "
                    "log_softmax(x) stays finite)")
        raise LossInputError(
            f"{name}: input holds {nan} NaN and {inf} infinite values (of {detached.numel()}): the "
            "loss and its gradient would be NaN or inf. Find where they start: the data, the "
            f"model's outputs, a learning rate too large{hint}"
        )
    if target.is_floating_point() and not bool(torch.isfinite(target).all()):
        raise LossInputError(
            f"{name}: target holds {int(target.isnan().sum())} NaN and "
            f"{int(target.isinf().sum())} infinite values: every target must be a finite "
            "probability or label; look for missing labels in the data"
        )


def _check_classes(name: str, input: Tensor) -> None:
    if input.shape[1] == 1:
        raise LossInputError(
            f"{name}: input {tuple(input.shape)} has a single class column: a softmax over one "
            "class is always 1, so the loss is always 0 and nothing trains. Give one column per "
            "class (2 for a binary task), or use BCEWithLogitsLoss on the single logit with "
            "float 0/1 targets"
        )


def _check_soft_target(name: str, input: Tensor, target: Tensor) -> None:
    if bool(((target < 0) | (target > 1)).any()):
        raise LossInputError(
            f"{name}: float targets are class probabilities in [0, 1], got range "
            f"{_value_range(target)}; for class indices give a long tensor of shape "
            f"({input.shape[0]},)"
        )
    positives = (target > 0).sum(dim=1)
    if bool((positives > 1).any()) and bool(((target == 0) | (target == 1)).all()):
        raise LossInputError(
            f"{name}: multi-hot target (up to {int(positives.max())} positives in a row): "
            "softmax cross-entropy assumes exactly one class per sample. For multi-label "
            "data use BCEWithLogitsLoss on the logits with these float targets"
        )


def _check_index_target(criterion: nn.Module, name: str, input: Tensor, target: Tensor) -> None:
    """Class indices in range, except those equal to the criterion's own ignore_index."""
    if target.is_floating_point():
        _check_soft_target(name, input, target)
        return
    if target.dtype not in (torch.int64, torch.uint8):  # the two index types torch takes
        raise LossInputError(
            f"{name}: class indices of dtype {target.dtype}; torch requires int64 (long) "
            "indices: use target.long()"
        )
    ignore_index = getattr(criterion, "ignore_index", None)  # custom criteria may have none
    counted = target.long() if ignore_index is None else target.long()[target.long() != ignore_index]
    if counted.numel() == 0:
        if getattr(criterion, "reduction", "mean") == "mean":
            raise LossInputError(
                f"{name}: every target equals ignore_index={ignore_index}, so the mean loss is "
                "0/0 = NaN; leave out batches with no labelled sample"
            )
        return
    classes = input.shape[1]
    if bool(((counted < 0) | (counted >= classes)).any()):
        raise LossInputError(
            f"{name}: class indices must be in 0..{classes - 1}"
            + ("" if ignore_index is None else f" (or ignore_index={ignore_index})")
            + f", got {int(counted.min())}..{int(counted.max())}"
        )


def _check_cross_entropy(criterion: nn.Module, input: Tensor, target: Tensor) -> None:
    name = type(criterion).__name__
    input, target = _class_rows(name, input, target)
    _check_classes(name, input)
    _check_class_weight(criterion, name, input.shape[1])
    if _is_distribution(input.detach()):
        raise LossInputError(
            f"{name} got probabilities (rows in [0, 1] summing to 1): it applies "
            "log_softmax itself, so a softmax before it squashes the logits twice. Pass the raw "
            "logits (drop the softmax)"
        )
    _check_index_target(criterion, name, input, target)


def _check_softmax_family(criterion: nn.Module, input: Tensor, target: Tensor) -> None:
    """lossbench's softmax-family criteria: CrossEntropyLoss's input rules, class indices only."""
    name = type(criterion).__name__
    if input.dim() != 2:
        raise LossInputError(f"{name}: input of shape {tuple(input.shape)}; lossbench's softmax-family "
                             "criteria take (batch, classes) logits")
    if target.is_floating_point():
        raise LossInputError(
            f"{name} got {target.dtype} targets: it takes class indices "
            f"(long, shape ({input.shape[0]},)), not one-hot or soft targets"
        )
    _check_cross_entropy(criterion, input, target)


def _check_nll(criterion: nn.Module, input: Tensor, target: Tensor) -> None:
    input, target = _class_rows("NLLLoss", input, target)
    _check_classes("NLLLoss", input)
    _check_class_weight(criterion, "NLLLoss", input.shape[1])
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
    _check_index_target(criterion, "NLLLoss", input, target)


def _check_binary(name: str, input: Tensor, target: Tensor) -> None:
    if not target.is_floating_point():
        raise LossInputError(
            f"{name} got {target.dtype} targets: it needs float 0/1 targets of the input's shape. "
            "For class indices use F.one_hot(target, num_classes).float() (or CrossEntropyLoss); "
            "for multi-hot labels use target.float()"
        )
    if target.shape != input.shape:
        raise LossInputError(
            f"{name}: shape mismatch: input {tuple(input.shape)} and target {tuple(target.shape)}; "
            "BCE scores every entry on its own, so they must match (one-hot or multi-hot targets)"
        )
    if bool(((target < 0) | (target > 1)).any()):
        raise LossInputError(
            f"{name}: targets must be in [0, 1] (0/1 labels or probabilities), got range "
            f"{_value_range(target)}: a target above 1 or below 0 rewards pushing the logit "
            "without bound. Rescale or binarise the labels"
        )


def _check_bce(criterion: nn.Module, input: Tensor, target: Tensor) -> None:
    detached = input.detach()
    if bool(((detached < 0) | (detached > 1)).any()):
        raise LossInputError(
            f"BCELoss got values outside [0, 1] (range {_value_range(detached)}): it expects "
            "probabilities. Use BCEWithLogitsLoss on the raw logits (stable), or apply sigmoid "
            "first"
        )
    _check_binary("BCELoss", input, target)
    _check_broadcast_weights(criterion, "BCELoss", input)


# Without autograd history, values all strictly inside (0, 1) are the only sign of a sigmoid:
# trusted from this many values on (2**-16 for logits symmetric about 0).
SIGMOID_EVIDENCE = 16
# Nodes a sigmoid's output may pass through on its way to the criterion (autocast's casts, views).
_PASS_THROUGH = ("ToCopyBackward0", "ViewBackward0", "UnsafeViewBackward0", "CloneBackward0")


def _after_sigmoid(x: Tensor) -> bool:
    """Whether x comes out of a sigmoid: read from its autograd history when it has one (a
    model's raw logits can all lie in (0, 1), one output unit's often do), else guessed from
    its values."""
    if not x.requires_grad:
        detached = x.detach()
        return detached.numel() >= SIGMOID_EVIDENCE and bool(((detached > 0) & (detached < 1)).all())
    node = x.grad_fn
    while node is not None and type(node).__name__ in _PASS_THROUGH:
        node = node.next_functions[0][0]
    return node is not None and type(node).__name__ == "SigmoidBackward0"


def _check_bce_logits(criterion: nn.Module, input: Tensor, target: Tensor) -> None:
    """BCEWithLogitsLoss and lossbench's sigmoid-family criteria: logits, float 0/1 targets."""
    name = type(criterion).__name__
    if _after_sigmoid(input):
        raise LossInputError(
            f"{name} got the output of a sigmoid (range {_value_range(input.detach())}): it applies the "
            "sigmoid itself, so a sigmoid before it squashes twice and no output can reach a "
            "probability below 0.5. Pass the raw logits (drop the sigmoid)")
    _check_binary(name, input, target)
    _check_broadcast_weights(criterion, name, input)


# The extension point: one check per criterion class, called with (criterion, input, target)
# after the checks every criterion shares (tensors, device, dtype, shape, empty, finite). A
# subclass uses the check of its nearest registered ancestor; a criterion with none is refused.
_CHECKS: dict[type, Callable[[nn.Module, Tensor, Tensor], None]] = {
    nn.CrossEntropyLoss: _check_cross_entropy,
    nn.NLLLoss: _check_nll,
    nn.BCELoss: _check_bce,
    nn.BCEWithLogitsLoss: _check_bce_logits,
    SoftmaxLoss: _check_softmax_family,
    SigmoidLoss: _check_bce_logits,
}


def _check_for(criterion: Any) -> Callable[[nn.Module, Tensor, Tensor], None]:
    if isinstance(criterion, type) and issubclass(criterion, nn.Module):
        raise TypeError(
            f"check_loss_inputs got the class {criterion.__name__}, not a criterion: create one "
            f"first, {criterion.__name__}() (with its options inside the parentheses)")
    for kind in type(criterion).__mro__:
        if kind in _CHECKS:
            return _CHECKS[kind]
    known = ", ".join(kind.__name__ for kind in _CHECKS)
    raise TypeError(
        f"check_loss_inputs has no check for {type(criterion).__name__}; it knows {known} and "
        "their subclasses. Register one in lossbench.checks._CHECKS"
    )


def check_loss_inputs(criterion: nn.Module, input: Tensor, target: Tensor) -> None:
    """Raise LossInputError if (input, target) is a known misuse of `criterion`, TypeError if
    `criterion` is not one this checker knows."""
    check = _check_for(criterion)
    name = type(criterion).__name__
    _check_arguments(name, input, target)
    if input.numel() == 0:
        if getattr(criterion, "reduction", "mean") == "mean":
            raise LossInputError(
                f"{name}: empty input of shape {tuple(input.shape)}: the mean over no elements "
                "is NaN. Leave out empty batches (or use reduction='sum')"
            )
        return  # summed or per-sample, an empty batch is a valid (empty) loss
    _check_finite(name, input, target)
    check(criterion, input, target)
