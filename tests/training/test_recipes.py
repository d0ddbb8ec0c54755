"""Training recipes: lr schedules equal torch's schedulers, Nesterov and gradient clipping as torch
does them, batch norm and initialisers (the Active Passive Loss CNN), per-batch augmentation,
the same in the seed stack, and the versus-published table."""

import dataclasses
import math

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from conftest import compose_config
from lossbench.training.augment import augment
from lossbench.training.batched import unstackable
from lossbench.config import validate
from lossbench.errors import ConfigError
from lossbench.training.model import build_model
from lossbench.training.optim import build_optimizer
from lossbench.training.recipe import Recipe
from lossbench.report.published import versus
from lossbench.training.schedule import lr_trace
from lossbench.training.stacked_optim import stacked_optimizer
from lossbench.training.train import train, train_runs
from test_batched import (FLOAT64, SEEDS, Recorded, assert_rows_match, largest_weight_difference,
                          setup)

EPOCHS, STEPS = 7, 3


def scheduler(*overrides):
    return compose_config(f"trainer.epochs={EPOCHS}", *overrides).scheduler


def torch_trace(make, per_step: bool, lr: float = 0.1) -> list[float]:
    """The lr torch's scheduler gives each step, driven as its documentation does."""
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=lr)
    sched, seen = make(optimizer), []
    for _ in range(EPOCHS):
        for _ in range(STEPS):
            seen.append(optimizer.param_groups[0]["lr"])
            weight.grad = torch.ones(1)
            optimizer.step()
            if per_step:
                sched.step()
        if not per_step:
            sched.step()
    return seen


L = torch.optim.lr_scheduler


@pytest.mark.parametrize("overrides, make, per_step", [
    (["scheduler=cosine", "scheduler.eta_min=0.001"], lambda o: L.CosineAnnealingLR(o, EPOCHS, 0.001), False),
    (["scheduler=step", "scheduler.step_size=2", "scheduler.gamma=0.5"], lambda o: L.StepLR(o, 2, 0.5), False),
    (["scheduler=multistep", "scheduler.milestones=[2,5]"], lambda o: L.MultiStepLR(o, [2, 5], 0.1), False),
    (["scheduler=onecycle"], lambda o: L.OneCycleLR(o, 0.1, total_steps=EPOCHS * STEPS, cycle_momentum=False), True),
    (["scheduler=cosine", "scheduler.warmup_epochs=2"], lambda o: L.SequentialLR(
        o, [L.LinearLR(o, 1 / 3, total_iters=2), L.CosineAnnealingLR(o, EPOCHS - 2)], [2]), False),
    (["scheduler=none", "scheduler.warmup_epochs=3"], lambda o: L.LinearLR(o, 1 / 4, total_iters=3), False),
], ids=["cosine", "step", "multistep", "onecycle", "cosine_warmup", "warmup_only"])
def test_lr_trace_equals_torch_scheduler(overrides, make, per_step):
    assert lr_trace(0.1, scheduler(*overrides), EPOCHS, STEPS) == torch_trace(make, per_step)


def test_cosine_trace_is_the_closed_form():
    trace = lr_trace(0.01, scheduler("scheduler=cosine", "scheduler.eta_min=0.001"), EPOCHS, STEPS)
    expected = [0.001 + 0.009 * (1 + math.cos(math.pi * e / EPOCHS)) / 2 for e in range(EPOCHS) for _ in range(STEPS)]
    assert trace == pytest.approx(expected, rel=1e-12)


def test_no_schedule_leaves_the_lr_alone():
    assert lr_trace(0.1, scheduler(), EPOCHS, STEPS) is None


class Seeded(Recorded):
    """test_batched's Recorded, its model given the image shape (for model=cnn)."""

    def __init__(self, s, seed: int):
        self.setup = s
        torch.manual_seed(seed)
        self.model = build_model(s.cfg.model, s.data.n_features, s.width, s.data.image_shape).to(s.dtype)
        self.optimizer = build_optimizer(s.cfg.optim, self.model.parameters())
        self.generator = torch.Generator().manual_seed(seed)
        self.metrics, self.steps, self.per_class, self.predictions = [], [], [], None


def small(dtype, *overrides):
    return setup(dtype, "trainer.log_every=1", *overrides)


def run_once(s, seed=0, recipe=Recipe(), optimizer=None):
    run = Seeded(s, seed)
    if optimizer is not None:
        run.optimizer = optimizer(run.model.parameters())
    outcome = train(run.seed_run(recipe))
    return run, outcome


