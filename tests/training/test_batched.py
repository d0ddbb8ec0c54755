"""Seeds trained as one stack: seed s of a batched run is the sequential run of seed s (float64 to
1e-10, float32 to a stated tolerance), a seed that diverges stops alone, the stacked optimisers
are torch.optim's, and `hydra/launcher=batched` writes the basic launcher's run directories."""

import dataclasses
import json
import shutil

import pandas as pd
import pytest
import torch

from conftest import compose_config, run_sweep
from hydra_plugins.lossbench_batched_launcher.batched_launcher import seed_groups
from lossbench.training.batched import unstackable
from lossbench.data import load_dataset
from lossbench.losses import LOSSES, TrainingLabels, head_width, loss_params
from lossbench.training.metrics import TIMINGS
from lossbench.training.model import build_model
from lossbench.training.optim import build_optimizer
from lossbench.training.stacked_optim import stacked_optimizer
from lossbench.training.recipe import Recipe
from lossbench.training.train import Run, train, train_runs

CPU = torch.device("cpu")
SEEDS = (0, 1, 2)
# A quarter of the MNIST sample's training set keeps each comparison to seconds.
TRAIN, TEST = 1024, 256
# Measured after one epoch on the MNIST sample (MLP 784-32-10, 63 steps), seed by seed: in float32
# the stack's batched matmuls round differently from nn.Linear's, by up to 3.5e-7 in a weight,
# 1e-7 in a metric and 1e-5 (relative) in a logged gradient norm. Stated with headroom:
FLOAT32_WEIGHTS, FLOAT32_METRICS, FLOAT32_SIGNALS = 2e-6, 1e-6, 1e-4
# In float64 the same differences are ~1e-15.
FLOAT64 = 1e-10


@dataclasses.dataclass
class Setup:
    cfg: object
    data: object
    spec: object
    criterion: object
    width: int
    dtype: torch.dtype


def setup(dtype, *overrides):
    """One configuration as run.py builds it, its data in `dtype` (float64 is a test-only switch)."""
    cfg = compose_config("dataset.source=sample", "model.hidden=[32]", "trainer.epochs=1", *overrides)
    data = load_dataset(cfg.dataset)
    # the pixels standardised up front, in `dtype`
    data = dataclasses.replace(data, x_train=data.inputs(data.x_train[:TRAIN]).to(dtype), y_train=data.y_train[:TRAIN],
                               x_test=data.inputs(data.x_test[:TEST]).to(dtype), y_test=data.y_test[:TEST],
                               x_val=data.inputs(data.x_val).to(dtype), pixel_stats=None)
    spec = LOSSES[cfg.loss.name]
    width = head_width(spec, data.task, data.n_classes)
    criterion, _ = spec.build(loss_params(cfg.loss), TrainingLabels(data.y_train, data.n_classes, width))
    return Setup(cfg, data, spec, criterion.to(dtype), width, dtype)


class Recorded:
    """A seed's model, optimiser and generator as run.py makes them, and what on_epoch hands out."""

    def __init__(self, s: Setup, seed: int, sabotage: float = 1.0):
        self.setup = s
        torch.manual_seed(seed)
        self.model = build_model(s.cfg.model, s.data.n_features, s.width).to(s.dtype)
        with torch.no_grad():  # a seed whose weights are scaled by `sabotage`: a way to diverge alone
            for p in self.model.parameters():
                p.mul_(sabotage)
        self.optimizer = build_optimizer(s.cfg.optim, self.model.parameters())
        self.generator = torch.Generator().manual_seed(seed)
        self.metrics, self.steps, self.per_class, self.predictions = [], [], [], None

    def on_epoch(self, rows, calibration, steps, per_class=(), predictions=None):
        self.metrics += rows
        self.steps += steps
        self.per_class += per_class
        self.predictions = predictions if predictions is not None else self.predictions

    def seed_run(self, recipe: Recipe = Recipe()) -> Run:
        s = self.setup
        return Run(self.model, self.optimizer, self.generator, self.on_epoch, s.spec, s.criterion, s.data,
                   s.cfg.trainer, CPU, recipe)


