"""experiments/stack_formulations.py times three ways to train K seeds; they must train the same
steps for the timing to compare like with like."""

import runpy
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "stack_formulations.py"


def test_the_three_formulations_train_the_same_weights():
    script = runpy.run_path(str(SCRIPT))
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(script["POOL"], 784, generator=generator)
    y = torch.randint(0, 10, (script["POOL"],), generator=generator)
    torch.manual_seed(0)
    models = [script["mlp"]() for _ in range(3)]
    start = torch.stack([m[0].weight.detach().clone() for m in models])
    weights = {name: train(3) for name, train in script["formulations"](models, x, y).items()}
    assert not torch.equal(weights["sequential"], start)  # they trained
    for name in ("vmap", "bmm"):
        torch.testing.assert_close(weights[name], weights["sequential"], rtol=1e-4, atol=1e-5)


def test_the_script_prints_each_formulation_against_sequential():
    done = subprocess.run([sys.executable, str(SCRIPT), "--seeds", "2", "--steps", "2", "--rounds", "1",
                           "--threads", "1"], capture_output=True, text=True, timeout=120, check=True)
    lines = done.stdout.splitlines()
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["sequential", "vmap", "bmm"]
    assert all("sequential / " in line for line in lines[1:])