def test_a_constant_schedule_trains_bit_for_bit_as_no_schedule():
    """scheduler=none leaves the optimizer's lr alone; a schedule that sets the same lr every step
    (step decay after the run's end) must change nothing either: the lr plumbing adds no arithmetic."""
    s = small(torch.float32)
    plain, _ = run_once(s)
    steady = compose_config("scheduler=step", "scheduler.step_size=100")
    same, _ = run_once(s, recipe=Recipe(steady.scheduler))
    assert largest_weight_difference(plain, same) == 0
    assert_rows_match(plain.metrics, same.metrics, 0)


def test_the_lr_of_every_step_and_epoch_is_recorded():
    s = small(torch.float64, "trainer.epochs=3", "optim=sgd", "optim.lr=0.1")
    cfg = compose_config("trainer.epochs=3", "scheduler=onecycle")
    run, _ = run_once(s, recipe=Recipe(cfg.scheduler))
    steps = math.ceil(len(s.data.x_train) / s.cfg.trainer.batch_size)
    trace = lr_trace(0.1, cfg.scheduler, 3, steps)
    assert [row["lr"] for row in run.steps] == [trace[row["step"] - 1] for row in run.steps]
    assert [row["lr"] for row in run.metrics if row["split"] == "train"] == [trace[e * steps - 1] for e in (1, 2, 3)]


class NormAtStep(torch.optim.SGD):
    """SGD that notes the total gradient norm it applies."""

    applied: list

    def step(self, closure=None):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        self.applied.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        return super().step(closure)


def test_clipping_bounds_the_applied_norm_and_logs_the_norm_before_it():
    s = small(torch.float32, "optim=sgd", "optim.lr=0.5", "trainer.grad_clip=0.3")
    NormAtStep.applied = []
    run, _ = run_once(s, optimizer=lambda params: NormAtStep(params, lr=0.5))
    logged = [row["grad_norm"] for row in run.steps]
    assert max(NormAtStep.applied) <= 0.3 * (1 + 1e-5)
    assert max(logged) > 0.3  # the logged norm is the one before clipping
    assert run.steps[-1]["clipped_steps"] == sum(norm > 0.3 for norm in logged) > 0


def test_nesterov_is_refused_without_momentum_before_data_loads():
    cfg = compose_config("optim=sgd", "optim.momentum=0", "optim.nesterov=true", "dataset.root=/nonexistent")
    with pytest.raises(ConfigError, match="optim.nesterov=true needs optim=sgd with optim.momentum > 0"):
        validate(cfg)


@pytest.mark.parametrize("overrides, message", [
    (["scheduler=multistep", "scheduler.milestones=[5,2]"], "scheduler.milestones=\\[5, 2\\] must be increasing"),
    (["scheduler=cosine", "scheduler.warmup_epochs=10", "trainer.epochs=10"], "scheduler.warmup_epochs=10"),
    (["trainer.grad_clip=0"], "trainer.grad_clip=0"),
    (["dataset=multilabel", "loss=bce_logits", "dataset.augment=[flip]"], "dataset.augment=\\['flip'\\] needs images"),
    (["model.init.conv=kaiming_uniform"], "model.init.conv=kaiming_uniform needs model=cnn"),
])
def test_recipe_knobs_refuse_values_a_run_cannot_use(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_config(*overrides))


def test_stacked_sgd_with_nesterov_is_torch_sgd_per_seed():
    generator = torch.Generator().manual_seed(0)
    alone = [torch.nn.Parameter(torch.randn(4, 3, dtype=torch.float64, generator=generator)) for _ in range(3)]
    optimizers = [torch.optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01) for p in alone]
    stacked = {"w": torch.stack([p.detach() for p in alone]).requires_grad_()}
    stacked_opt = stacked_optimizer(optimizers[0], stacked)
    for step in range(20):
        grads = torch.randn(3, 4, 3, dtype=torch.float64, generator=generator)
        for k, p in enumerate(alone):
            p.grad = grads[k]
            optimizers[k].param_groups[0]["lr"] = 0.1 / (step + 1)
            optimizers[k].step()
        stacked["w"].grad = grads
        stacked_opt.lr = 0.1 / (step + 1)
        stacked_opt.step(torch.ones(3, dtype=torch.bool))
    for k, p in enumerate(alone):
        torch.testing.assert_close(stacked["w"][k], p.detach(), rtol=0, atol=1e-14)


