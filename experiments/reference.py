"""Rebuild the committed reference study in results/reference/ from scratch.

    python experiments/reference.py [--launcher auto|batched|basic|joblib] [--seeds 10]
        [--study-seeds 5] [--stress-seeds 10] [--fashion-root DIR] [--only STEP ...]

Steps, each a Hydra sweep (an experiment preset) whose runs live under results/sweeps/reference/
(git-ignored) and resume: rerunning after an interruption only runs what is missing.
  compared (their groups are compared in the report):
    compare_losses, compare_losses_multi_label   every loss at shared settings, --seeds (10): the
                                                 presets all_losses, all_losses_multi_label (the
                                                 step names are the committed data dirs' names)
    tuned_single_label                           each loss at its tuned setting (if the preset exists)
    noise, imbalance, multi_label_images, binary  the condition studies, --study-seeds (5)
    fashion_full                                 full-size Fashion-MNIST, with --fashion-root only
  stress (the Stability section only):
    stability, stability_multi_label, precision  --stress-seeds (10: Fisher's exact test on k/n
                                                 diverged runs needs about 10 per cell to survive
                                                 Holm over a grid; 5/5 vs 0/5 gives p = 0.008
                                                 before correction); precision with
                                                 loss_scaling=dynamic only (its other half is
                                                 stability's bf16/16 runs)
  probe                                          the analytic probe (results/reference/probe/)
Each step prints its run count and wall time. The default launcher, auto, is batched on a CUDA
machine, which trains each configuration's seeds as one stack (run dirs and files as the basic
launcher's; float32 results agree with sequential runs to rounding, tests/training/test_batched.py), and
basic elsewhere, where the stack is slower than one run after another (lossbench.training.device.seed_launcher). Then each sweep's collected tables are copied into
results/reference/data/<step>/ and the report is written from those copies alone, so a second run
on the same tables rewrites a byte-identical report.md.

Committed (small): per step summary.parquet, epochs.parquet (metrics per epoch; runs.parquet in data
collected before #19), calibration.parquet,
steps.parquet, per_class.parquet and tuning.parquet where present, and for the compared steps
predictions.parquet cut to which test example each run got right (run, view, example, correct:
what the crossed seeds x test-examples test reads); the report (md, html, figures, CSV tables);
the probe's outputs. Not committed: the class probabilities and the run dirs.

Each seed of a compared step trains on its own data split: the presets set
`dataset.split_seed: ${seed}`, so every CI over seeds also covers the split
(docs/statistics.md).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lossbench.runs.collect import EPOCHS, EPOCHS_BEFORE
from lossbench.training.device import seed_launcher
from lossbench.report.load import COLUMNS

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "reference"
SWEEPS = ROOT / "results" / "sweeps" / "reference"
PRESETS = ROOT / "conf" / "experiment"
PREDICTION_COLUMNS = COLUMNS["predictions"]
KEPT = ("summary.parquet", EPOCHS, "calibration.parquet", "steps.parquet",
        "per_class.parquet", "tuning.parquet")


@dataclass
class Step:
    name: str  # the sweep dir and data dir
    preset: str
    seeds: str | None  # which seed count: seeds | study | stress; None: the preset's own
    stress: bool = False
    overrides: list[str] = field(default_factory=list)


def steps(fashion_root: str | None) -> list[Step]:
    out = [Step("compare_losses", "all_losses", "seeds"),
           Step("compare_losses_multi_label", "all_losses_multi_label", "seeds"),
           Step("tuned_single_label", "tuned_single_label", None),
           Step("noise", "noise", "study"),
           Step("imbalance", "imbalance", "study"),
           Step("multi_label_images", "multi_label_images", "study"),
           Step("binary", "binary", "study")]
    if fashion_root is not None:
        out.append(Step("fashion_full", "classic_losses", "seeds", overrides=[
            "dataset=fashion_mnist", f"dataset.root={Path(fashion_root).resolve()}",
            "dataset.source=full"]))
    out += [Step(name, name, "stress", stress=True) for name in ("stability", "stability_multi_label")]
    # precision's loss_scaling=none half repeats stability's reduced-precision runs exactly
    out.append(Step("precision", "precision", "stress", stress=True,
                    overrides=["trainer.loss_scaling=dynamic"]))
    return [s for s in out if (PRESETS / f"{s.preset}.yaml").exists()]


def keep_tables(sweep: Path, target: Path, predictions: bool) -> None:
    """Copy the committed (small) tables of a collected sweep into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    for table in KEPT:
        if (sweep / table).exists():
            shutil.copy2(sweep / table, target / table)
    if (sweep / EPOCHS_BEFORE).exists() and not (sweep / EPOCHS).exists():  # collected before #19
        shutil.copy2(sweep / EPOCHS_BEFORE, target / EPOCHS)
    if predictions and (sweep / "predictions.parquet").exists():
        # which test example each run got right: all the report's crossed test over seeds and
        # test examples reads, a few MB instead of every class probability
        pd.read_parquet(sweep / "predictions.parquet", columns=PREDICTION_COLUMNS).to_parquet(
            target / "predictions.parquet", index=False)


