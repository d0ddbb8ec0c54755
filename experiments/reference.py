"""Rebuild the committed reference report in results/reference/ from scratch.

    python experiments/reference.py [--launcher batched|basic|joblib] [--seeds 10]

Runs the comparison sweeps (10 seeds each), the stress sweeps (3 seeds), the analytic probe,
then copies each sweep's collected tables into results/reference/data/ (small, committed) and
writes the report from those tables alone: the comparison sweeps as compared groups, the stress
sweeps in the Stability section. The sweeps live under results/sweeps/reference/
(git-ignored) and resume: rerunning this after an interruption only runs what is missing.
Prints each step's wall time. The default launcher, batched, trains each configuration's seeds as
one stack (the run directories and files are the basic launcher's; float32 results agree with
sequential runs to rounding, tests/test_batched.py); basic runs them one by one.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "reference"
SWEEPS = ROOT / "results" / "sweeps" / "reference"
TABLES = ("summary.parquet", "runs.parquet", "calibration.parquet", "steps.parquet")


def timed(label: str, command: list[str]) -> None:
    print(f"$ {' '.join(command)}", flush=True)
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True)
    print(f"{label}: {time.perf_counter() - started:.0f} s wall", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launcher", choices=["batched", "basic", "joblib"], default="batched")
    parser.add_argument("--seeds", type=int, default=10, help="seeds of the comparison sweeps")
    args = parser.parse_args()
    launcher = [] if args.launcher == "basic" else [f"hydra/launcher={args.launcher}"]
    compared = {name: [f"seed=range({args.seeds})"] for name in ("compare_single_label", "compare_multi_label")}
    stressed = {name: [] for name in ("stability", "stability_multi_label")}
    for name, overrides in {**compared, **stressed}.items():
        timed(f"sweep {name} ({args.launcher})", [
            sys.executable, "-m", "lossbench", "-m", f"experiment={name}", *overrides, *launcher,
            f"hydra.sweep.dir={SWEEPS / name}",
        ])
        target = OUT / "data" / name
        target.mkdir(parents=True, exist_ok=True)
        for table in TABLES:
            if (SWEEPS / name / table).exists():
                shutil.copy2(SWEEPS / name / table, target / table)
    timed("probe", [sys.executable, "-m", "lossbench.probe", "--out", str(OUT / "probe")])
    timed("report", [
        sys.executable, "-m", "lossbench.report", *(str(OUT / "data" / name) for name in compared),
        "--stress", *(str(OUT / "data" / name) for name in stressed),
        "--probe", str(OUT / "probe"), "--out", str(OUT),
    ])


if __name__ == "__main__":
    main()
