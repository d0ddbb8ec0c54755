"""experiments/stack_formulations.py times three ways to train K seeds; they must train the same
steps for the timing to compare like with like."""

import runpy
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "stack_formulations.py"


def test_the_three_formulations_train_the_same_parameters():
    """In float64, where the formulations' different kernels agree to ~1e-14: a wrong batch,
    seed, loss scale or layer shows as a difference of 1e-5 or more."""
    script = runpy.run_path(str(SCRIPT))
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(script["POOL"], 784, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 10, (script["POOL"],), generator=generator)
    torch.manual_seed(0)
    models = [script["mlp"]().double() for _ in range(3)]
    start = [torch.stack([m.net[i].get_parameter(kind).detach().clone() for m in models])
             for i in (0, 2) for kind in ("weight", "bias")]
    trained = {name: train(3) for name, train in script["formulations"](models, x, y).items()}
    for before, after in zip(start, trained["sequential"]):
        assert not torch.equal(before, after)  # every tensor trained
    for name in ("vmap", "bmm"):
        for ours, sequential in zip(trained[name], trained["sequential"], strict=True):
            torch.testing.assert_close(ours, sequential, rtol=0, atol=1e-10)


def test_the_script_prints_each_formulation_against_sequential():
    done = subprocess.run([sys.executable, str(SCRIPT), "--seeds", "2", "--steps", "2", "--rounds", "1",
                           "--threads", "1"], capture_output=True, text=True, timeout=120, check=True)
    lines = done.stdout.splitlines()
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["sequential", "vmap", "bmm"]
    assert all("sequential / " in line for line in lines[1:])
