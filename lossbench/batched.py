"""K seeds of one configuration trained as one stacked model.

A model this small leaves the CPU (and more so a GPU) waiting on per-step overhead; stacking the
seeds' weights (seed first: (K, ...)) turns K small matmuls into one batched one. Each seed keeps
what makes it that seed: its initialisation (its model is built by run.py after
torch.manual_seed(seed)), its data order (its own generator, one randperm per epoch as train.py
draws it), its optimiser state (lossbench.stacked_optim) and its stability signals. A seed whose
loss or gradient goes non-finite stops alone (or has its steps skipped alone); the others go on.
Each seed reports through its own `on_epoch` the same rows train.py reports, evaluated by
train.py's `epoch_records` on that seed's model, so its run directory is written as a sequential run's.

What is per seed needs no host sync per step: losses, gradient norms and the non-finite counters
are (K,) tensors on the device, read where train.py reads them (every `log_every` steps).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm import tqdm

from lossbench.data import Dataset
from lossbench.losses import LossSpec
from lossbench.recipe import Recipe
from lossbench.selection import SelectionSoFar
from lossbench.stacked_optim import stacked_optimizer
from lossbench.train import (Outcome, RunningTally, Signals, autocast, encoded_and_checked, epoch_records,
                             per_class_inputs)

BCE_REFUSAL = "should be between 0 and 1"
EARLY_STOP_UNSTACKABLE = ("each seed would stop at its own epoch, and the stack trains its seeds through "
                          "every epoch together")


@dataclass
class SeedRun:
    """The arguments of train.train that differ from seed to seed."""

    model: nn.Module  # built after torch.manual_seed(seed); ends holding the seed's final weights
    optimizer: torch.optim.Optimizer  # its hyperparameters are what the stacked optimiser uses
    generator: torch.Generator  # the seed's data order
    on_epoch: Callable[..., None]  # (rows, reliability tables, step rows, per-class rows, test predictions)


class StackedSignals(Signals):
    """Signals with one entry per seed; each seed's rows and messages come from its own Signals,
    given its counters."""

    def __init__(self, spec: LossSpec, device: torch.device, seeds: int):
        super().__init__(spec, device, no_scaler(device), (seeds,))
        self.skipped_per_seed = torch.zeros(seeds, dtype=torch.long, device=device)

    def of_seed(self, position: int, signals: Signals) -> Signals:
        self.tally()
        signals.bad_loss, signals.bad_grad = self.bad_loss[position], self.bad_grad[position]
        signals.first_bad, signals.first_bad_loss = self.first_bad[position], self.first_bad_loss[position]
        signals.clipped, signals.lr = self.clipped[position], self.lr
        signals.skipped = int(self.skipped_per_seed[position])
        return signals

    def refused_at(self, positions: list[int], step: int) -> None:
        """Signals.refused for the seeds at `positions` only."""
        self.tally()
        mask = torch.zeros_like(self.first_bad, dtype=torch.bool)
        mask[positions] = True
        self.first_bad = torch.where(mask & (self.first_bad < 0), step, self.first_bad)
        self.first_bad_loss = torch.where(mask & (self.first_bad_loss < 0), step, self.first_bad_loss)

    def log_seeds(self, step: int, epoch: int, loss: Tensor, grad_norm: Tensor, logits: Tensor,
                  own: list[Signals]) -> None:
        """A row for every seed in the stack (own[position] keeps it), all read in one go."""
        self.tally()
        reads = torch.cat([self.readings(loss, grad_norm, logits), self.skipped_per_seed.double()[None]])
        for signals, read in zip(own, reads.T.tolist()):
            signals.rows.append(self.row(step, epoch, read[:-1], int(read[-1])))

    def keep(self, positions: Tensor) -> None:
        self.tally()
        self.bad_loss, self.bad_grad = self.bad_loss[positions], self.bad_grad[positions]
        self.first_bad, self.skipped_per_seed = self.first_bad[positions], self.skipped_per_seed[positions]
        self.first_bad_loss = self.first_bad_loss[positions]
        self.scaler_skipped, self.clipped = self.scaler_skipped[positions], self.clipped[positions]
        self.window = None  # its next steps have fewer seeds


def no_scaler(device: torch.device) -> torch.amp.GradScaler:
    """A disabled GradScaler: stacks run in float32 (unstackable refuses the rest), never scaled."""
    return torch.amp.GradScaler(device.type, enabled=False)


def unstackable(cfg: Any) -> Optional[str]:
    """Why the seeds of this configuration (a job's config, hydra node included) cannot be trained
    as one stack and match their sequential runs, or None if they can."""
    from lossbench.model import unstackable_model

    model_reason = unstackable_model(cfg.model)
    if model_reason:
        return model_reason
    if OmegaConf.is_interpolation(cfg.dataset, "split_seed"):
        return ("dataset.split_seed follows another key (which_loss: ${seed}): each seed trains on its "
                "own split, and a stack trains its seeds on one")
    if cfg.model.dropout > 0:
        return ("model.dropout > 0: a sequential run draws its dropout masks from the global RNG, "
                "which one stack cannot replay seed by seed")
    if cfg.trainer.precision.name != "32":
        return (f"trainer.precision={cfg.trainer.precision.name}: under vmap, autocast leaves "
                "nn.Linear's bias in float32, so the stack would not compute in the sequential run's precision")
    if OmegaConf.select(cfg, "hydra.job.chdir", default=False):
        return "hydra.job.chdir=true: each run changes the process's working directory"
    if cfg.trainer.early_stop_patience is not None:
        return f"trainer.early_stop_patience={cfg.trainer.early_stop_patience}: {EARLY_STOP_UNSTACKABLE}"
    if cfg.model.batch_norm:
        return ("model.batch_norm=true: each seed's BatchNorm updates its running statistics in place, "
                "which a vmapped stack cannot do seed by seed")
    return None


def stacked_grad_norm(params: dict[str, Tensor]) -> Tensor:
    """Each seed's total gradient norm, as torch.nn.utils.get_total_norm computes one model's."""
    per_param = [torch.linalg.vector_norm(p.grad.flatten(1), dim=1) for p in params.values()]
    return torch.linalg.vector_norm(torch.stack(per_param, dim=1), dim=1)


@torch.no_grad()
def clip_stacked(params: dict[str, Tensor], max_norm: float, grad_norm: Tensor) -> None:
    """torch.nn.utils.clip_grads_with_norm_ for each seed: its gradients times
    min(1, max_norm / (its norm + 1e-6)), the same operations in the same dtype."""
    coefficient = (max_norm / (grad_norm + 1e-6)).clamp(max=1.0)
    for p in params.values():
        p.grad.mul_(coefficient.view(-1, *[1] * (p.grad.dim() - 1)))


def train_seeds(
    runs: list[SeedRun],
    spec: LossSpec,
    criterion: nn.Module,
    data: Dataset,
    trainer: Any,
    device: torch.device,
    finished: Callable[[int, Outcome], None] = lambda index, outcome: None,
    stop_requested: Callable[[], bool] = lambda: False,
    recipe: Recipe = Recipe(),
) -> list[Outcome]:
    """Train runs[k] as train.train would, all in one stack. `finished(k, outcome)` is called as
    soon as seed k ends (diverged seeds before the others); the outcomes are returned in order."""
    precision, skip_nonfinite = trainer.precision.name, trainer.on_nonfinite.name == "skip"
    if trainer.early_stop_patience is not None:
        raise ValueError(f"train_seeds cannot stop seeds early: {EARLY_STOP_UNSTACKABLE}")
    x, y, y_test, y_val = encoded_and_checked(runs[0].model, spec, criterion, data, trainer.batch_size, device,
                                              precision)
    n, batch, log_every = len(x), trainer.batch_size, trainer.log_every
    total_steps = trainer.epochs * math.ceil(n / batch)

    params, buffers = stack_module_state([run.model for run in runs])
    optimizer = stacked_optimizer(runs[0].optimizer, params)
    lrs = recipe.lrs(optimizer.lr, trainer.epochs, math.ceil(n / batch))
    fill, clip = recipe.fill(x), trainer.grad_clip
    # The stacked weights are handed in at each call; the base only lends its structure.
    base = copy.deepcopy(runs[0].model).to("meta")
    logits_of = vmap(lambda p, b, xb: functional_call(base, (p, b), (xb,)))
    loss_of = vmap(lambda logits, yb: criterion(spec.activation(logits), yb))

    live = list(range(len(runs)))  # live[position in the stack] = index into runs
    outcomes: list[Optional[Outcome]] = [None] * len(runs)
    signals = StackedSignals(spec, device, len(runs))
    tally = (RunningTally(spec, data.task, device, (len(runs),)) if trainer.train_metrics.name == "running"
             else None)
    signals.lr = optimizer.lr
    own_signals = [Signals(spec, device, no_scaler(device)) for _ in runs]
    condition_inputs = per_class_inputs(data)
    selections = [SelectionSoFar() for _ in runs]
    every_seed = torch.ones(len(runs), dtype=torch.bool, device=device)
    step, epoch = 0, 0
    loss = grad_norm = logits = None
    orders = torch.empty(0)  # this epoch's data order, one row per live seed

    def copy_weights(position: int) -> None:
        with torch.no_grad():
            for name, p in runs[live[position]].model.named_parameters():
                p.copy_(params[name][position])

    def end(positions: list[int], status: str, message: Callable[[Signals], Optional[str]],
            at_step: int) -> Tensor:
        """Seeds at `positions` end here, as train.py's `end` ends a run; the stack drops them.
        Returns the positions kept."""
        nonlocal params, buffers, every_seed, orders, live, loss, grad_norm, logits
        for position in positions:
            index = live[position]
            seed_signals = signals.of_seed(position, own_signals[index])
            if not seed_signals.rows or seed_signals.rows[-1]["step"] != at_step:
                seed_signals.log(at_step, epoch, None if loss is None else loss[position],
                                 None if grad_norm is None else grad_norm[position], logits[position])
            copy_weights(position)
            runs[index].on_epoch([], [], seed_signals.flush())
            outcomes[index] = Outcome(status, epoch - 1, message(seed_signals), seed_signals.skipped, 0,
                                      *seed_signals.first_nonfinite())
            finished(index, outcomes[index])
        kept = [p for p in range(len(live)) if p not in positions]
        keep = torch.tensor(kept, dtype=torch.long, device=device)
        params = {name: p.detach()[keep].requires_grad_() for name, p in params.items()}
        buffers = {name: b[keep] for name, b in buffers.items()}
        optimizer.params = params
        optimizer.keep(keep)
        signals.keep(keep)
        if tally is not None:
            tally.keep(keep)
        every_seed, orders, live = every_seed[keep], orders[keep], [live[p] for p in kept]
        loss, grad_norm, logits = (None if t is None else t.detach()[keep] for t in (loss, grad_norm, logits))
        return keep

    def forward(xb: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
        """This step's logits and per-seed losses; a seed whose weights went non-finite since the
        last signal read makes BCELoss refuse its input: it ends diverged and the rest retry."""
        nonlocal logits
        while True:
            with autocast(device, precision):
                logits = logits_of(params, buffers, xb)
                try:
                    return logits, loss_of(logits, y[idx])
                except RuntimeError as error:
                    if BCE_REFUSAL not in str(error):
                        raise
                    inputs = spec.activation(logits.detach()).flatten(1)
                    refused = (~((inputs >= 0) & (inputs <= 1)).all(dim=1)).nonzero().flatten().tolist()
                    refusal = str(error)
                    signals.refused_at(refused, step + 1)
                    keep = end(refused, "diverged", lambda s: (
                        f"BCELoss refused its input at step {step + 1} ({refusal}): its sigmoid outputs "
                        f"were NaN because the weights had gone non-finite; {s.divergence()}"), step + 1)
                    if not live:
                        return logits, None
                    xb, idx = xb[keep], idx[keep]

    bar = tqdm(total=total_steps, disable=None, unit="step", leave=False)
    try:
        for epoch in range(1, trainer.epochs + 1):
            base.train()
            orders = torch.stack([torch.randperm(n, generator=runs[index].generator) for index in live]).to(device)
            started = time.perf_counter()
            for start in range(0, n, batch):
                loss = grad_norm = None
                if lrs is not None:
                    optimizer.lr = signals.lr = lrs[step]
                idx = orders[:, start : start + batch]
                # each seed's batch augmented from its own generator, as its sequential run draws it
                xb = torch.stack([recipe.batch(x[idx[position]], data.image_shape, fill, runs[index].generator)
                                  for position, index in enumerate(live)]) if recipe.augment else x[idx]
                logits, loss = forward(xb, idx)
                if not live:
                    return outcomes
                if tally is not None:
                    tally.add(loss, logits, data.y_train[orders[:, start : start + batch]])
                for p in params.values():
                    p.grad = None
                loss.sum().backward()  # seeds share no weights: each gets its own loss's gradient
                grad_norm = stacked_grad_norm(params)
                if clip is not None:
                    clip_stacked(params, clip, grad_norm)
                    signals.clipped += grad_norm > clip
                step += 1
                signals.observe(step, loss, grad_norm)
                if skip_nonfinite:
                    bad = signals.bad_now()
                    signals.skipped_per_seed += bad
                    optimizer.step(~bad)
                else:
                    optimizer.step(every_seed)
                if step % log_every == 0 or start + batch >= n:
                    bar.update(step - bar.n)
                    signals.log_seeds(step, epoch, loss, grad_norm, logits, [own_signals[index] for index in live])
                    if not skip_nonfinite:
                        diverged = (signals.first_bad > 0).nonzero().flatten().tolist()
                        if diverged:
                            end(diverged, "diverged", Signals.divergence, step)
                            if not live:
                                return outcomes
                if stop_requested():
                    end(list(range(len(live))), "interrupted", lambda s: "interrupted by the user", step)
                    return outcomes
            if device.type == "cuda":
                torch.cuda.synchronize()
            # One stacked epoch trained every live seed: each is charged its share of the wall time.
            seconds = (time.perf_counter() - started) / len(live)
            running = [None] * len(live) if tally is None else tally.rows()
            for position, index in enumerate(live):
                copy_weights(position)
                model = runs[index].model
                rows, table, per_class, predictions = epoch_records(
                    model, spec, criterion, data, (x, y, y_test, y_val), condition_inputs, epoch, seconds, device,
                    precision, selections[index], running[position])
                rows[0]["lr"] = signals.lr  # the train row, as train.py records it
                runs[index].on_epoch(rows, table, own_signals[index].flush(), per_class, predictions)
    finally:
        bar.close()
    for position, index in enumerate(live):
        seed_signals = signals.of_seed(position, own_signals[index])
        outcomes[index] = Outcome("completed", trainer.epochs, None, seed_signals.skipped, 0,
                                  *seed_signals.first_nonfinite())
        finished(index, outcomes[index])
    return outcomes
