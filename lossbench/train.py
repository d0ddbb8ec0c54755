"""The training loop. Everything it needs (the loss spec, the data as tensors, the knobs) is
handed to it; it hands back plain records through `on_epoch`.

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
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from lossbench import metrics, predictions, temperature
from lossbench.checks import check_loss_inputs
from lossbench.data import Dataset
from lossbench.losses import LossSpec, Probabilities, Task, encode_targets, head_width, probabilities
from lossbench.recipe import Recipe
from lossbench.selection import SelectionSoFar, selection_metric

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


class Signals:
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


def train(
    model: nn.Module,
    spec: LossSpec,
    criterion: nn.Module,
    data: Dataset,
    optimizer: torch.optim.Optimizer,
    trainer: Any,
    device: torch.device,
    generator: torch.Generator,
    on_epoch: Callable[..., None],
    stop_requested: Callable[[], bool] = lambda: False,
    recipe: Recipe = Recipe(),
) -> Outcome:
    precision, skip_nonfinite = trainer.precision.name, trainer.on_nonfinite.name == "skip"
    x, y, y_test, y_val = encoded_and_checked(model, spec, criterion, data, trainer.batch_size, device, precision)
    # Plain ints: a knob read from the config costs microseconds, every step.
    n, batch, log_every = len(x), trainer.batch_size, trainer.log_every
    total_steps = trainer.epochs * math.ceil(n / batch)
    params = list(model.parameters())
    condition_inputs = per_class_inputs(data)
    selection = SelectionSoFar(selection_metric(data.task.value, trainer.select_on))
    lrs = recipe.lrs(optimizer.param_groups[0]["lr"], trainer.epochs, math.ceil(n / batch))
    fill, clip = recipe.fill(x), trainer.grad_clip

    # Disabled (loss_scaling=none), a GradScaler passes everything through without a sync.
    scaler = torch.amp.GradScaler(device.type, enabled=trainer.loss_scaling.name == "dynamic")
    signals, step, epoch = Signals(spec, device, scaler), 0, 0
    tally = RunningTally(spec, data.task, device) if trainer.train_metrics.name == "running" else None
    signals.lr = optimizer.param_groups[0]["lr"]
    loss = grad_norm = logits = None

    def outcome(status: str, epochs_completed: int, message: Optional[str]) -> Outcome:
        signals.tally()
        return Outcome(status, epochs_completed, message, signals.skipped, int(signals.scaler_skipped),
                       *signals.first_nonfinite())

    def end(status: str, message: Optional[str]) -> Outcome:
        if not signals.rows or signals.rows[-1]["step"] != step:
            signals.log(step, epoch, loss, grad_norm, logits)
        on_epoch([], [], signals.flush())
        return outcome(status, epoch - 1, message)

    # The bar moves at logged steps: a tqdm update every step costs more than it shows.
    bar = tqdm(total=total_steps, disable=None, unit="step", leave=False)
    try:
        for epoch in range(1, trainer.epochs + 1):
            model.train()
            order = torch.randperm(n, generator=generator).to(device)
            started = time.perf_counter()
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                loss = grad_norm = None
                if lrs is not None:
                    signals.lr = set_lr(optimizer, lrs[step])
                # augmented as stored (uint8 pixels pad with black), then standardised as the model takes them
                xb = data.inputs(recipe.batch(x[idx], data.image_shape, fill, generator))
                with autocast(device, precision):
                    logits = model(xb)
                    loss = criterion(spec.activation(logits), y[idx])
                if tally is not None:
                    tally.add(loss, logits, data.y_train[idx])
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)  # the logged gradient norm is the true one
                grad_norm = total_norm([p.grad for p in params if p.grad is not None])
                if clip is not None:  # after the norm is read: grad_norm stays the norm before clipping
                    torch.nn.utils.clip_grads_with_norm_(params, clip, grad_norm)
                    signals.clipped += grad_norm > clip
                step += 1
                signals.observe(step, loss, grad_norm)
                if skip_nonfinite and bool(signals.bad_now()):
                    signals.skipped += 1
                else:
                    scaler.step(optimizer)  # skips the update itself when a gradient is not finite
                scaler.update()  # lowers the scale after a non-finite gradient
                if step % log_every == 0 or start + batch >= n:
                    bar.update(step - bar.n)
                    signals.log(step, epoch, loss, grad_norm, logits)
                    if not skip_nonfinite and signals.first_nonfinite_step() > 0:
                        return end("diverged", signals.divergence())
                if stop_requested():
                    return end("interrupted", "interrupted by the user")
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            rows, table, per_class, predictions = epoch_records(
                model, spec, criterion, data, (x, y, y_test, y_val), condition_inputs, epoch, seconds, device,
                precision, selection, None if tally is None else tally.rows()[0])
            rows[0]["lr"] = signals.lr  # the train row: the lr of the epoch's last step
            on_epoch(rows, table, signals.flush(), per_class, predictions)
            bar.set_postfix_str(_postfix(rows[-1]))
            if patience_exhausted(trainer.early_stop_patience, selection):
                return dataclasses.replace(outcome("completed", epoch, None), stopped_early=True)
    except RuntimeError as error:
        # BCELoss checks its input range and raises on NaN instead of returning NaN: the
        # weights went non-finite between two signal reads. That is divergence, not a crash.
        if "should be between 0 and 1" not in str(error):
            raise
        step += 1
        signals.refused(step)
        return end("diverged", f"BCELoss refused its input at step {step} ({error}): its sigmoid "
                   f"outputs were NaN because the weights had gone non-finite; {signals.divergence()}")
    finally:
        bar.close()
    return outcome("completed", trainer.epochs, None)


def epoch_records(model, spec, criterion, data, encoded, inputs, epoch: int, seconds: float, device, precision,
                  selection: SelectionSoFar, running: Optional[dict] = None,
                  ) -> tuple[list[dict], list[dict], list[dict], predictions.Columns]:
    """What an epoch reports: its train, val (with a val split) and test rows, the test
    reliability tables, the test split's per-class rows, and the test predictions (views last
    and selected: `selection` follows the val primary metric and keeps the selected epoch's).
    `encoded` = (x_train, encoded train, test and val targets); `inputs` = per_class_inputs(data).
    `running`: the train row's metrics from the epoch's steps (RunningTally); None evaluates the
    whole training split again."""
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
    untimed = {"epoch_time_s": float("nan"), "samples_per_s": float("nan")}
    rows = [{"epoch": epoch, "split": "train", **train_row}]
    rows += [{"epoch": epoch, "split": "val", **val_row, **untimed}] if val_row is not None else []
    rows += [{"epoch": epoch, "split": "test", **test_row, **untimed}]
    per_class = [{"epoch": epoch, "split": "test", **row} for row in per_class]
    return rows, table, per_class, predictions.views(epoch, last, selection)


def set_lr(optimizer, lr: float) -> float:
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


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
