"""The training loop, one for a single run and for the seeds of a stack (`train_runs`). Everything
a run needs (its model, optimiser, generator, the loss spec, the data as tensors, the knobs) is
handed to it as one `Run`; it hands back plain records through the run's `on_epoch`. The step
policy (observe, skip or diverge, log, stop) and the epoch's evaluation are written once, over
tensors with a leading run axis; what differs is who holds the weights: `OneModel` (the model
itself, torch's optimiser: a single run computes exactly what a plain PyTorch loop does) or
lossbench.training.batched's `Stack`.

No host sync per step: the running counters stay on the device and are read every
`log_every` steps (and at epoch ends). Only `on_nonfinite=skip` syncs each step, and so does
`trainer.loss_scaling=dynamic`: torch's GradScaler.step reads its found-inf flag on the host to
decide whether to skip the update.
"""

from __future__ import annotations

import dataclasses
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from lossbench.training import metrics, predictions, temperature
from lossbench.checks import check_loss_inputs
from lossbench.data import Dataset
from lossbench.losses import LossSpec, Probabilities, Task, encode_targets, head_width, probabilities
from lossbench.training.recipe import Recipe
from lossbench.training.selection import SelectionSoFar, selection_metric
from lossbench.signals import StopFlag

EVAL_CHUNK = 8192
AUTOCAST = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}


@dataclass
class Outcome:
    status: str  # completed | interrupted | diverged
    epochs_completed: int
    message: Optional[str] = None
    skipped_steps: int = 0
    scaler_skipped_steps: int = 0
    first_nonfinite_step: Optional[int] = None  # the first step whose loss or gradient was not finite
    first_nonfinite: Optional[str] = None  # which of the two it was: loss | gradient
    stopped_early: bool = False  # trainer.early_stop_patience ended a completed run


def autocast(device: torch.device, precision: str):
    dtype = AUTOCAST[precision]
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def saturated(spec: LossSpec, logits: torch.Tensor) -> torch.Tensor:
    """Outputs that have rounded to their limit in the working dtype: sigmoids at exactly 0 or 1,
    softmax probabilities at exactly 0. There the loss's gradient is lost or clamped."""
    if spec.probabilities == Probabilities.sigmoid:
        p = torch.sigmoid(logits)
        return (p == 0) | (p == 1)
    return torch.softmax(logits, dim=-1) == 0