@pytest.mark.slow
def test_a_batched_seed_follows_its_sequential_runs_schedule_clipping_nesterov_and_augmentation():
    overrides = ("optim=sgd", "optim.lr=0.05", "optim.momentum=0.9", "optim.nesterov=true", "model=cnn",
                 "model.hidden=[16]", "model.channels=[4,4]", "trainer.grad_clip=0.05", "trainer.epochs=2",
                 "scheduler=cosine", "dataset.augment=[crop,flip]")
    s = setup(torch.float64, *overrides)
    data = dataclasses.replace(s.data, x_train=s.data.x_train[:256], y_train=s.data.y_train[:256])
    s = dataclasses.replace(s, data=data)
    recipe = Recipe.of(compose_config(*overrides))
    sequential = [run_once(s, seed, recipe)[0] for seed in SEEDS]
    batched = [Seeded(s, seed) for seed in SEEDS]
    train_runs([run.seed_run(recipe) for run in batched])
    for seq, bat in zip(sequential, batched):
        assert largest_weight_difference(seq, bat) < FLOAT64
        # relative: a clipped, barely trained CNN fits a temperature of ~1e4, equal to 1e-15 relative
        assert_rows_match(seq.metrics, bat.metrics, FLOAT64, relative=True)
        assert_rows_match(seq.steps, bat.steps, FLOAT64, relative=True)
    assert sequential[0].steps[-1]["clipped_steps"] > 0


def test_batch_norm_runs_one_job_at_a_time_under_the_batched_launcher():
    assert "model.batch_norm" in unstackable(compose_config("model=apl_cnn"))


class ConvBrunch(nn.Module):
    """The Active Passive Loss repository's models.py, as written there."""

    def __init__(self, in_planes, out_planes, kernel_size=3):
        super().__init__()
        padding = (kernel_size - 1) // 2
        self.out_conv = nn.Sequential(nn.Conv2d(in_planes, out_planes, kernel_size=kernel_size, padding=padding),
                                      nn.BatchNorm2d(out_planes), nn.ReLU())


class ToyModelMNIST(nn.Module):
    """models.py ToyModel(type='MNIST') of the Active Passive Loss repository."""

    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(ConvBrunch(1, 32, 3), nn.MaxPool2d(kernel_size=2, stride=2))
        self.block2 = nn.Sequential(ConvBrunch(32, 64, 3), nn.MaxPool2d(kernel_size=2, stride=2))
        self.fc1 = nn.Sequential(nn.Linear(64 * 7 * 7, 128), nn.BatchNorm1d(128), nn.ReLU())
        self.fc2 = nn.Linear(128, 10)


def test_the_apl_cnn_has_the_reference_models_parameters():
    ours = build_model(compose_config("model=apl_cnn").model, 784, 10, (1, 28, 28))
    reference = ToyModelMNIST()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters()) == 422_090
    assert [p.shape for p in ours.parameters()] == [p.shape for p in reference.parameters()]
    assert [b.shape for b in ours.buffers()] == [b.shape for b in reference.buffers()]


def test_initialisers_draw_kaiming_convs_and_xavier_linears_as_the_reference_does():
    torch.manual_seed(3)
    ours = build_model(compose_config("model=apl_cnn").model, 784, 10, (1, 28, 28))
    torch.manual_seed(3)
    reference = ToyModelMNIST()
    for m in reference.modules():  # ToyModel._reset_prams
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
    for p, q in zip(ours.parameters(), reference.parameters()):
        assert torch.equal(p, q)


def images(n=6, side=5, seed=0):
    return torch.randn(n, side * side, generator=torch.Generator().manual_seed(seed))


def test_augmentation_is_deterministic_per_seed():
    x = images()
    draw = lambda seed: augment(x, (1, 5, 5), ("crop", "flip"), 2, -1.0, torch.Generator().manual_seed(seed))
    assert torch.equal(draw(0), draw(0))
    assert not torch.equal(draw(0), draw(1))


def test_crop_is_a_padded_window_and_flip_mirrors():
    x = images()
    generator = torch.Generator().manual_seed(4)
    dy, dx = torch.randint(0, 5, (2, len(x)), generator=torch.Generator().manual_seed(4))
    cropped = augment(x, (1, 5, 5), ("crop",), 2, -9.0, generator).view(-1, 5, 5)
    padded = nn.functional.pad(x.view(-1, 5, 5), (2, 2, 2, 2), value=-9.0)
    for i in range(len(x)):
        assert torch.equal(cropped[i], padded[i, dy[i]:dy[i] + 5, dx[i]:dx[i] + 5])
    flipped = augment(x, (1, 5, 5), ("flip",), 0, 0.0, torch.Generator().manual_seed(1)).view(-1, 5, 5)
    mirrored = [torch.equal(flipped[i], x.view(-1, 5, 5)[i].flip(-1)) for i in range(len(x))]
    kept = [torch.equal(flipped[i], x.view(-1, 5, 5)[i]) for i in range(len(x))]
    assert all(m or k for m, k in zip(mirrored, kept)) and any(mirrored) and any(kept)


def test_augmentation_touches_training_batches_only(monkeypatch):
    s = small(torch.float32, "model=cnn", "model.hidden=[8]", "model.channels=[2,2]")
    seen = []

    def spy(x, *args):
        seen.append(x.clone())
        return x

    monkeypatch.setattr("lossbench.training.recipe.augment", spy)
    run_once(s, recipe=Recipe(augment=("flip",)))
    train_rows = {tuple(row) for row in s.data.x_train.tolist()}
    assert len(seen) == math.ceil(len(s.data.x_train) / s.cfg.trainer.batch_size)
    assert all(tuple(row) in train_rows for batch in seen for row in batch.tolist())
    assert sum(len(batch) for batch in seen) == len(s.data.x_train)


def test_versus_published_puts_each_cell_beside_the_published_one():
    runs = pd.DataFrame({"cfg.loss.name": ["ce"] * 3 + ["mae"] * 3, "loss": ["ce"] * 3 + ["mae(scale=1)"] * 3,
                         "cfg.dataset.noise_kind": "symmetric",
                         "cfg.dataset.label_noise": 0.4, "data_source": "sample", "seed": [0, 1, 2] * 2,
                         "test_acc": [0.94, 0.95, 0.96, 0.5, 0.6, 0.7]})
    published = pd.DataFrame({"loss": ["ce", "mae", "nce"], "noise_kind": "symmetric", "label_noise": 0.4,
                              "acc_mean_pct": [94.21, 99.06, 11.35], "acc_std_pct": [0.54, 0.02, 0.0]})
    table = versus(runs, published).set_index("loss")
    assert list(table.index) == ["ce", "mae(scale=1)"]
    assert table.loc["ce", "lossbench_mean"] == pytest.approx(95.0)
    assert table.loc["ce", "difference"] == pytest.approx(95.0 - 94.21)
    assert table.loc["ce", "published_in_ci"] and not table.loc["mae(scale=1)", "published_in_ci"]


def test_one_seed_beside_the_published_table_says_it_has_no_interval():
    from lossbench.report.published import _display

    runs = pd.DataFrame({"cfg.loss.name": ["ce"], "loss": ["ce"], "cfg.dataset.noise_kind": "symmetric",
                         "cfg.dataset.label_noise": 0.4, "data_source": "sample", "seed": [0], "test_acc": [0.933]})
    published = pd.DataFrame({"loss": ["ce"], "noise_kind": "symmetric", "label_noise": 0.4,
                              "acc_mean_pct": [94.21], "acc_std_pct": [0.54]})
    shown = _display(versus(runs, published)).iloc[0]
    assert shown["lossbench mean [95% CI]"] == "93.30 (one seed: no interval)"
    assert shown["published in CI"] == "n/a (1 seed)"


def test_the_apl_preset_composes_to_the_papers_setting():
    cfg = compose_config("experiment=apl_mnist")
    assert OmegaConf.to_container(cfg.optim) == {"name": "sgd", "lr": 0.01, "weight_decay": 0.01, "momentum": 0.9,
                                                 "nesterov": True}
    assert (cfg.scheduler.name, cfg.scheduler.eta_min, cfg.trainer.epochs, cfg.trainer.batch_size,
            cfg.trainer.grad_clip, cfg.dataset.val_fraction, list(cfg.dataset.augment), cfg.published) == (
        "cosine", 0.001, 50, 128, 5.0, 0.0, [], "apl_mnist")
    validate(cfg)


def test_a_crop_pad_as_wide_as_the_image_is_refused_before_data_loads():
    with pytest.raises(ConfigError, match=r"dataset.crop_pad=28 must be smaller than the images' side \(28\)"):
        validate(compose_config("dataset.augment=[crop]", "dataset.crop_pad=28"))
    validate(compose_config("dataset.augment=[crop]", "dataset.crop_pad=27"))
