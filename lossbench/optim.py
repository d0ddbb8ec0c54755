"""Optimizers by name, built from `optim.*`."""

from __future__ import annotations

from typing import Any

import torch


def _adam(params, cfg: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _sgd(params, cfg: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           nesterov=cfg.nesterov)


OPTIMIZERS = {"adam": _adam, "sgd": _sgd}


def build_optimizer(cfg: Any, params) -> torch.optim.Optimizer:
    return OPTIMIZERS[cfg.name](params, cfg)