@torch.no_grad()
def forward(model, spec, criterion, x, y_enc, device, precision,
            inputs: Callable[[Tensor], Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's logits on x in eval mode, chunk by chunk, and the criterion's sum over x
    (None without targets). `inputs` turns rows of x into what the model takes (Dataset.inputs)."""
    model.eval()
    logits, loss_sum = [], torch.zeros((), device=device)
    with autocast(device, precision):
        for start in range(0, len(x), EVAL_CHUNK):
            chunk = model(inputs(x[start : start + EVAL_CHUNK]))
            if y_enc is not None:
                loss_sum += criterion(spec.activation(chunk), y_enc[start : start + len(chunk)]).float() * len(chunk)
            logits.append(chunk)
    return torch.cat(logits), loss_sum


def evaluate(model, spec, criterion, x, y_enc, labels: np.ndarray, task, device,
             precision, inputs: Callable[[Tensor], Tensor]) -> tuple[dict, list, np.ndarray, torch.Tensor]:
    """Metrics of one split (against `labels`, its host copy made once per run), its reliability
    tables, the predicted probabilities and the logits."""
    logits, loss_sum = forward(model, spec, criterion, x, y_enc, device, precision, inputs)
    probs = probabilities(spec, logits, task).cpu().numpy()
    if task == Task.single_label:
        values, table = metrics.single_label(probs, labels)
    else:
        values, table = metrics.multi_label(probs, labels, spec.threshold)
    return {"loss_value": float(loss_sum) / len(x), **values}, table, probs, logits


class RunningTally:
    """The train row of an epoch from its own steps (trainer.train_metrics=running): the mean
    criterion value (weighted by batch size, as a full pass weights it) and the accuracy
    (multi-label: subset accuracy) of each example at the step that trained on it, before that
    step's update. Device tensors, one entry per seed for a stack (shape (K,)); no host sync
    until the epoch's row is read."""

    def __init__(self, spec: LossSpec, task: Task, device: torch.device, shape: tuple = ()):
        self.spec, self.task, self.shape, self.device = spec, task, shape, device
        self.reset()

    def reset(self) -> None:
        self.loss_sum = torch.zeros(self.shape, dtype=torch.float64, device=self.device)
        self.correct = torch.zeros(self.shape, dtype=torch.long, device=self.device)
        self.seen = 0

    def add(self, loss: Tensor, logits: Tensor, labels: Tensor) -> None:
        """One step: its loss (shape `shape`), logits (*shape, B, C) and labels (*shape, B) class
        indices or (*shape, B, C) multi-hot, as the metrics read them."""
        with torch.no_grad():
            logits = logits.detach()
            if self.task == Task.multi_label:
                right = ((torch.sigmoid(logits) >= self.spec.threshold) == (labels == 1)).all(-1)
            elif logits.shape[-1] == 1:  # the binary head: class 1 where sigmoid(z) > 1/2
                right = (logits[..., 0] > 0) == (labels == 1)
            else:  # every single-label distribution (softmax, renormalised sigmoids) is monotone in the logits
                right = logits.argmax(-1) == labels
            self.correct += right.sum(-1)
            self.loss_sum += loss.detach() * right.shape[-1]
            self.seen += right.shape[-1]

    def keep(self, positions: Tensor) -> None:
        """A stack's seeds at `positions` go on; the others have ended."""
        self.loss_sum, self.correct = self.loss_sum[positions], self.correct[positions]
        self.shape = tuple(self.loss_sum.shape)

    def rows(self) -> list[dict]:
        """The epoch's train metrics, one dict per seed (one for a single model); resets."""
        main = "acc" if self.task == Task.single_label else "subset_acc"
        loss, correct = (self.loss_sum / self.seen).reshape(-1).tolist(), self.correct.reshape(-1).tolist()
        rows = [{"loss_value": l, main: c / self.seen} for l, c in zip(loss, correct)]
        self.reset()
        return rows


def total_norm(grads: list[Tensor]) -> Tensor:
    """torch.nn.utils.get_total_norm's number by its own two ops, without its per-call grouping of
    the tensors by device and dtype (over a quarter of its cost, every step, for a model on one device)."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


class StabilityWatch:
    """Stability signals, one model's (shape ()) or a stack's (shape (K,), one entry per seed).

    A step only copies its loss and gradient norm into a window on the device; the window is
    tallied into the non-finite counters when a row is logged (or when it is full), so a step
    costs one small copy and no host sync. A logged row is one host read."""

    WINDOW = 256  # steps between tallies at most (a tally is a few device ops, no sync)

    def __init__(self, spec: LossSpec, device: torch.device, scaler: torch.amp.GradScaler, shape: tuple = ()):
        self.spec = spec
        self.bad_loss = torch.zeros(shape, dtype=torch.long, device=device)
        self.bad_grad = torch.zeros(shape, dtype=torch.long, device=device)
        self.first_bad = torch.full(shape, -1, dtype=torch.long, device=device)
        self.first_bad_loss = torch.full(shape, -1, dtype=torch.long, device=device)
        self.skipped = 0
        # Steps GradScaler skipped for a non-finite gradient (its normal business, not divergence)
        self.scaler_skipped = torch.zeros(shape, dtype=torch.long, device=device)
        self.scaler = scaler
        # Steps whose gradient norm exceeded trainer.grad_clip, and the lr of the latest step
        self.clipped = torch.zeros(shape, dtype=torch.long, device=device)
        self.lr = float("nan")
        self.rows: list[dict] = []
        # (WINDOW, 2, *shape): loss and gradient norm of the steps since the last tally, the
        # first of them step `window_start`; allocated at the first step in the loss's dtype.
        self.window: Optional[Tensor] = None
        self.filled, self.window_start = 0, 0

    def observe(self, step: int, loss: Tensor, grad_norm: Tensor) -> None:
        if self.filled == self.WINDOW:
            self.tally()
        if self.window is None:
            dtype = torch.promote_types(torch.promote_types(loss.dtype, grad_norm.dtype), torch.float32)
            self.window = torch.empty((self.WINDOW, 2, *loss.shape), dtype=dtype, device=loss.device)
        if self.filled == 0:
            self.window_start = step
        torch.stack((loss.detach(), grad_norm), out=self.window[self.filled])
        self.filled += 1

    def bad_now(self) -> Tensor:
        """Whether the last observed step had a non-finite loss or gradient (on the device). Under
        dynamic loss scaling a non-finite gradient alone is a step the scaler skips, not a bad one."""
        bad = ~torch.isfinite(self.window[self.filled - 1])
        return bad[0] if self.scaler.is_enabled() else bad.any(0)

    def tally(self) -> None:
        """Count the window's non-finite losses and gradients and note the first bad step."""
        if not self.filled:
            return
        bad = ~torch.isfinite(self.window[: self.filled])
        loss_bad, grad_bad = bad[:, 0], bad[:, 1]
        if self.scaler.is_enabled():
            self.scaler_skipped += grad_bad.sum(0)
            grad_bad = torch.zeros_like(grad_bad)
        self.bad_loss += loss_bad.sum(0)
        self.bad_grad += grad_bad.sum(0)
        step_bad = loss_bad | grad_bad
        first = step_bad.byte().argmax(0) + self.window_start  # argmax: the first maximal entry
        self.first_bad = torch.where((self.first_bad < 0) & step_bad.any(0), first, self.first_bad)
        first_loss = loss_bad.byte().argmax(0) + self.window_start
        self.first_bad_loss = torch.where((self.first_bad_loss < 0) & loss_bad.any(0), first_loss,
                                          self.first_bad_loss)
        self.filled = 0

    def readings(self, loss, grad_norm, logits: Tensor) -> Tensor:
        """What a row reads, stacked (float64, (8, *shape)) so that one host read fetches it all."""
        logits = logits.detach()
        seeds = self.bad_loss.shape
        values = (loss, grad_norm, logits.abs().reshape(*seeds, -1).amax(-1),
                  saturated(self.spec, logits).reshape(*seeds, -1).float().mean(-1),
                  self.bad_loss, self.bad_grad, self.scaler_skipped, self.clipped)
        nan = torch.full(seeds, float("nan"), dtype=torch.float64, device=self.bad_loss.device)
        return torch.stack([nan if v is None else v.detach().double() for v in values])

    def row(self, step: int, epoch: int, read: list, skipped: int) -> dict:
        loss, grad_norm, max_abs, saturated_frac, bad_loss, bad_grad, scaler_skipped, clipped = read
        return {
            "step": step, "epoch": epoch, "loss_value": loss, "grad_norm": grad_norm,
            "max_abs_logit": max_abs, "saturated_frac": saturated_frac,
            "nonfinite_loss": int(bad_loss), "nonfinite_grad": int(bad_grad), "skipped_steps": skipped,
            "loss_scale": self.scaler.get_scale() if self.scaler.is_enabled() else float("nan"),
            "scaler_skipped_steps": int(scaler_skipped), "clipped_steps": int(clipped), "lr": self.lr,
        }

    def log(self, step: int, epoch: int, loss, grad_norm, logits: Tensor) -> None:
        self.tally()
        self.rows.append(self.row(step, epoch, self.readings(loss, grad_norm, logits).tolist(), self.skipped))

    def first_nonfinite_step(self) -> int:
        self.tally()
        return int(self.first_bad)

    def first_nonfinite(self) -> tuple[Optional[int], Optional[str]]:
        """(step, "loss" | "gradient") of the first non-finite value, (None, None) if none."""
        step = self.first_nonfinite_step()
        if step < 0:
            return None, None
        return step, "loss" if int(self.first_bad_loss) == step else "gradient"

    def refused(self, step: int) -> None:
        """BCELoss refused a NaN input at `step`: its loss is the first non-finite value unless
        one was counted before."""
        self.tally()
        self.first_bad = torch.where(self.first_bad < 0, step, self.first_bad)
        self.first_bad_loss = torch.where(self.first_bad_loss < 0, step, self.first_bad_loss)

    def divergence(self) -> str:
        self.tally()
        what = "loss" if int(self.bad_loss) else "gradient"
        return (
            f"non-finite {what} at step {self.first_nonfinite_step()} ({int(self.bad_loss)} non-finite "
            f"losses, {int(self.bad_grad)} non-finite gradients so far); trainer.on_nonfinite=skip "
            "skips such steps instead"
        )

    def flush(self) -> list[dict]:
        rows, self.rows = self.rows, []
        return rows


class SeedStabilityWatch(StabilityWatch):
    """StabilityWatch with one entry per run of the loop (shape (K,), K=1 for a single run); each run's
    rows and messages come from its own StabilityWatch, given its counters."""

    def __init__(self, spec: LossSpec, device: torch.device, scaler: torch.amp.GradScaler, seeds: int):
        super().__init__(spec, device, scaler, (seeds,))
        self.skipped_per_seed = torch.zeros(seeds, dtype=torch.long, device=device)

    def of_seed(self, position: int, signals: StabilityWatch) -> StabilityWatch:
        self.tally()
        signals.bad_loss, signals.bad_grad = self.bad_loss[position], self.bad_grad[position]
        signals.first_bad, signals.first_bad_loss = self.first_bad[position], self.first_bad_loss[position]
        signals.clipped, signals.scaler_skipped = self.clipped[position], self.scaler_skipped[position]
        signals.lr, signals.skipped = self.lr, int(self.skipped_per_seed[position])
        return signals

    def refused_at(self, positions: list[int], step: int) -> None:
        """StabilityWatch.refused for the runs at `positions` only."""
        self.tally()
        mask = torch.zeros_like(self.first_bad, dtype=torch.bool)
        mask[positions] = True
        self.first_bad = torch.where(mask & (self.first_bad < 0), step, self.first_bad)
        self.first_bad_loss = torch.where(mask & (self.first_bad_loss < 0), step, self.first_bad_loss)

    def log_seeds(self, step: int, epoch: int, loss: Tensor, grad_norm: Tensor, logits: Tensor,
                  own: list[StabilityWatch]) -> None:
        """A row for every run (own[position] keeps it), all read in one go."""
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


def encoded_and_checked(model, spec, criterion, data, batch: int, device, precision) -> tuple[Tensor, ...]:
    """(x_train, train targets, test targets, val targets or None) as the criterion takes them;
    the first batch through the model is checked for the classic mistakes (one host sync, once
    per run)."""
    width = head_width(spec, data.task, data.n_classes)
    x, y = data.x_train, encode_targets(spec, data.y_train, width)
    with autocast(device, precision):
        check_loss_inputs(criterion, spec.activation(model(data.inputs(x[:batch]))), y[:batch])
    y_val = None if data.y_val is None else encode_targets(spec, data.y_val, width)
    return x, y, encode_targets(spec, data.y_test, width), y_val


@dataclass
class Run:
    """What the loop needs of one run, as run.py builds it. The seeds of a stack differ in the
    first four and share the rest (the first seed's are used)."""

    model: nn.Module  # ends holding the run's final weights
    optimizer: torch.optim.Optimizer  # a stack takes its hyperparameters (lossbench.training.stacked_optim)
    generator: torch.Generator  # the data order and augmentation draws
    on_epoch: Callable[..., None]  # (rows, reliability tables, step rows, per-class rows, test predictions)
    spec: LossSpec
    criterion: nn.Module
    data: Dataset
    trainer: Any  # the trainer config
    device: torch.device
    recipe: Recipe = Recipe()
    stop: StopFlag = field(default_factory=StopFlag)  # asked at every step boundary


class OneModel:
    """The loop's weights for a single run: the model itself, its torch optimizer and GradScaler,
    the operations a plain PyTorch loop does. Tensors go in and out with a leading run axis of
    length 1 (the loop's shape for K runs), views of the model's own."""

    def __init__(self, run: Run):
        self.run, self.params = run, list(run.model.parameters())
        # Disabled (loss_scaling=none), a GradScaler passes everything through without a sync.
        self.scaler = torch.amp.GradScaler(run.device.type, enabled=run.trainer.loss_scaling.name == "dynamic")
        self.lr = run.optimizer.param_groups[0]["lr"]

    def train_mode(self) -> None:
        self.run.model.train()

    def logits(self, xb: Tensor) -> Tensor:
        return self.run.model(xb[0])[None]

    def loss(self, logits: Tensor, yb: Tensor) -> Tensor:
        return self.run.criterion(self.run.spec.activation(logits[0]), yb[0])[None]

    def backward(self, loss: Tensor) -> Tensor:
        self.run.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss[0]).backward()
        self.scaler.unscale_(self.run.optimizer)  # the logged gradient norm is the true one
        return total_norm([p.grad for p in self.params if p.grad is not None])[None]

    def clip(self, max_norm: float, grad_norm: Tensor) -> None:
        torch.nn.utils.clip_grads_with_norm_(self.params, max_norm, grad_norm[0])

    def step(self, take: Optional[Tensor]) -> None:
        if take is None or bool(take[0]):
            self.scaler.step(self.run.optimizer)  # skips the update itself when a gradient is not finite
        self.scaler.update()  # lowers the scale after a non-finite gradient

    def set_lr(self, lr: float) -> None:
        for group in self.run.optimizer.param_groups:
            group["lr"] = lr

    def model(self, position: int) -> nn.Module:
        return self.run.model

    def keep(self, positions: Tensor) -> None:
        """Nothing to drop: a single run that ends leaves no run to train."""


BCE_REFUSAL = "should be between 0 and 1"


def refusal(error: RuntimeError) -> bool:
    """BCELoss checks its input range and raises on NaN instead of returning NaN: the weights went
    non-finite between two signal reads. That is divergence, not a crash."""
    return BCE_REFUSAL in str(error)


def train(run: Run) -> Outcome:
    """One run through the loop."""
    return train_runs([run])[0]


def train_runs(runs: list[Run], finished: Callable[[int, Outcome], None] = lambda index, outcome: None,
               ) -> list[Outcome]:
    """Train each run as if alone: one run on its own model, several (seeds of one configuration,
    lossbench.training.batched.unstackable says which) as one stacked model. A run whose loss or gradient
    goes non-finite ends alone (or has its steps skipped alone); the others go on. Every run
    reports through its own `on_epoch`, evaluated by `epoch_records` on its own model.
    `finished(k, outcome)` is called as soon as run k ends; the outcomes are returned in order.
    A stop signal any run's StopFlag noted ends every run `interrupted` at a step boundary."""
    first = runs[0]
    spec, criterion, data, trainer, device, recipe = (first.spec, first.criterion, first.data, first.trainer,
                                                      first.device, first.recipe)
    precision, skip_nonfinite = trainer.precision.name, trainer.on_nonfinite.name == "skip"
    stops = list({id(run.stop): run.stop for run in runs}.values())  # the seeds of a stack share one
    x, y, y_test, y_val = encoded_and_checked(first.model, spec, criterion, data, trainer.batch_size, device,
                                              precision)
    if len(runs) == 1:
        weights = OneModel(first)
    else:  # torch.func is imported only when seeds are stacked
        from lossbench.training.batched import Stack

        weights = Stack(runs, spec, criterion)
    # Plain ints: a knob read from the config costs microseconds, every step.
    n, batch, log_every = len(x), trainer.batch_size, trainer.log_every
    total_steps = trainer.epochs * math.ceil(n / batch)
    condition_inputs = per_class_inputs(data)
    lrs = recipe.lrs(weights.lr, trainer.epochs, math.ceil(n / batch))
    fill, clip = recipe.fill(x), trainer.grad_clip

    live = list(range(len(runs)))  # live[position in the loop's tensors] = index into runs
    outcomes: list[Optional[Outcome]] = [None] * len(runs)
    signals = SeedStabilityWatch(spec, device, weights.scaler, len(runs))
    tally = (RunningTally(spec, data.task, device, (len(runs),)) if trainer.train_metrics.name == "running"
             else None)
    signals.lr = weights.lr
    own_signals = [StabilityWatch(spec, device, weights.scaler) for _ in runs]
    selections = [SelectionSoFar(selection_metric(data.task.value, trainer.select_on)) for _ in runs]
    step, epoch = 0, 0
    loss = grad_norm = logits = None
    orders = torch.empty(0)  # this epoch's data order, one row per live run

    def outcome_of(position: int, status: str, epochs_completed: int, message: Optional[str]) -> Outcome:
        seed = signals.of_seed(position, own_signals[live[position]])
        return Outcome(status, epochs_completed, message, seed.skipped, int(seed.scaler_skipped),
                       *seed.first_nonfinite())

    def end(positions: list[int], status: str, message: Callable[[StabilityWatch], Optional[str]], at_step: int,
            epochs_completed: Optional[int] = None) -> Tensor:
        """Runs at `positions` end here: a last step row unless one was logged at `at_step` (none
        for a run stopped early after its epoch's rows), their records and outcomes handed over,
        and the loop drops them. Returns the positions kept."""
        nonlocal orders, live, loss, grad_norm, logits
        for position in positions:
            index, seed_signals = live[position], signals.of_seed(position, own_signals[live[position]])
            if epochs_completed is None:
                if not seed_signals.rows or seed_signals.rows[-1]["step"] != at_step:
                    seed_signals.log(at_step, epoch, None if loss is None else loss[position],
                                     None if grad_norm is None else grad_norm[position], logits[position])
                weights.model(position)
                runs[index].on_epoch([], [], seed_signals.flush())
            outcomes[index] = dataclasses.replace(
                outcome_of(position, status, epoch - 1 if epochs_completed is None else epochs_completed,
                           message(seed_signals)), stopped_early=epochs_completed is not None)
            finished(index, outcomes[index])
        kept = [p for p in range(len(live)) if p not in positions]
        keep = torch.tensor(kept, dtype=torch.long, device=device)
        if kept:
            weights.keep(keep)
            signals.keep(keep)
            if tally is not None:
                tally.keep(keep)
            orders = orders[keep]
            loss, grad_norm, logits = (None if t is None else t.detach()[keep] for t in (loss, grad_norm, logits))
        live = [live[p] for p in kept]
        return keep

    def refused(error: RuntimeError, positions: list[int], at_step: int) -> Tensor:
        signals.refused_at(positions, at_step)
        return end(positions, "diverged", lambda s: (
            f"BCELoss refused its input at step {at_step} ({error}): its sigmoid outputs were NaN because "
            f"the weights had gone non-finite; {s.divergence()}"), at_step)

    def forward(xb: Tensor, idx: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        """This step's logits and per-run losses; the runs whose weights went non-finite since the
        last signal read (BCELoss refuses their input) end diverged and the rest retry."""
        nonlocal logits
        while True:
            with autocast(device, precision):
                logits = weights.logits(xb)
                try:
                    return logits, weights.loss(logits, y[idx])
                except RuntimeError as error:
                    if not refusal(error):
                        raise
                    inputs = spec.activation(logits.detach()).flatten(1)
                    keep = refused(error, (~((inputs >= 0) & (inputs <= 1)).all(dim=1)).nonzero().flatten().tolist(),
                                   step + 1)
                    if not live:
                        return logits, None
                    xb, idx = xb[keep], idx[keep]

    # The bar moves at logged steps: a tqdm update every step costs more than it shows.
    bar = tqdm(total=total_steps, disable=None, unit="step", leave=False)
    try:
        for epoch in range(1, trainer.epochs + 1):
            weights.train_mode()
            orders = torch.stack([torch.randperm(n, generator=runs[index].generator) for index in live]).to(device)
            started = time.perf_counter()
            for start in range(0, n, batch):
                loss = grad_norm = None
                if lrs is not None:
                    weights.set_lr(lrs[step])
                    signals.lr = lrs[step]
                idx = orders[:, start : start + batch]
                # each run's batch augmented from its own generator (uint8 pixels pad with black), then
                # standardised as the model takes them
                xb = torch.stack([recipe.batch(x[idx[position]], data.image_shape, fill, runs[index].generator)
                                  for position, index in enumerate(live)]) if recipe.augment else x[idx]
                logits, loss = forward(data.inputs(xb), idx)
                if not live:
                    return outcomes
                if tally is not None:
                    tally.add(loss, logits, data.y_train[orders[:, start : start + batch]])
                grad_norm = weights.backward(loss)
                if clip is not None:  # after the norm is read: grad_norm stays the norm before clipping
                    weights.clip(clip, grad_norm)
                    signals.clipped += grad_norm > clip
                step += 1
                signals.observe(step, loss, grad_norm)
                if skip_nonfinite:
                    bad = signals.bad_now()
                    signals.skipped_per_seed += bad
                    weights.step(~bad)
                else:
                    weights.step(None)
                if step % log_every == 0 or start + batch >= n:
                    bar.update(step - bar.n)
                    signals.log_seeds(step, epoch, loss, grad_norm, logits, [own_signals[index] for index in live])
                    if not skip_nonfinite:
                        diverged = (signals.first_bad > 0).nonzero().flatten().tolist()
                        if diverged:
                            end(diverged, "diverged", StabilityWatch.divergence, step)
                            if not live:
                                return outcomes
                if any(stop.requested for stop in stops):
                    end(list(range(len(live))), "interrupted", lambda s: "interrupted by the user", step)
                    return outcomes
            if device.type == "cuda":
                torch.cuda.synchronize()
            # One epoch trained every live run: each is charged its share of the wall time.
            seconds = (time.perf_counter() - started) / len(live)
            running = [None] * len(live) if tally is None else tally.rows()
            refused_positions, refused_error, patience_over = [], None, []
            for position, index in enumerate(live):
                try:
                    rows, table, per_class, predictions = epoch_records(
                        weights.model(position), spec, criterion, data, (x, y, y_test, y_val), condition_inputs,
                        epoch, seconds, device, precision, selections[index], running[position])
                except RuntimeError as error:  # the last step's update made the weights non-finite
                    if not refusal(error):
                        raise
                    refused_positions.append(position)
                    refused_error = error
                    continue
                rows[0]["lr"] = signals.lr  # the train row: the lr of the epoch's last step
                runs[index].on_epoch(rows, table, own_signals[index].flush(), per_class, predictions)
                if position == 0:
                    bar.set_postfix_str(_postfix(rows[-1]))
                if patience_exhausted(trainer.early_stop_patience, selections[index]):
                    patience_over.append(position)
            if refused_positions:
                kept = refused(refused_error, refused_positions, step + 1).tolist()
                patience_over = [kept.index(p) for p in patience_over]
            if patience_over:
                end(patience_over, "completed", lambda s: None, step, epochs_completed=epoch)
            if not live:
                return outcomes
    finally:
        bar.close()
    for position, index in enumerate(live):
        outcomes[index] = outcome_of(position, "completed", trainer.epochs, None)
        finished(index, outcomes[index])
    return outcomes


def epoch_records(model, spec, criterion, data, encoded, inputs, epoch: int, seconds: float, device, precision,
                  selection: SelectionSoFar, running: Optional[dict] = None,
                  ) -> tuple[list[dict], list[dict], list[dict], predictions.Columns]:
    """What an epoch reports: its train, val (with a val split) and test rows, the test
    reliability tables, the test split's per-class rows, and the test predictions (views last
    and selected: `selection` follows the val primary metric and keeps the selected epoch's).
    `encoded` = (x_train, encoded train, test and val targets); `inputs` = per_class_inputs(data).
    `running`: the train row's metrics from the epoch's steps (RunningTally); None evaluates the
    whole training split again. The train row's eval_time_s is this call's own wall time."""
    started = time.perf_counter()
    x, y, y_test, y_val = encoded

    def split(x_split, y_encoded, labels) -> tuple[dict, list, np.ndarray, torch.Tensor]:
        return evaluate(model, spec, criterion, x_split, y_encoded, labels, data.task, device, precision,
                        data.inputs)

    if running is None:
        train_row, _, train_probs, _ = split(x, y, inputs["train"])
        _add_class_balance(data, inputs, train_row, train_probs, inputs["train"])
        _add_memorisation(data, inputs, train_row, train_probs, slice(None))
    else:
        train_row = dict(running)
        flipped = inputs.get("flipped")
        if flipped is not None and len(flipped):  # the model at the epoch's end, on the flipped examples only
            logits, _ = forward(model, spec, criterion, x[flipped], None, device, precision, data.inputs)
            _add_memorisation(data, inputs, train_row, probabilities(spec, logits, data.task).cpu().numpy(),
                              flipped.cpu().numpy())
        elif flipped is not None:
            train_row.update(dict.fromkeys(metrics.MEMORISATION, float("nan")))
    test_row, table, test_probs, test_logits = split(data.x_test, y_test, inputs["test"])
    val_row, _, val_probs, val_logits = split(data.x_val, y_val, inputs["val"]) if y_val is not None else (None,) * 4
    train_row.update(epoch_time_s=seconds, samples_per_s=len(x) / seconds)
    _add_class_balance(data, inputs, test_row, test_probs, inputs["test"])
    per_class = metrics.per_class(test_probs, inputs["test"], spec.threshold, inputs["train_counts"])
    last = predictions.per_example(test_probs, inputs["test"], spec.threshold)
    if val_row is not None:
        _add_class_balance(data, inputs, val_row, val_probs, inputs["val"])
        selection.observe(val_row[selection.metric], last)
    if data.task == Task.single_label:
        test_row.update(temperature.scaled_metrics(spec, val_logits, inputs.get("val"), test_logits, inputs["test"]))
    train_row["eval_time_s"] = time.perf_counter() - started
    untimed = dict.fromkeys(metrics.TIMINGS, float("nan"))
    rows = [{"epoch": epoch, "split": "train", **train_row}]
    rows += [{"epoch": epoch, "split": "val", **val_row, **untimed}] if val_row is not None else []
    rows += [{"epoch": epoch, "split": "test", **test_row, **untimed}]
    per_class = [{"epoch": epoch, "split": "test", **row} for row in per_class]
    return rows, table, per_class, predictions.views(epoch, last, selection)


def patience_exhausted(patience: Optional[int], selection: SelectionSoFar) -> bool:
    """Early stopping: the val primary metric has not improved for `patience` epochs."""
    return patience is not None and selection.epochs_since_selected() >= patience


def per_class_inputs(data: Dataset) -> dict:
    """Host copies of what the per-epoch metrics need, made once per run: the labels of each
    split (`train`: the labels trained on, noisy under label noise), training counts per class
    (true labels) or positives per label, the rarest third of the classes, the clean training labels."""
    labels = {"train": data.y_train.cpu().numpy(), "test": data.y_test.cpu().numpy()}
    if data.y_val is not None:
        labels["val"] = data.y_val.cpu().numpy()
    clean = labels["train"] if data.y_train_clean is None else data.y_train_clean.cpu().numpy()
    if data.task == Task.multi_label:
        return {"train_counts": clean.sum(axis=0).astype(np.int64), **labels}
    counts = np.bincount(clean, minlength=data.n_classes)
    # The training examples whose label noise flipped, on the device (None without noise)
    flipped = None if data.y_train_clean is None else (data.y_train != data.y_train_clean).nonzero().flatten()
    return {"train_counts": counts, "rare": metrics.rarest_third(counts), "clean": clean, "flipped": flipped,
            **labels}


def _add_class_balance(data, inputs, row, probs, labels) -> None:
    if data.task == Task.single_label:
        row.update(metrics.class_balance(probs, labels, inputs["rare"]))


def _add_memorisation(data, inputs, train_row, probs, examples) -> None:
    """flipped_acc_noisy/true of `probs`, the predictions on the training `examples` (an index)."""
    if data.task == Task.single_label and data.y_train_clean is not None:
        train_row.update(metrics.memorisation(probs, inputs["train"][examples], inputs["clean"][examples]))


def _postfix(row: dict) -> str:
    main = "acc" if "acc" in row else "map"
    return f"test loss {row['loss_value']:.4f} {main} {row[main]:.4f}"
