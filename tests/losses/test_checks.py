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
        (nn.BCEWithLogitsLoss(), LOGITS, F.one_hot(LABELS, 5).float()[:, :4],
         "shape mismatch: input (8, 5) and target (8, 4)"),
        (nn.CrossEntropyLoss(), LOGITS, LABELS[:6], "shape mismatch: input (8, 5) and target (6,)"),
        (nn.CrossEntropyLoss(), LOGITS, (torch.rand(8, 5) < 0.5).float().index_fill_(1, torch.tensor([0, 1]), 1.0), "BCEWithLogitsLoss"),
        (nn.BCELoss(), LOGITS, F.one_hot(LABELS, 5).float(), "outside [0, 1]"),
        (nn.BCELoss(), torch.sigmoid(LOGITS).index_fill(0, torch.tensor([2]), float("nan")),
         F.one_hot(LABELS, 5).float(), "5 NaN and 0 infinite values"),
        (nn.CrossEntropyLoss(), LOGITS.index_fill(1, torch.tensor([4]), float("inf")), LABELS,
         "0 NaN and 8 infinite values"),
        (nn.NLLLoss(), torch.log(F.softmax(LOGITS * 100, dim=1)), LABELS, "log_softmax(x) stays finite"),
        (nn.BCEWithLogitsLoss(), LOGITS, F.one_hot(LABELS, 5).float().index_fill(0, torch.tensor([0]), float("nan")),
         "target holds 5 NaN"),
        (nn.CrossEntropyLoss(), LOGITS, F.softmax(LOGITS, dim=1).index_fill(0, torch.tensor([1]), float("nan")),
         "target holds 5 NaN"),
        (nn.BCEWithLogitsLoss(), LOGITS, F.one_hot(LABELS, 5).float() * 2, "targets must be in [0, 1]"),
        (nn.CrossEntropyLoss(), LOGITS, F.one_hot(LABELS, 5).float() * 2, "class probabilities in [0, 1]"),
        (nn.CrossEntropyLoss(), LOGITS, LABELS.int(), "torch requires int64 (long) indices"),
        (nn.NLLLoss(), F.log_softmax(LOGITS, dim=1), LABELS.bool(), "torch requires int64 (long) indices"),
        (nn.CrossEntropyLoss(), LOGITS[:, :1], torch.zeros(8, dtype=torch.long), "the loss is always 0"),
        (nn.NLLLoss(), F.log_softmax(LOGITS[:, :1], dim=1), torch.zeros(8, dtype=torch.long),
         "the loss is always 0"),
        (nn.CrossEntropyLoss(), LOGITS[:0], LABELS[:0], "empty input of shape (0, 5)"),
        (nn.BCEWithLogitsLoss(), LOGITS[:0], F.one_hot(LABELS, 5).float()[:0], "mean over no elements"),
        (nn.CrossEntropyLoss(), LOGITS, torch.full((8,), -100), "every target equals ignore_index=-100"),
        (nn.CrossEntropyLoss(ignore_index=0), LOGITS, LABELS.index_fill(0, torch.tensor([3]), -100),
         "class indices must be in 0..4 (or ignore_index=0), got -100"),
        (nn.CrossEntropyLoss(), LOGITS, LABELS.to("meta"), "input is on cpu but target on meta"),
        (nn.CrossEntropyLoss(), LOGITS.tolist(), LABELS, "input is a list, not a torch.Tensor"),
        (nn.BCEWithLogitsLoss(), LOGITS, F.one_hot(LABELS, 5).tolist(), "target is a list"),
        (nn.CrossEntropyLoss(), LOGITS.long(), LABELS, "use input.float()"),
        (nn.CrossEntropyLoss(), LOGITS[:, :, None].expand(8, 5, 3), LABELS[:, None].expand(8, 2),
         "shape mismatch: input (8, 5, 3) and target (8, 2)"),
        (nn.NLLLoss(), F.log_softmax(LOGITS, dim=1), LABELS.float(), "give indices as int64 (target.long())"),
        (nn.BCELoss(), torch.sigmoid(LOGITS), F.one_hot(LABELS, 5).float() * 1.0000001,
         "got range 0..1.0000001"),
        (nn.BCEWithLogitsLoss(pos_weight=torch.ones(3)), LOGITS, F.one_hot(LABELS, 5).float(),
         "pos_weight of shape (3,) does not broadcast to the input (8, 5)"),
        (nn.BCELoss(weight=torch.ones(3)), torch.sigmoid(LOGITS), F.one_hot(LABELS, 5).float(),
         "weight of shape (3,) does not broadcast"),
        (nn.CrossEntropyLoss(weight=torch.ones(3)), LOGITS, LABELS, "give one weight per class, shape (5,)"),
        (nn.NLLLoss(weight=torch.ones(6)), F.log_softmax(LOGITS, dim=1), LABELS, "weight of shape (6,)"),
        (nn.BCEWithLogitsLoss(), torch.sigmoid(torch.randn(8, 5)), F.one_hot(LABELS, 5).float(),
         "drop the sigmoid"),
        (nn.BCEWithLogitsLoss(), torch.sigmoid(torch.randn(4, 1, requires_grad=True)), torch.ones(4, 1),
         "got the output of a sigmoid"),
        (nn.CrossEntropyLoss(), F.softmax(LOGITS[:, :, None].expand(8, 5, 3), dim=1), LABELS[:, None].expand(8, 3),
         "drop the softmax"),
        (nn.CrossEntropyLoss(), F.softmax(LOGITS[0], dim=0), LABELS[0], "drop the softmax"),
    ],
    ids=["softmax-before-ce", "logits-to-nll", "long-targets-to-bce-logits", "long-targets-to-bce",
         "bce-shape-mismatch", "ce-shape-mismatch", "multi-hot-to-ce", "logits-to-bce",
         "nan-input", "inf-input", "log-of-underflowed-softmax", "nan-bce-target", "nan-soft-target",
         "bce-target-2", "soft-target-2", "int32-ce-target", "bool-nll-target",
         "single-column-ce", "single-column-nll", "empty-ce-batch", "empty-bce-batch",
         "all-targets-ignored", "other-ignore-index", "target-on-other-device", "list-input",
         "list-target", "integer-input", "ce-3d-shape-mismatch", "float-index-target",
         "range-shows-offending-value", "wrong-length-pos-weight", "wrong-length-bce-weight",
         "wrong-length-ce-weight", "wrong-length-nll-weight", "sigmoid-before-bce-logits",
         "sigmoid-before-bce-logits-by-autograd",
         "softmax-before-ce-3d", "softmax-before-ce-unbatched"],
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
        (nn.CrossEntropyLoss(), LOGITS, LABELS.masked_fill(torch.arange(8) % 3 == 0, -100)),
        (nn.NLLLoss(ignore_index=7), F.log_softmax(LOGITS, dim=1), LABELS.masked_fill(torch.arange(8) < 4, 7)),
        (nn.CrossEntropyLoss(), LOGITS, LABELS.to(torch.uint8)),  # torch takes Byte indices too
        (nn.BCEWithLogitsLoss(), LOGITS, torch.rand(8, 5)),  # soft binary targets
        (nn.CrossEntropyLoss(reduction="sum"), LOGITS[:0], LABELS[:0]),  # a sum over nothing is 0
        (nn.CrossEntropyLoss(label_smoothing=0.1), LOGITS, LABELS),
        (nn.CrossEntropyLoss(), torch.randn(8, 5, 3), torch.randint(0, 5, (8, 3))),  # (N, C, d)
        (nn.CrossEntropyLoss(), torch.randn(2, 5, 3, 4), torch.randint(0, 5, (2, 3, 4))),  # (N, C, d1, d2)
        (nn.CrossEntropyLoss(), torch.randn(2, 5, 3), F.softmax(torch.randn(2, 5, 3), dim=1)),
        (nn.CrossEntropyLoss(), LOGITS[0], LABELS[0]),  # unbatched (C,) with a scalar index
        (nn.NLLLoss(), F.log_softmax(torch.randn(8, 5, 3), dim=1), torch.randint(0, 5, (8, 3))),
        (nn.NLLLoss(), F.log_softmax(LOGITS[0], dim=0), LABELS[0]),
        (nn.CrossEntropyLoss(weight=torch.rand(5)), LOGITS, LABELS),
        (nn.BCEWithLogitsLoss(pos_weight=torch.rand(5)), LOGITS, F.one_hot(LABELS, 5).float()),
        (nn.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0])), LOGITS, F.one_hot(LABELS, 5).float()),
        (nn.BCEWithLogitsLoss(), torch.randn(4, 5, 3), (torch.rand(4, 5, 3) < 0.5).float()),
        (nn.BCEWithLogitsLoss(), torch.rand(3), torch.ones(3)),  # too few values to call it a sigmoid's
        # a model's single logit, all inside (0, 1) for this batch: its history says it is no sigmoid's
        (nn.BCEWithLogitsLoss(), nn.Linear(4, 1)(torch.rand(64, 4)).detach().clamp(0.1, 0.9).requires_grad_() * 1,
         torch.ones(64, 1)),
    ],
    ids=["ce", "nll", "bce", "bce_logits-multi-hot", "ce-soft-targets", "ce-ignore-index",
         "nll-own-ignore-index", "ce-uint8-targets", "bce_logits-soft-targets", "ce-empty-sum",
         "ce-label-smoothing", "ce-3d", "ce-4d", "ce-3d-soft-targets", "ce-unbatched", "nll-3d",
         "nll-unbatched", "ce-class-weights", "bce_logits-pos-weight", "bce_logits-scalar-pos-weight",
         "bce_logits-3d", "bce_logits-few-values", "bce_logits-one-logit-inside-0-1"],
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


