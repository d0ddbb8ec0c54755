"""lossbench's speed and memory against the targets of issues #9 and #22, in one run so the ratios compare.

    python experiments/benchmark.py [--quick] [--fashion-root DIR] [--repeats 3] [--device auto]

Printed, each measured in a child process of its own (so each has its own peak RSS):
- loop: seconds per epoch of lossbench's `train` (stability signals on), a bare slicing loop
  (the same steps without signals) and the tutorial loop (pytorch/examples style: PIL image +
  ToTensor + Normalize per sample through a DataLoader); MLP 784-256-10, Adam, batch 128.
  Repeats are interleaved (lossbench, bare, tutorial, lossbench, ...) and the median is taken,
  so load on a shared machine hits the three alike;
- seeds: --seeds runs of one configuration one after another with `train` against one stack
  with `lossbench.training.train.train_runs` (what hydra/launcher=batched does): wall for all of them
  (evaluation included) and the epoch time each seed records;
- start-up: `python -m lossbench` (defaults, MNIST sample) wall minus its training epochs;
- sweep: `-m experiment=classic_losses seed=range(10)` with the basic launcher (40 runs;
  --quick: seed=range(1), one epoch): its wall against the sum of its runs' training-step time
  (each run's epoch_time_s: the step loop alone, no evaluation or files), and the ratio; then
  its wall split into those steps, the evaluation after each epoch (each run's eval_time_s) and
  the rest;
- peak RSS (ru_maxrss) of each child, and of a process that only imports what a run imports.
The last lines list each target with its measured value.

The images: --fashion-root DIR (the four Fashion-MNIST IDX .gz files) for the real 60,000, else
the shipped MNIST sample's 4,000 training digits tiled to --images: speed depends on sizes, not
pixel values.
--quick: 10,000 images, one epoch, one repeat, 3 seeds, a 4-run sweep (under a minute). Timings live
here, never in the tests.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# lossbench's loop / a bare loop; start-up s (wall minus training); peak RSS GB of a run on 60k
# images; a sweep's wall / the sum of its runs' training-step time.
TARGETS = {"loop": 1.05, "startup_s": 3.0, "rss_gb": 1.0, "sweep_ratio": 1.3}
LOOPS = ("lossbench", "bare", "tutorial")


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def images(args) -> tuple:
    """uint8 images (N, 784), long labels, and what they are."""
    import numpy as np

    if args.fashion_root:
        from lossbench.data.idx import read_idx

        root = Path(args.fashion_root)
        x = read_idx(root / "train-images-idx3-ubyte.gz")[: args.images]
        y = read_idx(root / "train-labels-idx1-ubyte.gz")[: args.images]
        return x.reshape(len(x), -1), y.astype(np.int64), f"Fashion-MNIST training images ({len(x):,})"
    from lossbench.data.mnist import SAMPLE_SPLIT_SEED, _read_sample

    x, y = _read_sample(SAMPLE_SPLIT_SEED)[:2]
    reps = -(-args.images // len(x))
    return (np.tile(x, (reps, 1))[: args.images], np.tile(y, reps)[: args.images].astype(np.int64),
            f"{args.images:,} images (the 4,000 training digits of the MNIST sample, tiled)")


def tensors(args, device):
    import torch

    from lossbench.data.mnist import image_tensors

    x, y, _ = images(args)
    x, _, (mean, std) = image_tensors(x, x[:1], "benchmark")
    x = x.float().div_(255.0).sub_(mean[0]).div_(std[0])  # one channel
    return x.to(device), torch.from_numpy(y).to(device)


def mlp():
    from lossbench.training.model import MLP

    return MLP(784, [256], 10, 0.0, 1.0)


def trainer_config(args):
    from omegaconf import OmegaConf

    from lossbench.config import TrainerConfig

    return OmegaConf.structured(TrainerConfig(epochs=args.epochs, batch_size=args.batch))


def dataset(args, device):
    from lossbench.data import Dataset
    from lossbench.losses import Task

    x, y = tensors(args, device)
    return Dataset("mnist", Task.single_label, 10, x, y, x[:1000], y[:1000], "sample", "benchmark")


def epoch_times(into: list):
    return lambda rows, *tables: into.extend(r["epoch_time_s"] for r in rows if r["split"] == "train")


def child_lossbench(args, device) -> dict:
    import torch
    from torch import nn

    from lossbench.losses import LOSSES
    from lossbench.training.train import Run, train

    data, times = dataset(args, device), []
    torch.manual_seed(0)
    model = mlp().to(device)
    train(Run(model, torch.optim.Adam(model.parameters(), 1e-3), torch.Generator().manual_seed(0), epoch_times(times),
              LOSSES["ce"], nn.CrossEntropyLoss(), data, trainer_config(args), device))
    return {"epoch_s": statistics.median(times)}


def child_bare(args, device) -> dict:
    import torch
    from torch import nn

    x, y = tensors(args, device)
    torch.manual_seed(0)
    model, criterion = mlp().to(device), nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    generator, times = torch.Generator().manual_seed(0), []
    for _ in range(args.epochs):
        started = time.perf_counter()
        order = torch.randperm(len(x), generator=generator).to(device)
        for start in range(0, len(x), args.batch):
            idx = order[start : start + args.batch]
            loss = criterion(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return {"epoch_s": statistics.median(times)}


def child_tutorial(args, device) -> dict:
    import torch
    from PIL import Image
    from torch import nn
    from torch.utils.data import DataLoader
    from torchvision import transforms

    pixels, labels, _ = images(args)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])

    class MnistLike(torch.utils.data.Dataset):  # torchvision.datasets.MNIST's __getitem__
        def __len__(self):
            return len(pixels)

        def __getitem__(self, i):
            return transform(Image.fromarray(pixels[i].reshape(28, 28), mode="L")), int(labels[i])

    torch.manual_seed(0)
    loader = DataLoader(MnistLike(), batch_size=args.batch, shuffle=True)
    model, criterion = nn.Sequential(nn.Flatten(), mlp()).to(device), nn.CrossEntropyLoss()
    optimizer, times = torch.optim.Adam(model.parameters(), 1e-3), []
    for _ in range(args.epochs):
        started = time.perf_counter()
        for xb, yb in loader:
            loss = criterion(model(xb.to(device)), yb.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - started)
    return {"epoch_s": statistics.median(times)}


def seed_runs(args, device, times: list):
    import torch
    from torch import nn

    from lossbench.losses import LOSSES
    from lossbench.training.train import Run

    data = dataset(args, device)

    def run(seed: int) -> Run:
        torch.manual_seed(seed)
        model = mlp().to(device)
        return Run(model, torch.optim.Adam(model.parameters(), 1e-3), torch.Generator().manual_seed(seed),
                   epoch_times(times), LOSSES["ce"], nn.CrossEntropyLoss(), data, trainer_config(args), device)

    return [run(seed) for seed in range(args.seeds)]


def child_sequential(args, device) -> dict:
    from lossbench.training.train import train

    times = []
    runs = seed_runs(args, device, times)
    started = time.perf_counter()
    for run in runs:
        train(run)
    return {"wall_s": time.perf_counter() - started, "epoch_s": statistics.median(times)}


def child_batched(args, device) -> dict:
    from lossbench.training.train import train_runs

    times = []
    runs = seed_runs(args, device, times)
    started = time.perf_counter()
    train_runs(runs)
    return {"wall_s": time.perf_counter() - started, "epoch_s": statistics.median(times)}


def child_imports(args, device) -> dict:
    """What a run imports and builds before its data: the RSS floor of any run."""
    import torch

    import lossbench.app  # noqa: F401
    from lossbench.training.optim import Adam

    Adam(mlp().parameters(), 1e-3)  # a run's optimizer (torch.optim's own would import torch._dynamo)
    return {}


CHILDREN = {name.removeprefix("child_"): fn for name, fn in globals().items() if name.startswith("child_")}


def child(args) -> None:
    import torch

    from lossbench.training.device import resolve_device

    torch.set_num_threads(args.threads)
    result = CHILDREN[args.child](args, resolve_device(args.device))
    print(json.dumps({**result, "rss_gb": peak_rss_gb()}))


def forwarded(args) -> list[str]:
    options = ["--images", str(args.images), "--epochs", str(args.epochs), "--batch", str(args.batch),
               "--threads", str(args.threads), "--seeds", str(args.seeds), "--device", args.device]
    return options + (["--fashion-root", args.fashion_root] if args.fashion_root else [])


def measure(args, name: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", name, *forwarded(args)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def lossbench_cli(*overrides: str) -> tuple[float, list[dict], float]:
    """`python -m lossbench OVERRIDES` in a fresh process: (wall s, the summary.json of each of
    its runs, peak RSS GB); runs in a temporary directory."""
    with tempfile.TemporaryDirectory() as tmp:
        script = ("import json, resource, runpy, sys\n"
                  f"sys.argv = ['lossbench', *{list(overrides)!r}, 'hydra.run.dir={tmp}/run', 'hydra.sweep.dir={tmp}/sweep']\n"
                  "try:\n    runpy.run_module('lossbench', run_name='__main__')\nexcept SystemExit:\n    pass\n"
                  "print(json.dumps({'rss_gb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))\n")
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - started
        summaries = [json.loads(path.read_text()) for path in sorted(Path(tmp).glob("**/summary.json"))]
        return wall, summaries, json.loads(done.stdout.strip().splitlines()[-1])["rss_gb"]


def training_s(summary: dict) -> float:
    """A run's training-step time: its mean epoch time (the step loop alone) x its epochs."""
    return summary["mean_epoch_time_s"] * summary["epochs_completed"]


