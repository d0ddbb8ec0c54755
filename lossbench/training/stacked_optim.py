"""Adam and SGD over stacked parameters (seed first: shape (K, ...)), with a per-seed mask.

Adam and SGD are elementwise, so one optimiser over stacked tensors is K independent ones as long
as every seed takes every step. A seed that skips a step (trainer.on_nonfinite=skip) must leave
its parameters, its moments and its step count untouched, and Adam's bias correction then needs
that seed's own step count: hence these few lines rather than torch.optim. They follow the
formulas of torch.optim's single-tensor Adam and SGD operation for operation, and take their
hyperparameters from the torch optimizer they stand in for (tests/training/test_batched.py holds them
to torch.optim).
"""

from __future__ import annotations

import torch
from torch import Tensor


class NotStackable(ValueError):
    """An optimizer setting these formulas do not reproduce."""


def _per_seed(values: Tensor, like: Tensor) -> Tensor:
    """A (K,) tensor shaped to broadcast against a stacked (K, ...) tensor, in its dtype."""
    return values.to(like.dtype).view(-1, *[1] * (like.dim() - 1))


class StackedAdam:
    def __init__(self, params: dict[str, Tensor], lr: float, betas: tuple[float, float], eps: float,
                 weight_decay: float):
        self.params, self.lr, (self.beta1, self.beta2), self.eps = params, lr, betas, eps
        self.weight_decay = weight_decay
        seeds = next(iter(params.values())).shape[0]
        device = next(iter(params.values())).device
        self.steps = torch.zeros(seeds, dtype=torch.float64, device=device)
        self.exp_avg = {name: torch.zeros_like(p) for name, p in params.items()}
        self.exp_avg_sq = {name: torch.zeros_like(p) for name, p in params.items()}

    @torch.no_grad()
    def step(self, take: Tensor) -> None:
        """One step for the seeds where `take` (bool, (K,)) is true; the others keep everything."""
        steps = self.steps + take
        # torch.optim computes these in Python doubles; float64 tensors give the same numbers.
        step_size = self.lr / (1 - self.beta1 ** steps)
        bias_correction2_sqrt = (1 - self.beta2 ** steps).sqrt()
        for name, param in self.params.items():
            grad = param.grad
            if self.weight_decay != 0:
                grad = grad.add(param, alpha=self.weight_decay)
            exp_avg = self.exp_avg[name].lerp(grad, 1 - self.beta1)
            exp_avg_sq = (self.exp_avg_sq[name] * self.beta2).addcmul(grad, grad, value=1 - self.beta2)
            denom = (exp_avg_sq.sqrt() / _per_seed(bias_correction2_sqrt, param)).add(self.eps)
            # addcdiv's order of operations: param + (value * exp_avg) / denom
            updated = param + (-_per_seed(step_size, param) * exp_avg) / denom
            mask = _per_seed(take, param).bool()
            param.copy_(torch.where(mask, updated, param))
            self.exp_avg[name] = torch.where(mask, exp_avg, self.exp_avg[name])
            self.exp_avg_sq[name] = torch.where(mask, exp_avg_sq, self.exp_avg_sq[name])
        self.steps = steps

    def keep(self, seeds: Tensor) -> None:
        """Drop every seed not in `seeds` (indices into the stack) from the state."""
        self.steps = self.steps[seeds]
        self.exp_avg = {name: t[seeds] for name, t in self.exp_avg.items()}
        self.exp_avg_sq = {name: t[seeds] for name, t in self.exp_avg_sq.items()}


class StackedSGD:
    def __init__(self, params: dict[str, Tensor], lr: float, momentum: float, dampening: float,
                 weight_decay: float, nesterov: bool = False):
        self.params, self.lr, self.momentum, self.dampening = params, lr, momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        seeds = next(iter(params.values())).shape[0]
        self.steps = torch.zeros(seeds, dtype=torch.long, device=next(iter(params.values())).device)
        self.buffer = {name: torch.zeros_like(p) for name, p in params.items()}

    @torch.no_grad()
    def step(self, take: Tensor) -> None:
        for name, param in self.params.items():
            grad = param.grad
            if self.weight_decay != 0:
                grad = grad.add(param, alpha=self.weight_decay)
            mask = _per_seed(take, param).bool()
            if self.momentum != 0:
                # torch.optim starts each buffer as a copy of the first gradient.
                later = (self.buffer[name] * self.momentum).add(grad, alpha=1 - self.dampening)
                buffer = torch.where(_per_seed(self.steps == 0, param).bool(), grad, later)
                self.buffer[name] = torch.where(mask, buffer, self.buffer[name])
                grad = grad.add(buffer, alpha=self.momentum) if self.nesterov else buffer
            param.copy_(torch.where(mask, param.add(grad, alpha=-self.lr), param))
        self.steps = self.steps + take

    def keep(self, seeds: Tensor) -> None:
        self.steps = self.steps[seeds]
        self.buffer = {name: t[seeds] for name, t in self.buffer.items()}


def stacked_optimizer(optimizer: torch.optim.Optimizer, params: dict[str, Tensor]):
    """The stacked counterpart of `optimizer` (one seed's torch optimizer, as build_optimizer made
    it) over `params`; NotStackable if it uses a setting these formulas do not cover."""
    if len(optimizer.param_groups) != 1:
        raise NotStackable("one parameter group expected")
    group = optimizer.param_groups[0]
    if group.get("maximize") or group.get("differentiable"):
        raise NotStackable("maximize and differentiable are not covered")
    if isinstance(optimizer, torch.optim.Adam) and not group["amsgrad"] and not group["decoupled_weight_decay"]:
        return StackedAdam(params, group["lr"], group["betas"], group["eps"], group["weight_decay"])
    if isinstance(optimizer, torch.optim.SGD):
        return StackedSGD(params, group["lr"], group["momentum"], group["dampening"], group["weight_decay"],
                          group["nesterov"])
    raise NotStackable(f"{type(optimizer).__name__} with {group} is not covered")
