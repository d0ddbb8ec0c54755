"""The training loop. Everything it needs (the loss spec, the data as tensors, the knobs) is
handed to it; it hands back plain records through `on_epoch`.

No host sync per step: the running counters stay on the device and are read every
`log_every` steps (and at epoch ends). Only `on_nonfinite=skip` syncs each step, as
torch's GradScaler does, because skipping an update needs to know before the update.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from lossbench import metrics
from lossbench.checks import check_loss_inputs
from lossbench.data import Dataset
from lossbench.losses import LossSpec, Probabilities, Task, encode_targets, probabilities

EVAL_CHUNK = 8192
AUTOCAST = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}


@dataclass
class Outcome:
    status: str  # completed | interrupted | diverged
    epochs_completed: int
    message: Optional[str] = None
    skipped_steps: int = 0


def autocast(device: torch.device, precision: str):
    dtype = AUTOCAST[precision]
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def saturated_fraction(spec: LossSpec, logits: torch.Tensor) -> torch.Tensor:
    """Outputs that have rounded to their limit in the working dtype: sigmoids at exactly 0 or 1,
    softmax probabilities at exactly 0. There the loss's gradient is lost or clamped."""
    if spec.probabilities == Probabilities.sigmoid:
        p = torch.sigmoid(logits)
        return ((p == 0) | (p == 1)).float().mean()
    return (torch.softmax(logits, dim=1) == 0).float().mean()


@torch.no_grad()
def evaluate(model, spec, criterion, x, y_enc, y_raw, task, device, precision) -> tuple[dict, list, np.ndarray]:
    model.eval()
    logits, loss_sum = [], torch.zeros((), device=device)
    with autocast(device, precision):
        for start in range(0, len(x), EVAL_CHUNK):
            chunk = model(x[start : start + EVAL_CHUNK])
            end = start + len(chunk)
            loss_sum += criterion(spec.activation(chunk), y_enc[start:end]).float() * len(chunk)
            logits.append(chunk)
    probs = probabilities(spec, torch.cat(logits), task).cpu().numpy()
    labels = y_raw.cpu().numpy()
    if task == Task.single_label:
        values, table = metrics.single_label(probs, labels)
    else:
        values, table = metrics.multi_label(probs, labels, spec.threshold)
    return {"loss_value": float(loss_sum) / len(x), **values}, table


def train(
    model: nn.Module,
    spec: LossSpec,
    data: Dataset,
    optimizer: torch.optim.Optimizer,
    trainer: Any,
    device: torch.device,
    generator: torch.Generator,
    on_epoch: Callable[[list[dict], list[dict], list[dict]], None],
    stop_requested: Callable[[], bool] = lambda: False,
) -> Outcome:
    criterion = spec.criterion()
    precision, log_every = trainer.precision.name, trainer.log_every
    skip_nonfinite = trainer.on_nonfinite.name == "skip"
    x, y = data.x_train, encode_targets(spec, data.y_train, data.n_classes)
    y_test = encode_targets(spec, data.y_test, data.n_classes)
    n, batch = len(x), trainer.batch_size
    steps_per_epoch = math.ceil(n / batch)
    params = [p for p in model.parameters()]

    with autocast(device, precision):
        check_loss_inputs(criterion, spec.activation(model(x[:batch])), y[:batch])

    # Running counters live on the device; reading them is the only sync.
    bad_loss = torch.zeros((), dtype=torch.long, device=device)
    bad_grad = torch.zeros((), dtype=torch.long, device=device)
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    step, skipped = 0, 0
    bar = tqdm(total=trainer.epochs * steps_per_epoch, disable=None, unit="step", leave=False)
    try:
        for epoch in range(1, trainer.epochs + 1):
            model.train()
            order = torch.randperm(n, generator=generator).to(device)
            signals: list[dict] = []
            started = time.perf_counter()
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                with autocast(device, precision):
                    logits = model(x[idx])
                    loss = criterion(spec.activation(logits), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
                step += 1
                loss_bad, grad_bad = ~torch.isfinite(loss), ~torch.isfinite(grad_norm)
                bad_loss += loss_bad
                bad_grad += grad_bad
                first_bad = torch.where((first_bad < 0) & (loss_bad | grad_bad), step, first_bad)
                if skip_nonfinite and bool(loss_bad | grad_bad):
                    skipped += 1
                else:
                    optimizer.step()
                bar.update()
                last_step = step == trainer.epochs * steps_per_epoch
                if step % log_every == 0 or last_step:
                    signals.append({
                        "step": step, "epoch": epoch,
                        "loss_value": float(loss.detach()), "grad_norm": float(grad_norm),
                        "max_abs_logit": float(logits.detach().abs().max()),
                        "saturated_frac": float(saturated_fraction(spec, logits.detach())),
                        "nonfinite_loss": int(bad_loss), "nonfinite_grad": int(bad_grad),
                        "skipped_steps": skipped,
                    })
                    if not skip_nonfinite and int(first_bad) > 0:
                        return _diverged(int(first_bad), int(bad_loss), int(bad_grad), epoch - 1, on_epoch, signals)
                if stop_requested():
                    on_epoch([], [], signals)
                    return Outcome("interrupted", epoch - 1, "interrupted by the user", skipped)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            if not skip_nonfinite and int(first_bad) > 0:
                return _diverged(int(first_bad), int(bad_loss), int(bad_grad), epoch - 1, on_epoch, signals)
            train_row, _ = evaluate(model, spec, criterion, x, y, data.y_train, data.task, device, precision)
            test_row, table = evaluate(model, spec, criterion, data.x_test, y_test, data.y_test, data.task, device, precision)
            train_row.update(epoch_time_s=seconds, samples_per_s=n / seconds)
            on_epoch(
                [{"epoch": epoch, "split": "train", **train_row},
                 {"epoch": epoch, "split": "test", **test_row, "epoch_time_s": float("nan"), "samples_per_s": float("nan")}],
                table,
                signals,
            )
            bar.set_postfix_str(_postfix(test_row))
    finally:
        bar.close()
    return Outcome("completed", trainer.epochs, None, skipped)


def _postfix(row: dict) -> str:
    main = "acc" if "acc" in row else "map"
    return f"test loss {row['loss_value']:.4f} {main} {row[main]:.4f}"


def _diverged(step: int, bad_loss: int, bad_grad: int, epochs_done: int, on_epoch, signals) -> Outcome:
    on_epoch([], [], signals)
    what = "loss" if bad_loss else "gradient"
    return Outcome(
        "diverged",
        epochs_done,
        f"non-finite {what} at step {step} ({bad_loss} non-finite losses, {bad_grad} non-finite "
        "gradients so far); trainer.on_nonfinite=skip skips such steps instead",
    )
