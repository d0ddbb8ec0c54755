"""K seeds of one configuration trained as one stacked model: the weights train.py's loop
(`train_runs`) steps when it is handed more than one run.

A model this small leaves the CPU (and more so a GPU) waiting on per-step overhead; stacking the
seeds' weights (seed first: (K, ...)) turns K small matmuls into one batched one. Each seed keeps
what makes it that seed: its initialisation (its model is built by run.py after
torch.manual_seed(seed)), its data order and augmentation draws (its own generator, drawn by the
loop as for a single run), its optimiser state (lossbench.training.stacked_optim) and its stability signals
(the loop keeps one entry per seed). Which configurations a stack reproduces: `unstackable`.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from lossbench.losses import LossSpec
from lossbench.training.stacked_optim import stacked_optimizer
from lossbench.training.train import Run

def no_scaler(device: torch.device) -> torch.amp.GradScaler:
    """A disabled GradScaler: stacks run in float32 (unstackable refuses the rest), never scaled."""
    return torch.amp.GradScaler(device.type, enabled=False)


def unstackable(cfg: Any) -> Optional[str]:
    """Why the seeds of this configuration (a job's config, hydra node included) cannot be trained
    as one stack and match their sequential runs, or None if they can."""
    from lossbench.training.model import unstackable_model

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
        return (f"trainer.early_stop_patience={cfg.trainer.early_stop_patience}: each seed would stop at its "
                "own epoch, which the tests do not hold a stack to")
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


class Stack:
    """The loop's weights for K seeds of one configuration: their parameters stacked (seed first),
    one vmapped forward and backward, lossbench.training.stacked_optim's optimiser. The seed models only
    lend their structure and receive their seed's weights when evaluated or ended."""

    def __init__(self, runs: list[Run], spec: LossSpec, criterion: nn.Module):
        self.models = [run.model for run in runs]  # the live seeds'
        self.params, self.buffers = stack_module_state(self.models)
        self.optimizer = stacked_optimizer(runs[0].optimizer, self.params)
        self.lr = self.optimizer.lr
        self.scaler = no_scaler(runs[0].device)
        self.every_seed = torch.ones(len(runs), dtype=torch.bool, device=runs[0].device)
        # The stacked weights are handed in at each call; the base only lends its structure.
        self.base = copy.deepcopy(runs[0].model).to("meta")
        self._logits = vmap(lambda p, b, xb: functional_call(self.base, (p, b), (xb,)))
        self._loss = vmap(lambda logits, yb: criterion(spec.activation(logits), yb))

    def train_mode(self) -> None:
        self.base.train()

    def logits(self, xb: Tensor) -> Tensor:
        return self._logits(self.params, self.buffers, xb)

    def loss(self, logits: Tensor, yb: Tensor) -> Tensor:
        return self._loss(logits, yb)

    def backward(self, loss: Tensor) -> Tensor:
        for p in self.params.values():
            p.grad = None
        loss.sum().backward()  # seeds share no weights: each gets its own loss's gradient
        return stacked_grad_norm(self.params)

    def clip(self, max_norm: float, grad_norm: Tensor) -> None:
        clip_stacked(self.params, max_norm, grad_norm)

    def step(self, take: Optional[Tensor]) -> None:
        self.optimizer.step(self.every_seed if take is None else take)

    def set_lr(self, lr: float) -> None:
        self.optimizer.lr = lr

    def model(self, position: int) -> nn.Module:
        """The seed at `position` as a model of its own, its weights copied out of the stack."""
        model = self.models[position]
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(self.params[name][position])
        return model

    def keep(self, positions: Tensor) -> None:
        """Only the seeds at `positions` go on."""
        self.params = {name: p.detach()[positions].requires_grad_() for name, p in self.params.items()}
        self.buffers = {name: b[positions] for name, b in self.buffers.items()}
        self.optimizer.params = self.params
        self.optimizer.keep(positions)
        self.every_seed = self.every_seed[positions]
        self.models = [self.models[p] for p in positions.tolist()]
