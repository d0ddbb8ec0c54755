"""Optimizers by name, built from `optim.*`; torch.optim's classes, minus their compiler hooks.

torch.optim wraps every optimizer's step, zero_grad and add_param_group (which the constructor
calls) in hooks for torch.compile, and each hook's first call imports torch._dynamo, which brings
torch._inductor's pieces and sympy: about 900 modules, over a second of every run's start-up
and about 170 MB of its memory. Outside torch.compile the hooks only switch grad mode off for the
step. The classes here call torch's undecorated methods (functools.wraps keeps them as
__wrapped__) with grad mode off: torch's arithmetic, by construction; lossbench compiles nothing.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch


def _eager(torch_class: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """torch_class with step, zero_grad and add_param_group called undecorated."""
    step = inspect.unwrap(torch_class.step)
    zero_grad = inspect.unwrap(torch_class.zero_grad)
    add_param_group = inspect.unwrap(torch_class.add_param_group)

    class Eager(torch_class):
        def add_param_group(self, param_group: dict[str, Any]) -> None:
            add_param_group(self, param_group)

        def zero_grad(self, set_to_none: bool = True) -> None:
            zero_grad(self, set_to_none)

        def step(self, closure=None):
            with torch.no_grad():  # what torch's hook does outside torch.compile (differentiable=False)
                return step(self, closure)

    Eager.__name__ = Eager.__qualname__ = torch_class.__name__
    Eager.__doc__ = f"torch.optim.{torch_class.__name__} without the compiler hooks (see {__name__})."
    return Eager


Adam, SGD, LBFGS = _eager(torch.optim.Adam), _eager(torch.optim.SGD), _eager(torch.optim.LBFGS)


def _adam(params, cfg: Any) -> torch.optim.Optimizer:
    return Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _sgd(params, cfg: Any) -> torch.optim.Optimizer:
    return SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)


OPTIMIZERS = {"adam": _adam, "sgd": _sgd}


def build_optimizer(cfg: Any, params) -> torch.optim.Optimizer:
    return OPTIMIZERS[cfg.name](params, cfg)