class _TemperedCrossEntropy(nn.CrossEntropyLoss):
    """A subclass the checker has no entry for: it inherits CrossEntropyLoss's check."""


def test_subclass_of_a_known_criterion_uses_its_parents_check():
    with pytest.raises(LossInputError, match="drop the softmax"):
        check_loss_inputs(_TemperedCrossEntropy(), F.softmax(LOGITS, dim=1), LABELS)
    check_loss_inputs(_TemperedCrossEntropy(), LOGITS, LABELS)


@pytest.mark.parametrize("criterion", [nn.CrossEntropyLoss, nn.BCEWithLogitsLoss])
def test_a_criterion_class_instead_of_an_instance_says_to_create_one(criterion):
    with pytest.raises(TypeError, match=rf"got the class {criterion.__name__}, not a criterion: create one first, {criterion.__name__}\(\)"):
        check_loss_inputs(criterion, LOGITS, LABELS)


@pytest.mark.parametrize("criterion", [nn.MSELoss(), nn.KLDivLoss(reduction="batchmean"), F.cross_entropy])
def test_unknown_criterion_is_refused_not_passed(criterion):
    with pytest.raises(TypeError, match="no check for .*it knows CrossEntropyLoss, NLLLoss, BCELoss, BCEWithLogitsLoss, SoftmaxLoss, SigmoidLoss"):
        check_loss_inputs(criterion, LOGITS, F.one_hot(LABELS, 5).float())
