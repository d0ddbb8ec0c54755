"""The loss family beyond the four: each loss's identity with a simpler one (values and gradients,
float64, 1e-10), its knobs typed and validated, its derived weights from the training labels."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.errors import ConfigCompositionException
from torch import nn

from lossbench.config import validate
from lossbench.checks import check_loss_inputs
from lossbench.errors import ConfigError, DataError, LossInputError
from lossbench.losses import LOSSES, Probabilities, Targets, Task, TrainingLabels, encode_targets, head_width, loss_label, loss_params
from lossbench.training.metrics import single_label
from lossbench.probe.exact import exact as probe_exact  # in the probe's setup: C = 10 logits

from conftest import SMALL, compose_config, run_cli

C = 10
TOL = 1e-10


def batch(n=64, c=C, scale=4.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    labels = torch.randint(0, c, (n,), generator=g)
    return logits, labels


def criterion(name, labels=None, **knobs):
    spec = LOSSES[name]
    labels = torch.arange(C).repeat(10) if labels is None else labels
    module, _ = spec.build(spec.params(**knobs), TrainingLabels(labels, C, C))
    return module.double()


def value_and_grad(fn, logits):
    x = logits.clone().requires_grad_(True)
    value = fn(x)
    value.backward()
    return value.detach(), x.grad


def assert_same(fn_a, fn_b, logits, tol=TOL):
    va, ga = value_and_grad(fn_a, logits)
    vb, gb = value_and_grad(fn_b, logits)
    assert torch.allclose(va, vb, rtol=tol, atol=tol), (va, vb)
    assert torch.allclose(ga, gb, rtol=tol, atol=tol), (ga - gb).abs().max()


def onehot(labels, c=C):
    return F.one_hot(labels, c).double()


SOFTMAX_IDENTITIES = {
    "focal(gamma=0) = ce": (lambda y: criterion("focal", gamma=0.0), lambda y: nn.CrossEntropyLoss()),
    "ce_smooth(0) = ce": (lambda y: criterion("ce_smooth", smoothing=0.0), lambda y: nn.CrossEntropyLoss()),
    "ce_weighted(equal) = ce": (lambda y: criterion("ce_weighted", weight=[2.0] * C), lambda y: nn.CrossEntropyLoss()),
    "poly1(0) = ce": (lambda y: criterion("poly1", epsilon=0.0), lambda y: nn.CrossEntropyLoss()),
    "sce(alpha=1, beta=0) = ce": (lambda y: criterion("sce", alpha=1.0, beta=0.0), lambda y: nn.CrossEntropyLoss()),
}


@pytest.mark.parametrize("identity", SOFTMAX_IDENTITIES)
def test_softmax_family_reduces_to_ce(identity):
    logits, labels = batch()
    make_a, make_b = SOFTMAX_IDENTITIES[identity]
    a, b = make_a(labels), make_b(labels)
    assert_same(lambda x: a(x, labels), lambda x: b(x, labels), logits)


def test_ce_smooth_is_ce_against_smoothed_soft_targets_and_kl_plus_entropy():
    logits, labels = batch()
    eps = 0.1
    soft = (1 - eps) * onehot(labels) + eps / C
    smooth = criterion("ce_smooth", smoothing=eps)
    assert_same(lambda x: smooth(x, labels), lambda x: nn.CrossEntropyLoss()(x, soft), logits)
    entropy = -(soft * soft.log()).sum(dim=1).mean()
    kl = nn.KLDivLoss(reduction="batchmean")
    assert_same(lambda x: smooth(x, labels), lambda x: kl(F.log_softmax(x, dim=1), soft) + entropy, logits)


def test_focal_is_the_papers_formula_with_the_weight_differentiated():
    logits, labels = batch()
    alpha = torch.linspace(0.5, 1.5, C).double()  # the criterion keeps its weights in float32
    focal = criterion("focal", gamma=2.0, alpha=alpha.tolist())

    def by_hand(x):
        p = F.softmax(x, dim=1).gather(1, labels[:, None]).squeeze(1)
        return (-alpha[labels] * (1 - p) ** 2 * torch.log(p)).mean()

    assert_same(lambda x: focal(x, labels), by_hand, logits)


def test_brier_loss_equals_the_brier_metric_on_the_same_batch():
    logits, labels = batch()
    loss = criterion("brier")(logits, labels).item()
    metric, _ = single_label(F.softmax(logits, dim=1).numpy(), labels.numpy())
    assert abs(loss - metric["brier"]) < TOL


def test_mse_is_hui_and_belkins_square_loss():
    logits, labels = batch()
    k, m = 3.0, 5.0
    mse = criterion("mse", k=k, m=m)

    def by_hand(x):
        target = x.gather(1, labels[:, None]).squeeze(1)
        others = x.pow(2).sum(dim=1) - target.pow(2)
        return ((k * (target - m) ** 2 + others) / C).mean()

    assert_same(lambda x: mse(x, labels), by_hand, logits)
    plain = criterion("mse")
    assert_same(lambda x: plain(x, labels), lambda x: nn.MSELoss()(x, onehot(labels)), logits)


def test_mae_sum_of_absolute_errors_equals_two_one_minus_p():
    logits, labels = batch()
    mae = criterion("mae")
    assert_same(lambda x: mae(x, labels),
                lambda x: (onehot(labels) - F.softmax(x, dim=1)).abs().sum(dim=1).mean(), logits)


def test_gce_spans_mae_and_ce():
    logits, labels = batch(scale=1.0)
    mae = criterion("mae")
    q1 = criterion("gce", q=1.0)
    assert_same(lambda x: q1(x, labels), lambda x: mae(x, labels) / 2, logits)
    near_zero = criterion("gce", q=1e-4)(logits, labels).item()
    assert abs(near_zero - F.cross_entropy(logits, labels).item()) < 1e-3


def test_nce_rce_is_its_formula():
    logits, labels = batch()
    alpha, beta, a = 1.5, 2.5, -4.0
    loss = criterion("nce_rce", alpha=alpha, beta=beta, log_zero=a)

    def by_hand(x):
        log_p = F.log_softmax(x, dim=1)
        nce = log_p.gather(1, labels[:, None]).squeeze(1) / log_p.sum(dim=1)
        # RCE = -sum_k p_k log q_k with q the one-hot and log 0 := A
        log_q = torch.where(onehot(labels) > 0, 0.0, a)
        rce = -(log_p.exp() * log_q).sum(dim=1)
        return (alpha * nce + beta * rce).mean()

    assert_same(lambda x: loss(x, labels), by_hand, logits)


SOFTMAX_LOSSES = [name for name, spec in LOSSES.items() if spec.probabilities == Probabilities.softmax]


@pytest.mark.parametrize("z", [-60.0, -200.0])
@pytest.mark.parametrize("name", SOFTMAX_LOSSES)
def test_a_confidently_wrong_logit_gets_its_exact_gradient(name, z):
    """Far past where p rounds away next to 1 (p ~ e^-60/9 is 1e-27): in float64 the target
    logit's gradient is finite, non-zero and the one of the loss's closed form (its module's
    `exact`, written from log p = -softplus(log 9 - z), never from the criterion) to 1e-10
    relative, where 1 - p = -expm1(log p) used to give an exactly-0 gradient for mae and gce."""
    spec = LOSSES[name]
    x = torch.zeros(1, C, dtype=torch.float64)
    x[0, 0] = z
    _, grad = value_and_grad(lambda v: criterion(name)(spec.activation(v), torch.tensor([0])), x)
    exact = float(probe_exact(name, np.array([z]))[1][0])
    assert exact != 0 and math.isfinite(grad[0, 0].item())
    assert grad[0, 0].item() == pytest.approx(exact, rel=TOL, abs=0)


def multi_hot(n=64, c=C, seed=1):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=torch.float64) * 4
    return logits, (torch.rand(n, c, generator=g) < 0.3).double()


SIGMOID_IDENTITIES = {
    "focal_sigmoid(gamma=0, alpha=-1)": ("focal_sigmoid", {"gamma": 0.0, "alpha": -1.0}),
    "bce_pos_weight(1)": ("bce_pos_weight", {"pos_weight": 1.0}),
    "asl(0, 0, 0)": ("asl", {"gamma_neg": 0.0, "gamma_pos": 0.0, "clip": 0.0}),
}


@pytest.mark.parametrize("identity", SIGMOID_IDENTITIES)
def test_sigmoid_family_reduces_to_bce_logits(identity):
    logits, targets = multi_hot()
    name, knobs = SIGMOID_IDENTITIES[identity]
    loss = criterion(name, labels=targets, **knobs)
    assert_same(lambda x: loss(x, targets), lambda x: nn.BCEWithLogitsLoss()(x, targets), logits)


def test_asl_is_ridniks_formula():
    logits, targets = multi_hot()
    loss = criterion("asl", labels=targets, gamma_neg=4.0, gamma_pos=1.0, clip=0.05)

    def by_hand(x):  # timm's AsymmetricLossMultiLabel, averaged instead of summed
        p = torch.sigmoid(x)
        p_m = (p - 0.05).clamp(min=0)
        pos = (1 - p) ** 1.0 * torch.log(p)
        neg = p_m ** 4.0 * torch.log(1 - p_m)
        return -(targets * pos + (1 - targets) * neg).mean()

    assert_same(lambda x: loss(x, targets), by_hand, logits, tol=1e-9)


def test_balanced_weights_come_from_the_training_labels():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    spec = LOSSES["ce_weighted"]
    module, derived = spec.build(spec.params(), TrainingLabels(labels, 3, 3))
    assert derived["weight"] == pytest.approx([100 / (3 * 60), 100 / (3 * 30), 100 / (3 * 10)])
    assert module.weight.tolist() == pytest.approx(derived["weight"])
    spec = LOSSES["bce_pos_weight"]
    _, derived = spec.build(spec.params(), TrainingLabels(labels, 3, 3))
    assert derived["pos_weight"] == pytest.approx([40 / 60, 70 / 30, 90 / 10])
    with pytest.raises(DataError, match="classes \\[2\\] have no training samples"):
        LOSSES["ce_weighted"].build(LOSSES["ce_weighted"].params(), TrainingLabels(labels[:90], 3, 3))


def test_binary_head_single_logit_equals_two_logit_softmax_on_the_body():
    """On two classes, bce_logits on one logit b - a is ce on logits (a, b): same loss and the
    same gradient for every weight of the shared body."""
    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(8, 16), nn.Tanh()).double()
    two = nn.Linear(16, 2).double()
    one = nn.Linear(16, 1).double()
    with torch.no_grad():
        one.weight.copy_(two.weight[1:] - two.weight[:1])
        one.bias.copy_(two.bias[1:] - two.bias[:1])
    x = torch.randn(32, 8, dtype=torch.float64)
    labels = torch.randint(0, 2, (32,))
    grads = []
    for head, name in ((two, "ce"), (one, "bce_logits")):
        spec = LOSSES[name]
        width = head_width(spec, Task.single_label, 2)
        assert width == head.out_features
        module, _ = spec.build(spec.params(), TrainingLabels(labels, 2, width))
        target = encode_targets(spec, labels, width)
        target = target.double() if target.is_floating_point() else target  # float32 would round the loss
        body.zero_grad()
        loss = module(spec.activation(head(body(x))), target)
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in body.parameters()]))
    (loss_ce, grads_ce), (loss_bce, grads_bce) = grads
    assert abs(loss_ce - loss_bce) < TOL
    for a, b in zip(grads_ce, grads_bce):
        assert torch.allclose(a, b, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("name", LOSSES)
def test_the_mistake_checker_knows_every_loss(name):
    spec = LOSSES[name]
    logits, labels = batch()
    logits = logits.float()
    module, _ = spec.build(spec.params(), TrainingLabels(torch.arange(C).repeat(10), C, C))
    check_loss_inputs(module, spec.activation(logits), encode_targets(spec, labels, C))  # passes
    if spec.targets == Targets.index:  # the classic mistake of its kind: a softmax first
        mistake = (F.softmax(logits, dim=1), labels)
    else:  # integer targets where float 0/1 are needed
        mistake = (spec.activation(logits), F.one_hot(labels, C))
    with pytest.raises(LossInputError, match=type(module).__name__):
        check_loss_inputs(module, *mistake)


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_yaml_composes_to_its_schema_defaults(name):
    cfg = compose_config(f"loss={name}")
    params = loss_params(cfg.loss)
    assert type(params) is LOSSES[name].params
    assert loss_label(params) == name  # the YAML restates the schema's defaults, nothing else


def test_non_default_knobs_are_part_of_the_loss_identity():
    assert loss_label(loss_params(compose_config("loss=focal", "loss.gamma=1").loss)) == "focal(gamma=1)"
    assert loss_label(loss_params(compose_config("loss=ce_weighted", "loss.weight=[1,2,1,1,1,1,1,1,1,1]").loss)) \
        == "ce_weighted(weight=[1,2,1,1,1,1,1,1,1,1])"


@pytest.mark.parametrize("overrides, message", [
    (["loss=focal", "loss.gamma=-1"], "loss.gamma=-1.0"),
    (["loss=ce_smooth", "loss.smoothing=1.5"], "loss.smoothing=1.5"),
    (["loss=gce", "loss.q=0"], "loss.q=0.0"),
    (["loss=ce_weighted", "loss.weight=[1,2,3]"], "a list of 10 numbers"),
    (["loss=ce_weighted", "loss.weight=even"], "loss.weight='even'"),
    (["loss=focal", "loss.alpha=[1,1]"], "a list of 10 numbers"),
    (["loss=bce_pos_weight", "dataset=multilabel", "loss.pos_weight=-2"], "loss.pos_weight=-2"),
    (["loss=sce", "loss.alpha=0", "loss.beta=0"], "leave no loss"),
    (["loss=asl", "dataset=multilabel", "loss.clip=1"], "loss.clip=1.0"),
    (["loss=focal", "loss.gamma=inf"], "loss.gamma=inf"),
    (["loss=focal", "+loss.gama=1"], "loss.gama is not a key of the config; did you mean loss.gamma?"),
])
def test_bad_loss_knobs_are_refused_before_data_loads(overrides, message):
    with pytest.raises(ConfigError) as caught:
        validate(compose_config(*overrides))
    assert message in str(caught.value)


def test_loss_knob_types_are_checked_by_hydra():
    with pytest.raises(ConfigCompositionException):
        compose_config("loss=focal", "loss.gamma=abc")
    with pytest.raises(ConfigCompositionException):  # a knob of another loss
        compose_config("loss=ce", "loss.gamma=1")


@pytest.mark.parametrize("name", [n for n in LOSSES if Task.multi_label not in LOSSES[n].tasks])
def test_single_label_losses_are_refused_on_multi_label_data_naming_those_that_fit(name):
    with pytest.raises(ConfigError) as caught:
        validate(compose_config("dataset=multilabel", f"loss={name}"))
    fits = [n for n in LOSSES if Task.multi_label in LOSSES[n].tasks]
    assert all(n in str(caught.value) for n in fits)


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_states_its_reduction_and_source(name):
    spec = LOSSES[name]
    assert spec.reduction.startswith(("mean", "weighted mean")) and spec.reference


def sweep_every_loss(tmp_path, task: Task, dataset: str) -> dict:
    """One sweep over every loss that fits `task`, 1 epoch: the registry, not a list in the test."""
    names = [n for n, s in LOSSES.items() if task in s.tasks]
    sweep = tmp_path / "sweep"
    result = run_cli("-m", f"dataset={dataset}", f"loss={','.join(names)}", "trainer.epochs=1",
                     *SMALL, f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in sweep.glob("*/summary.json")]
    assert sorted(s["loss"] for s in summaries) == sorted(names)
    return {s["loss"]: s for s in summaries}


@pytest.mark.slow
def test_every_single_label_loss_trains_on_the_mnist_sample(tmp_path):
    runs = sweep_every_loss(tmp_path, Task.single_label, "mnist")
    for name, summary in runs.items():
        assert summary["status"] == "completed", (name, summary["error"])
        assert summary["test_acc"] > 0.3, name  # one epoch of a 32-unit MLP: far above chance (0.1)
        assert summary["outputs"] == 10
    weights = runs["ce_weighted"]["loss_derived"]["weight"]
    assert len(weights) == 10 and all(0.9 < w < 1.1 for w in weights)  # the sample is stratified


@pytest.mark.slow
def test_every_multi_label_loss_trains_on_the_synthetic_set(tmp_path):
    runs = sweep_every_loss(tmp_path, Task.multi_label, "multilabel")
    for name, summary in runs.items():
        assert summary["status"] == "completed", (name, summary["error"])
        assert summary["test_map"] > 0.3, name
    pos_weight = runs["bce_pos_weight"]["loss_derived"]["pos_weight"]
    assert len(pos_weight) == 10 and all(w > 0 for w in pos_weight)


def test_report_orders_losses_as_the_registry_with_knob_variants_after_their_default():
    from lossbench.report.groups import loss_sort_key

    labels = ["focal(gamma=1)", "bce", "asl", "ce", "focal", "nll"]
    assert sorted(labels, key=loss_sort_key) == ["ce", "nll", "bce", "focal", "focal(gamma=1)", "asl"]


@pytest.mark.slow
def test_binary_preset_trains_one_logit_for_sigmoid_losses_and_two_for_ce(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "experiment=binary", "seed=0", "trainer.epochs=1", "dataset.source=sample",
                     *SMALL, f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = {s["loss"]: s for s in (json.loads(p.read_text()) for p in sweep.glob("*/summary.json"))}
    for name, summary in runs.items():
        assert summary["status"] == "completed" and summary["class_ids"] == [4, 9]
        assert summary["outputs"] == head_width(LOSSES[name], Task.single_label, 2)
        assert summary["test_acc"] > 0.8  # 4 vs 9 after one epoch: learnt, not chance (0.5)
    assert {runs[n]["outputs"] for n in runs} == {1, 2}
