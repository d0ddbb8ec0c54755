"""Memory a run needs, estimated before any data loads, and the refusal of what this machine
cannot hold. Each dataset states its own footprint (DatasetInfo.footprint); the model is built
on the meta device, which allocates nothing, so every model is measured the same way: its
weights counted there, its activations on one example through uninitialised real weights (any
computation on the meta device imports torch's compiler stack, torch._dynamo and sympy, over a
second of a run's start-up)."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from lossbench.errors import ConfigError

# Parameters, gradients and Adam's two moments: four float32 copies of every weight.
BYTES_PER_PARAMETER = 16
# A float32 activation kept for the backward pass, and its gradient.
BYTES_PER_ACTIVATION = 8


def memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def model_bytes(model: nn.Module, n_in: int, batch_size: int) -> tuple[int, int]:
    """(weights, bytes): the weights with their training state, and one training batch's
    activations. `model` is built on the meta device; the activations are counted by running one
    example through it on the CPU (weights allocated, not initialised: no random draws) and
    scaled by the batch size, unless its weights alone cannot fit."""
    weights = sum(p.numel() for p in model.parameters())
    if BYTES_PER_PARAMETER * weights > memory_bytes():
        return weights, BYTES_PER_PARAMETER * weights
    activations = []
    # Module.to_empty, but with torch.empty: to_empty's empty_like on a meta tensor imports sympy.
    model = model._apply(lambda t: torch.empty(t.shape, dtype=t.dtype)).eval()  # eval: batch norm takes one example
    hooks = [module.register_forward_hook(lambda m, i, out: activations.append(out.numel()))
             for module in model.modules() if not list(module.children())]
    try:
        with torch.no_grad():
            model(torch.zeros(1, n_in))
    finally:
        for hook in hooks:
            hook.remove()
    return weights, BYTES_PER_PARAMETER * weights + BYTES_PER_ACTIVATION * batch_size * sum(activations)


def _brought_bytes(model: nn.Module, n_in: int, batch_size: int) -> tuple[int, int]:
    """model_bytes, or the weights alone for a model lossbench did not define whose forward
    fails on the meta device (its own error, or an op meta tensors lack): the one-batch check on
    real rows after loading (brought_models.check_output) names that error in one line."""
    from lossbench.training.brought_models import Brought

    try:
        return model_bytes(model, n_in, batch_size)
    except Exception:
        if not isinstance(model, Brought):
            raise
        weights = sum(p.numel() for p in model.parameters())
        return weights, BYTES_PER_PARAMETER * weights


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def size_problems(cfg: Any, n_out: int) -> list[str]:
    """The data and the model this config would build, refused when they cannot be built on
    this input or do not fit in this machine's memory."""
    from lossbench.data import DATASETS
    from lossbench.training.model import build_model

    data = DATASETS[cfg.dataset.name].footprint(cfg.dataset)
    if data is None:
        return []
    try:
        with torch.device("meta"):
            model = build_model(cfg.model, data.n_features, n_out, data.image_shape)
        weights, model_needs = _brought_bytes(model, data.n_features, cfg.trainer.batch_size)
    except ConfigError as error:
        return [str(error)]
    available = memory_bytes()
    if data.bytes + model_needs <= available:
        return []
    return [f"this run needs about {_gib(data.bytes + model_needs)} and this machine has "
            f"{_gib(available)}: the data {_gib(data.bytes)} ({data.sizes}); the model "
            f"{_gib(model_needs)} (model={cfg.model.name} on {data.n_features:,} inputs: {weights:,} "
            f"weights with their gradients and optimizer state, and the activations of a "
            f"trainer.batch_size={cfg.trainer.batch_size} batch). Shrink the "
            + ("data" if data.bytes >= model_needs else "model")]