def sequential_and_batched(s: Setup, sabotage=None):
    sabotage = sabotage or {}
    sequential, outcomes = [], []
    for seed in SEEDS:
        run = Recorded(s, seed, sabotage.get(seed, 1.0))
        outcomes.append(train(run.seed_run()))
        sequential.append(run)
    batched = [Recorded(s, seed, sabotage.get(seed, 1.0)) for seed in SEEDS]
    finished = []
    batched_outcomes = train_runs([run.seed_run() for run in batched], lambda index, outcome: finished.append(index))
    return sequential, outcomes, batched, batched_outcomes, finished


def largest_weight_difference(a: Recorded, b: Recorded) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.model.parameters(), b.model.parameters()))


def assert_rows_match(rows_a, rows_b, tol, relative=False, skip=TIMINGS):
    assert len(rows_a) == len(rows_b)
    for a, b in zip(rows_a, rows_b):
        assert a.keys() == b.keys()
        for key in a:
            if key in skip:
                continue
            if isinstance(a[key], float):
                assert b[key] == pytest.approx(a[key], rel=tol if relative else 0, abs=0 if relative else tol,
                                               nan_ok=True), key
            else:
                assert a[key] == b[key], key


@pytest.mark.parametrize("overrides", [(), ("optim=sgd", "optim.momentum=0.9", "optim.lr=0.05")],
                         ids=["adam", "sgd_momentum"])
def test_seed_s_of_a_batched_run_is_its_sequential_run_in_float64(overrides):
    s = setup(torch.float64, *overrides)
    sequential, outcomes, batched, batched_outcomes, _ = sequential_and_batched(s)
    assert batched_outcomes == outcomes
    for seq, bat in zip(sequential, batched):
        assert largest_weight_difference(seq, bat) < FLOAT64
        assert_rows_match(seq.metrics, bat.metrics, FLOAT64)
        assert_rows_match(seq.steps, bat.steps, FLOAT64, relative=True)
    # the seeds really differ: a stack that trained one seed K times would pass the above for seed 0
    assert largest_weight_difference(batched[0], batched[1]) > 1e-3


def test_seed_s_of_a_batched_run_matches_its_sequential_run_in_float32():
    s = setup(torch.float32)
    sequential, outcomes, batched, batched_outcomes, _ = sequential_and_batched(s)
    assert batched_outcomes == outcomes
    for seq, bat in zip(sequential, batched):
        assert largest_weight_difference(seq, bat) < FLOAT32_WEIGHTS
        assert_rows_match(seq.metrics, bat.metrics, FLOAT32_METRICS)
        assert_rows_match(seq.steps, bat.steps, FLOAT32_SIGNALS, relative=True)


def test_a_batched_seed_reports_val_rows_and_both_prediction_views_as_its_sequential_run():
    s = setup(torch.float64, "trainer.epochs=2")
    sequential, _, batched, _, _ = sequential_and_batched(s)
    for seq, bat in zip(sequential, batched):
        assert [(r["epoch"], r["split"]) for r in bat.metrics] == [
            (epoch, split) for epoch in (1, 2) for split in ("train", "val", "test")]
        assert_rows_match(seq.metrics, bat.metrics, FLOAT64)
        assert set(bat.predictions["view"]) == {"last", "selected"}
        pd.testing.assert_frame_equal(pd.DataFrame(seq.predictions), pd.DataFrame(bat.predictions))


