"""Learning-rate schedules (`scheduler.*`) as a trace: the lr of every training step.

The trace is read off torch's own scheduler classes, stepped on a throwaway optimizer exactly as
torch defines each (cosine, step and multistep once per epoch, onecycle once per step), so
train.py and the seed stack (batched.py), which both set each step's lr from it, follow torch's
schedule by construction, and neither loop holds a scheduler object of its own.

Warm-up (`scheduler.warmup_epochs` = w > 0) is torch's LinearLR from lr / (w + 1) up to lr over w
epochs, chained to the schedule by SequentialLR (which then runs over the remaining epochs); for
onecycle, whose warm-up is built in, w sets its pct_start to w / epochs.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch.optim import lr_scheduler

from lossbench.training.optim import SGD

# name -> (builds the torch scheduler: (optimizer, cfg, epochs after warm-up, total steps), per step?)
Builder = Callable[[torch.optim.Optimizer, Any, int, int], lr_scheduler.LRScheduler]


def _cosine(optimizer, cfg, epochs: int, total_steps: int):
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=cfg.eta_min)


def _step(optimizer, cfg, epochs: int, total_steps: int):
    return lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)


def _multistep(optimizer, cfg, epochs: int, total_steps: int):
    return lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.milestones), gamma=cfg.gamma)


def _onecycle(optimizer, cfg, epochs: int, total_steps: int):
    # Momentum is left alone (cycle_momentum off): the trace carries the learning rate only.
    return lr_scheduler.OneCycleLR(optimizer, max_lr=optimizer.param_groups[0]["lr"], total_steps=total_steps,
                                   pct_start=cfg.warmup_epochs / epochs if cfg.warmup_epochs else 0.3,
                                   div_factor=cfg.div_factor, final_div_factor=cfg.final_div_factor,
                                   cycle_momentum=False)


SCHEDULES: dict[str, tuple[Optional[Builder], bool]] = {
    "none": (None, False),
    "cosine": (_cosine, False),
    "step": (_step, False),
    "multistep": (_multistep, False),
    "onecycle": (_onecycle, True),
}


def _scheduler(optimizer, cfg: Any, epochs: int, total_steps: int) -> Optional[lr_scheduler.LRScheduler]:
    build, per_step = SCHEDULES[cfg.name]
    warmup = 0 if per_step else cfg.warmup_epochs
    main = None if build is None else build(optimizer, cfg, epochs - warmup, total_steps)
    if not warmup:
        return main
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=1 / (warmup + 1), total_iters=warmup)
    return ramp if main is None else lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])


def lr_trace(lr: float, cfg: Any, epochs: int, steps_per_epoch: int) -> Optional[list[float]]:
    """The lr of each of the run's epochs * steps_per_epoch steps, or None for a constant lr
    (scheduler=none without warm-up: the loops then leave the optimizer's lr untouched)."""
    if cfg is None or (cfg.name == "none" and not cfg.warmup_epochs):
        return None
    weight = torch.zeros(1, requires_grad=True)
    optimizer = SGD([weight], lr=lr)
    scheduler = _scheduler(optimizer, cfg, epochs, epochs * steps_per_epoch)
    per_step = SCHEDULES[cfg.name][1]
    trace: list[float] = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            trace.append(optimizer.param_groups[0]["lr"])
            if per_step:
                optimizer.step()  # a no-op (no gradient); torch expects it before scheduler.step()
                scheduler.step()
        if not per_step:
            optimizer.step()
            scheduler.step()
    return trace