def evaluation_s(summary: dict) -> float:
    """A run's evaluation time: its mean eval_time_s (val and test passes, metrics, temperature
    scaling after each epoch) x its epochs."""
    return summary["mean_eval_time_s"] * summary["epochs_completed"]


def verdict(value: float, target: float, unit: str) -> str:
    if value <= target:
        return f"target <= {target:g}{unit}: met"
    return f"target <= {target:g}{unit}: missed, {value / target:.2f}x the target"


def report(args) -> None:
    import torch

    measured: dict[str, float] = {}  # target name -> measured value, listed at the end
    print(f"{images(args)[2]}, MLP 784-256-10, Adam, batch {args.batch}, {args.threads} threads, device "
          f"{args.device}, {args.epochs} epoch(s) x {args.repeats} interleaved repeat(s); torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    loops: dict[str, list[dict]] = {name: [] for name in LOOPS}
    for _ in range(args.repeats):
        for name in LOOPS:
            loops[name].append(measure(args, name))
    epoch = {name: statistics.median(r["epoch_s"] for r in runs) for name, runs in loops.items()}
    for name in LOOPS:
        rss = max(r["rss_gb"] for r in loops[name])
        print(f"loop {name:>10}: {epoch[name]:6.3f} s/epoch  peak RSS {rss:.2f} GB")
    ratio = epoch["lossbench"] / epoch["bare"]
    measured["loop"] = ratio
    print(f"lossbench / bare: {ratio:.3f}x  ({verdict(ratio, TARGETS['loop'], 'x')});"
          f" tutorial / lossbench: {epoch['tutorial'] / epoch['lossbench']:.1f}x slower")

    seeds = {name: measure(args, name) for name in ("sequential", "batched")}
    for name, r in seeds.items():
        print(f"{args.seeds} seeds {name:>10}: {r['wall_s']:6.1f} s wall, {r['epoch_s']:6.3f} s/epoch per seed"
              f"  peak RSS {r['rss_gb']:.2f} GB")
    speedup = seeds['sequential']['wall_s'] / seeds['batched']['wall_s']
    print(f"sequential / batched wall on {args.device}: {speedup:.2f}x (above 1: stacking the seeds pays; "
          f"reference.py stacks them by default on cuda only)")

    floor = measure(args, "imports")["rss_gb"]
    epochs = 1 if args.quick else 10
    wall, (summary,), rss = lossbench_cli(f"trainer.epochs={epochs}", f"trainer.threads={args.threads}")
    training = training_s(summary)
    measured["startup_s"] = wall - training
    print(f"start-up, python -m lossbench trainer.epochs={epochs} (MNIST sample): {wall:.1f} s wall, "
          f"{training:.1f} s training epochs, {wall - training:.1f} s else ({verdict(wall - training, TARGETS['startup_s'], ' s')})")
    print(f"peak RSS: {floor:.2f} GB for a run's imports alone (torch {torch.__version__}), {rss:.2f} GB for that run")
    if args.fashion_root:
        _, _, rss = lossbench_cli("dataset=fashion_mnist", f"dataset.root={args.fashion_root}", "trainer.epochs=1",
                                  f"trainer.threads={args.threads}")
        measured["rss_gb"] = rss
        print(f"peak RSS, one run on Fashion-MNIST (60,000 images, 1 epoch): {rss:.2f} GB "
              f"({verdict(rss, TARGETS['rss_gb'], ' GB')})")
    else:
        rss = max(r["rss_gb"] for r in loops["lossbench"])
        print(f"peak RSS, lossbench's loop on {args.images:,} images: {rss:.2f} GB ({verdict(rss, TARGETS['rss_gb'], ' GB')})")

    sweep = ["-m", "experiment=classic_losses", "seed=range(1)" if args.quick else "seed=range(10)",
             f"trainer.threads={args.threads}", *(["trainer.epochs=1"] if args.quick else [])]
    wall, summaries, _ = lossbench_cli(*sweep)
    training = sum(training_s(summary) for summary in summaries)
    evaluation = sum(evaluation_s(summary) for summary in summaries)
    measured["sweep_ratio"] = wall / training
    print(f"sweep {' '.join(sweep)}, basic launcher ({len(summaries)} runs): {wall:.1f} s wall, "
          f"{training:.1f} s training steps: {wall / training:.2f}x ({verdict(wall / training, TARGETS['sweep_ratio'], 'x')})")
    print(f"  of its wall: {training:.1f} s training steps, {evaluation:.1f} s evaluation after each epoch, "
          f"{wall - training - evaluation:.1f} s else (start-up, Hydra, run set-up, files, collect); "
          f"wall / (training + evaluation): {wall / (training + evaluation):.2f}x")

    print("targets:")
    for name, target in TARGETS.items():
        value = measured.get(name)
        shown = "not measured here (needs --fashion-root)" if value is None else f"{value:.3f}: {verdict(value, target, '')}"
        print(f"  {name:<12} {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60_000, help="tiled sample size (without --fashion-root)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=10, help="seeds trained one by one and as one stack")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of the loop timings")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu) | cpu | cuda | mps")
    parser.add_argument("--fashion-root", help="folder with the Fashion-MNIST IDX .gz files")
    parser.add_argument("--quick", action="store_true", help="a small version, under a minute")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.quick:
        args.images, args.epochs, args.repeats, args.seeds = 10_000, 1, 1, 3
    report(args)


if __name__ == "__main__":
    main()
