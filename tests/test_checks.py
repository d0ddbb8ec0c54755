"""The classic mistakes from the mission, each caught with a message naming the fix."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lossbench.checks import check_loss_inputs
from lossbench.errors import LossInputError

torch.manual_seed(0)
LOGITS = torch.randn(8, 5) * 3 + 1  # positive entries, as raw logits have
LABELS = torch.randint(0, 5, (8,))


@pytest.mark.parametrize(
    "criterion, input, target, message",
    [
        (nn.CrossEntropyLoss(), F.softmax(LOGITS, dim=1), LABELS, "drop the softmax"),
        (nn.NLLLoss(), LOGITS, LABELS, "Apply log_softmax"),
        (nn.BCEWithLogitsLoss(), LOGITS, F.one_hot(LABELS, 5), "float 0/1 targets"),
        (nn.BCELoss(), torch.sigmoid(LOGITS), F.one_hot(LABELS, 5), "F.one_hot(target, num_classes).float()"),
        (nn.BCEWithLogitsLoss(), LOGITS, F.one_hot(LABELS, 5).float()[:, :4], "differ in shape"),
        (nn.CrossEntropyLoss(), LOGITS, LABELS[:6], "does not match input"),
        (nn.CrossEntropyLoss(), LOGITS, (torch.rand(8, 5) < 0.5).float().index_fill_(1, torch.tensor([0, 1]), 1.0), "BCEWithLogitsLoss"),
        (nn.BCELoss(), LOGITS, F.one_hot(LABELS, 5).float(), "outside [0, 1]"),
    ],
    ids=["softmax-before-ce", "logits-to-nll", "long-targets-to-bce-logits", "long-targets-to-bce",
         "bce-shape-mismatch", "ce-shape-mismatch", "multi-hot-to-ce", "logits-to-bce"],
)
def test_classic_mistake_is_caught_with_its_fix(criterion, input, target, message):
    with pytest.raises(LossInputError, match=None) as caught:
        check_loss_inputs(criterion, input, target)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "criterion, input, target",
    [
        (nn.CrossEntropyLoss(), LOGITS, LABELS),
        (nn.NLLLoss(), F.log_softmax(LOGITS, dim=1), LABELS),
        (nn.BCELoss(), torch.sigmoid(LOGITS), F.one_hot(LABELS, 5).float()),
        (nn.BCEWithLogitsLoss(), LOGITS, (torch.rand(8, 5) < 0.5).float()),
        (nn.CrossEntropyLoss(), LOGITS, F.softmax(torch.randn(8, 5), dim=1)),  # soft targets are fine
    ],
    ids=["ce", "nll", "bce", "bce_logits-multi-hot", "ce-soft-targets"],
)
def test_correct_use_passes(criterion, input, target):
    check_loss_inputs(criterion, input, target)
    criterion(input, target)  # and torch agrees it is usable


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_correct_use_passes_in_low_precision(dtype):
    logits = (torch.randn(64, 10) * 4).to(dtype)  # what autocast hands the criterion
    check_loss_inputs(nn.NLLLoss(), F.log_softmax(logits, dim=1), torch.randint(0, 10, (64,)))
    check_loss_inputs(nn.CrossEntropyLoss(), logits, torch.randint(0, 10, (64,)))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mistakes_are_still_caught_in_low_precision(dtype):
    logits = (torch.randn(64, 10) * 4 - 20).to(dtype)  # all negative: only logsumexp betrays them
    with pytest.raises(LossInputError, match="not log-probabilities"):
        check_loss_inputs(nn.NLLLoss(), logits, torch.randint(0, 10, (64,)))
    with pytest.raises(LossInputError, match="drop the softmax"):
        check_loss_inputs(nn.CrossEntropyLoss(), F.softmax(logits.float(), dim=1).to(dtype), torch.randint(0, 10, (64,)))