def run_count(directory: Path) -> int:
    table = directory / "summary.parquet"
    return len(pd.read_parquet(table, columns=["run"])) if table.exists() else 0


def timed(label: str, command: list[str], runs_in: Path | None = None) -> float:
    print(f"$ {' '.join(command)}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:  # its own output above says why; finished runs are kept
        sys.exit(f"{label}: failed with exit code {done.returncode} after {seconds:.0f} s; "
                 "rerunning the same command resumes where it stopped")
    count = f"{run_count(runs_in)} runs, " if runs_in is not None else ""
    print(f"{label}: {count}{seconds:.0f} s wall", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launcher", choices=["auto", "batched", "basic", "joblib"], default="auto",
                        help="auto: batched on CUDA, basic elsewhere")
    parser.add_argument("--seeds", type=int, default=10, help="seeds of the headline comparisons")
    parser.add_argument("--study-seeds", type=int, default=5, help="seeds of the condition studies")
    parser.add_argument("--stress-seeds", type=int, default=10, help="seeds of the stress grids")
    parser.add_argument("--fashion-root", help="a dir holding Fashion-MNIST's files: adds the "
                                               "full-size Fashion-MNIST comparison")
    parser.add_argument("--only", nargs="+", metavar="STEP", help="run these steps only (the "
                        "report still reads every step's copied tables)")
    parser.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra Hydra overrides for every sweep (e.g. trainer.epochs=1 to "
                             "check the wiring)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"report dir (default {OUT})")
    parser.add_argument("--sweeps", type=Path, default=SWEEPS, help=f"run dirs (default {SWEEPS})")
    args = parser.parse_args()
    for flag in ("seeds", "study_seeds", "stress_seeds"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} {getattr(args, flag)}: needs at least 1 seed")
    out, sweeps = args.out.resolve(), args.sweeps.resolve()
    if args.launcher == "auto":
        args.launcher = seed_launcher()
    launcher = [] if args.launcher == "basic" else [f"hydra/launcher={args.launcher}"]
    seeds = {"seeds": args.seeds, "study": args.study_seeds, "stress": args.stress_seeds}
    plan = steps(args.fashion_root)
    known = [s.name for s in plan] + ["probe"]
    unknown = [name for name in args.only or [] if name not in known]
    if unknown:
        parser.error(f"--only {' '.join(unknown)}: no such step; the steps are {', '.join(known)}"
                     + ("" if args.fashion_root else " (fashion_full needs --fashion-root)"))
    total = 0.0
    for step in plan:
        if args.only and step.name not in args.only:
            continue
        sweep = sweeps / step.name
        seed = [f"seed=range({seeds[step.seeds]})"] if step.seeds else []
        total += timed(f"{step.name} ({args.launcher}, {' '.join(seed) or 'preset seeds'})", [
            sys.executable, "-m", "lossbench", "-m", f"experiment={step.preset}", *seed,
            *step.overrides, *args.override, *launcher, f"hydra.sweep.dir={sweep}"], sweep)
        keep_tables(sweep, out / "data" / step.name, predictions=not step.stress)
    if not args.only or "probe" in args.only:
        total += timed("probe", [sys.executable, "-m", "lossbench.probe", "--out", str(out / "probe")])
    present = [s for s in plan if (out / "data" / s.name / "summary.parquet").exists()]
    compared = [str(out / "data" / s.name) for s in present if not s.stress]
    stressed = [str(out / "data" / s.name) for s in present if s.stress]
    total += timed("report", [
        sys.executable, "-m", "lossbench.report", *compared,
        *(["--stress", *stressed] if stressed else []),
        *(["--probe", str(out / "probe")] if (out / "probe").exists() else []), "--out", str(out)])
    runs = sum(run_count(out / "data" / s.name) for s in present)
    print(f"reference study: {runs} runs in {len(present)} sweeps, {total / 60:.1f} min wall "
          "this invocation", flush=True)


if __name__ == "__main__":
    main()
