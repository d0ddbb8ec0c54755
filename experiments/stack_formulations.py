"""Does stacking seeds pay on this machine in any formulation? Issue #22 asked for explicit
batched matmuls to be measured against vmap (what hydra/launcher=batched uses) and one-by-one.

    python experiments/stack_formulations.py [--seeds 10] [--steps 100] [--rounds 6] [--threads 2]

K of lossbench's MLP 784-256-10 (lossbench.training.model.MLP), Adam, batch 128 of random inputs, cross-entropy:
- sequential: K models, each its own step (what the basic launcher does K times);
- vmap: the K models' parameters stacked, torch.func.vmap over functional_call (lossbench.training.batched);
- bmm: the same stacked weights as explicit batched matmuls (torch.baddbmm), no vmap.
Each formulation steps `--steps` times per round; the rounds are interleaved (sequential, vmap,
bmm, sequential, ...) so that load on a shared machine hits the three alike. Prints each one's
median ms per step of all K seeds and its ratio to sequential (above 1: stacking pays).
Arithmetic only: no data slicing by a loop, no signals, no files.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from lossbench.training.model import MLP

BATCH, POOL = 128, 4096


def mlp() -> MLP:
    return MLP(784, [256], 10, 0.0, 1.0)


def formulations(models: list[nn.Module], x: torch.Tensor, y: torch.Tensor) -> dict:
    """name -> a function of the step count that trains that many steps of every seed and returns
    its parameters stacked as nn.Linear holds them: (weight 1, bias 1, weight 2, bias 2), seed
    first. Each formulation trains copies of `models` on the same batches (its own generator,
    seeded alike): the three compute the same steps."""
    k, criterion = len(models), nn.CrossEntropyLoss()

    def batches(generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, POOL, (k, BATCH), generator=generator)

    def sequential() -> Callable[[int], tuple[torch.Tensor, ...]]:
        own, generator = [copy.deepcopy(m) for m in models], torch.Generator().manual_seed(0)
        optimizers = [torch.optim.Adam(m.parameters(), 1e-3) for m in own]

        def train(steps: int) -> tuple[torch.Tensor, ...]:
            for _ in range(steps):
                for model, optimizer, index in zip(own, optimizers, batches(generator)):
                    loss = criterion(model(x[index]), y[index])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
            return tuple(torch.stack([m.net[i].get_parameter(kind).detach() for m in own])
                         for i in (0, 2) for kind in ("weight", "bias"))
        return train

    def vmapped() -> Callable[[int], tuple[torch.Tensor, ...]]:
        params, buffers = stack_module_state(models)
        base, generator = copy.deepcopy(models[0]).to("meta"), torch.Generator().manual_seed(0)
        logits = vmap(lambda p, b, xb: functional_call(base, (p, b), (xb,)))
        losses = vmap(criterion)
        optimizer = torch.optim.Adam(params.values(), 1e-3)

        def train(steps: int) -> tuple[torch.Tensor, ...]:
            for _ in range(steps):
                index = batches(generator)
                loss = losses(logits(params, buffers, x[index]), y[index]).sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            return tuple(params[f"net.{i}.{kind}"].detach() for i in (0, 2) for kind in ("weight", "bias"))
        return train

    def batched_matmuls() -> Callable[[int], tuple[torch.Tensor, ...]]:
        first, second = (torch.stack([m.net[i].weight.detach().T for m in models]).requires_grad_() for i in (0, 2))
        bias1, bias2 = (torch.stack([m.net[i].bias.detach() for m in models])[:, None].requires_grad_() for i in (0, 2))
        optimizer, generator = torch.optim.Adam([first, bias1, second, bias2], 1e-3), torch.Generator().manual_seed(0)

        def train(steps: int) -> tuple[torch.Tensor, ...]:
            for _ in range(steps):
                index = batches(generator)
                hidden = torch.baddbmm(bias1, x[index], first).relu_()
                out = torch.baddbmm(bias2, hidden, second)
                per_example = nn.functional.cross_entropy(out.flatten(0, 1), y[index].flatten(), reduction="none")
                loss = per_example.view(k, BATCH).mean(1).sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            return (first.detach().transpose(1, 2), bias1.detach()[:, 0], second.detach().transpose(1, 2),
                    bias2.detach()[:, 0])
        return train

    return {"sequential": sequential(), "vmap": vmapped(), "bmm": batched_matmuls()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(POOL, 784, generator=generator), torch.randint(0, 10, (POOL,), generator=generator)
    torch.manual_seed(0)
    runs = formulations([mlp() for _ in range(args.seeds)], x, y)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, train in runs.items():
            train(5)  # warm-up: allocations and the optimiser state
            started = time.perf_counter()
            train(args.steps)
            times[name].append((time.perf_counter() - started) / args.steps * 1e3)
    sequential = statistics.median(times["sequential"])
    print(f"{args.seeds} MLPs 784-256-10, Adam, batch {BATCH}, {args.threads} threads, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}; median of {args.rounds} interleaved rounds of {args.steps} steps")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:>10}: {median:6.2f} ms per step of all seeds; sequential / {name}: {sequential / median:.2f}x")


if __name__ == "__main__":
    main()