@pytest.fixture
def no_first_batch_check(monkeypatch):
    """The first-batch mistake check refuses a sabotaged seed's non-finite logits before training
    (in the sequential and the stacked loop alike); switched off to reach the loop's handling."""
    monkeypatch.setattr("lossbench.training.train.check_loss_inputs", lambda *args: None)


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_a_diverging_seed_stops_alone(loss, no_first_batch_check):
    """Seed 1's weights start at 1e30 times their value: its logits overflow at once. It stops,
    diverged, with the sequential run's message and rows (for bce: BCELoss refusing the NaN
    sigmoids of its next step); seeds 0 and 2 train on as if alone."""
    s = setup(torch.float32, f"loss={loss}", "trainer.log_every=5")
    sequential, outcomes, batched, batched_outcomes, finished = sequential_and_batched(s, {1: 1e30})
    assert [o.status for o in batched_outcomes] == ["completed", "diverged", "completed"]
    assert batched_outcomes == outcomes  # the diverged seed's message and step included
    assert finished[0] == 1  # handed back before the others finished
    assert_rows_match(sequential[1].steps, batched[1].steps, FLOAT32_SIGNALS, relative=True)
    for seed in (0, 2):
        assert largest_weight_difference(sequential[seed], batched[seed]) < FLOAT32_WEIGHTS
        assert_rows_match(sequential[seed].metrics, batched[seed].metrics, FLOAT32_METRICS)


def test_on_nonfinite_skip_skips_the_steps_of_that_seed_alone(no_first_batch_check):
    s = setup(torch.float32, "trainer.on_nonfinite=skip", "trainer.log_every=5")
    sequential, outcomes, batched, batched_outcomes, _ = sequential_and_batched(s, {1: 1e30})
    assert [o.skipped_steps for o in batched_outcomes] == [0, TRAIN // 64, 0]
    assert batched_outcomes == outcomes
    assert_rows_match(sequential[1].steps, batched[1].steps, FLOAT32_SIGNALS, relative=True)
    for seed in (0, 2):
        assert largest_weight_difference(sequential[seed], batched[seed]) < FLOAT32_WEIGHTS


@pytest.mark.parametrize("make", [
    lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=0.1),
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
    lambda ps: torch.optim.SGD(ps, lr=0.1),
], ids=["adam", "sgd_momentum", "sgd"])
def test_stacked_optimizers_are_torch_optim_per_seed_with_skipped_steps(make):
    """K torch optimisers, each stepping only where its seed's mask says so, against one stacked
    optimiser masked the same way: per-seed step counts (Adam's bias correction) and momentum
    buffers that start at a seed's first step taken."""
    generator = torch.Generator().manual_seed(0)
    seeds, shapes = 4, [(5, 3), (5,)]
    alone = [[torch.nn.Parameter(torch.randn(shape, dtype=torch.float64, generator=generator)) for shape in shapes]
             for _ in range(seeds)]
    optimizers = [make(params) for params in alone]
    stacked = {str(i): torch.stack([params[i].detach() for params in alone]).requires_grad_() for i in range(len(shapes))}
    stacked_opt = stacked_optimizer(optimizers[0], stacked)
    for _ in range(30):
        take = torch.rand(seeds, generator=generator) > 0.4
        grads = [[torch.randn(shape, dtype=torch.float64, generator=generator) for shape in shapes] for _ in range(seeds)]
        for k in range(seeds):
            if take[k]:
                for p, g in zip(alone[k], grads[k]):
                    p.grad = g
                optimizers[k].step()
        for i, name in enumerate(stacked):
            stacked[name].grad = torch.stack([grads[k][i] for k in range(seeds)])
        stacked_opt.step(take)
    for k in range(seeds):
        for i, name in enumerate(stacked):
            torch.testing.assert_close(stacked[name][k], alone[k][i].detach(), rtol=0, atol=1e-14)


def test_dropout_and_reduced_precision_are_not_stacked():
    """What one stack cannot reproduce runs job by job: dropout masks drawn from the global RNG,
    and autocast, which under vmap leaves a Linear's bias in float32 (the logits come out float32)."""
    assert "dropout" in unstackable(compose_config("model.dropout=0.1"))
    assert "precision" in unstackable(compose_config("trainer.precision=16"))
    assert "early_stop_patience" in unstackable(compose_config("trainer.early_stop_patience=2"))
    assert unstackable(compose_config()) is None


