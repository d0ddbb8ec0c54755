"""The mission's identities between the four losses, checked numerically."""

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn


def test_ce_equals_log_softmax_nll():
    torch.manual_seed(0)
    logits = torch.randn(64, 10, dtype=torch.float32) * 5
    target = torch.randint(0, 10, (64,))
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    ce = nn.CrossEntropyLoss()(a, target)
    nll = nn.NLLLoss()(F.log_softmax(b, dim=1), target)
    ce.backward()
    nll.backward()
    assert torch.equal(ce, nll)  # bitwise: CE is log_softmax + NLL in one op
    assert torch.equal(a.grad, b.grad)


@settings(max_examples=50, deadline=None)
@given(a=st.floats(-50, 50), b=st.floats(-50, 50), label=st.integers(0, 1))
def test_two_class_softmax_ce_equals_bce_with_logits_on_the_difference(a, b, label):
    logits = torch.tensor([[a, b]], dtype=torch.float64, requires_grad=True)
    diff_in = torch.tensor([b - a], dtype=torch.float64, requires_grad=True)
    ce = F.cross_entropy(logits, torch.tensor([label]))
    bce = F.binary_cross_entropy_with_logits(diff_in, torch.tensor([float(label)], dtype=torch.float64))
    ce.backward()
    bce.backward()
    assert abs(ce.item() - bce.item()) <= 1e-12 * max(1.0, abs(ce.item()))
    # d/db of CE equals d/d(b-a) of BCE; d/da is its negative.
    assert abs(logits.grad[0, 1].item() - diff_in.grad[0].item()) <= 1e-12
    assert abs(logits.grad[0, 0].item() + diff_in.grad[0].item()) <= 1e-12


def test_bce_on_multi_label_targets_is_the_mean_of_per_class_bernoulli_cross_entropies():
    torch.manual_seed(1)
    p = torch.rand(32, 6, dtype=torch.float64) * 0.98 + 0.01
    y = (torch.rand(32, 6) < 0.4).double()
    per_class = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    assert torch.allclose(nn.BCELoss()(p, y), per_class.mean(), rtol=0, atol=1e-12)
    assert torch.allclose(nn.BCELoss(reduction="sum")(p, y), per_class.sum(), rtol=0, atol=1e-10)


def test_bce_and_bce_logits_agree_for_moderate_logits():
    torch.manual_seed(2)
    z = torch.randn(128, 10) * 3
    y = (torch.rand(128, 10) < 0.3).float()
    a, b = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    bce = nn.BCELoss()(torch.sigmoid(a), y)
    logits = nn.BCEWithLogitsLoss()(b, y)
    bce.backward()
    logits.backward()
    assert torch.allclose(bce, logits, rtol=1e-5)
    assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-8)


def test_bce_sigmoid_caps_at_100():
    z = torch.tensor([-100.0], requires_grad=True)
    loss = nn.BCELoss()(torch.sigmoid(z), torch.ones(1))
    loss.backward()
    assert loss.item() == 100.0  # log(sigmoid(-100)) = -100 exactly at the clamp
    assert z.grad.item() == 0.0  # the clamp's gradient is zero: learning stops


def test_bce_with_logits_stays_exact_at_saturation():
    z = torch.tensor([-100.0], requires_grad=True)
    loss = nn.BCEWithLogitsLoss()(z, torch.ones(1))
    loss.backward()
    assert abs(loss.item() - 100.0) < 1e-4  # softplus(100) = 100 + log1p(e^-100)
    assert z.grad.item() == -1.0  # sigmoid(z) - 1: the full push back towards the target