def test_jobs_are_grouped_by_everything_but_the_seed():
    jobs = [["loss=ce", "seed=0"], ["loss=bce", "seed=0"], ["loss=ce", "seed=1"], ["loss=bce", "seed=1"], ["loss=mae"]]
    assert seed_groups(jobs) == [[0, 2], [1, 3], [4]]


def test_an_error_in_the_stack_reaches_every_seed_and_not_the_sweep():
    """Each seed's job gets what the stacked training raised (here: an optimiser it cannot stack)
    where it handed its training over, and records it as its own; the group then returns."""
    from hydra_plugins.lossbench_batched_launcher.batched_launcher import Seed, train_group
    from lossbench.signals import StopFlag

    s = setup(torch.float32)
    seen, ended = {}, {}

    def job(seed):
        run = Recorded(s, seed)
        run.optimizer = torch.optim.RMSprop(run.model.parameters())
        try:
            yield run.seed_run()
        except ValueError as error:
            seen[seed] = str(error)
        return seed

    seeds = []
    for seed in SEEDS:
        stages = job(seed)
        seeds.append(Seed(f"seed={seed}", stages, next(stages),
                          lambda returned, error, seed=seed: ended.__setitem__(seed, (returned, error))))
    train_group(seeds, StopFlag())
    assert ended == {seed: (seed, None) for seed in SEEDS}
    assert set(seen) == set(SEEDS) and all("RMSprop" in text for text in seen.values())


# --- the launcher ---------------------------------------------------------------------------


def run_files(sweep):
    return {p.relative_to(sweep) for p in sweep.glob("*/*") if p.is_file()}


@pytest.mark.slow
def test_the_batched_launcher_writes_the_basic_launchers_runs(smoke_sweep, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_sweep("smoke", sweep, "hydra/launcher=batched")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "batched: 2 seeds trained as one stack" in result.stdout
    assert run_files(sweep) == run_files(smoke_sweep.dir)  # same run dirs, same files in each
    batched = pd.read_parquet(sweep / "summary.parquet").set_index("run").sort_index()
    basic = pd.read_parquet(smoke_sweep.dir / "summary.parquet").set_index("run").sort_index()
    assert list(batched.columns) == list(basic.columns)
    assert (batched["status"] == "completed").all()
    for column in ("test_acc", "test_loss_value", "test_ece"):
        assert batched[column].to_numpy() == pytest.approx(basic[column].to_numpy(), abs=FLOAT32_METRICS)
    for run in basic.index:
        for table in ("metrics.parquet", "steps.parquet", "calibration.parquet"):
            a, b = pd.read_parquet(smoke_sweep.dir / run / table), pd.read_parquet(sweep / run / table)
            assert a.dtypes.to_dict() == b.dtypes.to_dict(), (run, table)
        summary = json.loads((sweep / run / "summary.json").read_text())
        assert summary["config"] == json.loads((smoke_sweep.dir / run / "summary.json").read_text())["config"]
        assert "epoch 1/1" in (sweep / run / "lossbench.log").read_text()


@pytest.mark.slow
def test_the_batched_launcher_resumes_only_the_unfinished_seeds(smoke_sweep, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(smoke_sweep.dir, sweep)  # finished by the basic launcher: reused as they are
    unfinished = "loss=ce,model.hidden=[32],seed=1"
    (sweep / unfinished / "summary.json").unlink()
    untouched = {p: p.stat().st_mtime_ns for p in sweep.glob("*/summary.json")}
    result = run_sweep("smoke", sweep, "hydra/launcher=batched")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 ran, 3 skipped" in result.stdout
    assert json.loads((sweep / unfinished / "summary.json").read_text())["status"] == "completed"
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched
