"""`python -m lossbench.probe`: run the sweep, write the tables and figure, print the thresholds."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lossbench.runs.results import atomic_write

from .explain import dtype_notes, explain
from .figure import plot_probe
from .grid import run_probe
from .probed import N_CLASSES
from .thresholds import THRESHOLD_COLUMNS, find_thresholds

MAX_POINTS = 200_001  # grid points per (loss, dtype); beyond this the run stops being a quick probe
ZMAX_LIMIT = 65504.0  # float16's max: past it z itself overflows in float16
SUMMARY = {  # printed column -> thresholds column
    "grad>1%": "grad_relerr_1pct", "grad=0": "grad_zero", "grad=inf": "grad_inf",
    "grad=NaN": "grad_nan", "loss>1%": "value_relerr_1pct", "loss=inf": "value_nonfinite",
}


def _z(x: float) -> str:
    return "never" if np.isnan(x) else f"{x:.1f}"


def summary_table(thresholds: pd.DataFrame) -> pd.DataFrame:
    """Human-readable thresholds: |z| where each failure starts, 'never' within the grid."""
    out = thresholds[["loss", "dtype", "side"]].astype(str)
    for label, col in SUMMARY.items():
        out[label] = thresholds[col].map(_z)
    out["saturates"] = [
        "never" if np.isnan(z) else f"{z:.1f} (at {v + 0.0:g})"  # + 0.0 prints -0 as 0
        for z, v in zip(thresholds.saturates, thresholds.saturated_value)]
    out["max loss"] = thresholds.max_loss.map(lambda v: f"{v:.4g}")
    out["max abs grad err"] = thresholds.max_abs_grad_err.map(lambda v: f"{v:.2g}")
    return out


def to_markdown(table: pd.DataFrame) -> str:
    rows = [list(table.columns), ["---"] * table.shape[1], *table.astype(str).values.tolist()]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def write_outputs(df: pd.DataFrame, thresholds: pd.DataFrame, findings: list[str], out) -> list[Path]:
    """probe.parquet/.csv (the sweep), thresholds.csv/.md (with the explanations), probe.png."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in
             ("probe.parquet", "probe.csv", "thresholds.csv", "thresholds.md", "probe.png")]
    atomic_write(paths[0], lambda tmp: df.to_parquet(tmp, index=False))
    atomic_write(paths[1], lambda tmp: df.to_csv(tmp, index=False))
    atomic_write(paths[2], lambda tmp: thresholds[THRESHOLD_COLUMNS].to_csv(tmp, index=False))
    notes = dtype_notes(df["dtype"].cat.categories)
    z = np.unique(df.z.to_numpy())
    zmax, step = z[-1], z[1] - z[0]
    text = (
        "# Numerical thresholds of classification losses\n\n"
        f"Setup: every loss in the registry with its default knobs, plus naive_nll. Sigmoid-family "
        f"losses get one logit z with target 1; softmax-family losses get {N_CLASSES} logits, the "
        f"target's z and the others 0. Grid: z = -{zmax:g}..{zmax:g} step {step:g}.\n\n"
        "First |z| (target-logit margin; wrong side z < 0, right side z > 0) at which each failure "
        "starts; 'never' = not within the grid.\n\n"
        + to_markdown(summary_table(thresholds))
        + "\n\n## Floating-point facts used by the explanations\n\n"
        + "\n".join(f"- {n}" for n in notes)
        + "\n\n## Findings and their causes\n\n"
        + "\n".join(f"- {line}" for line in findings) + "\n")
    atomic_write(paths[3], lambda tmp: Path(tmp).write_text(text))
    atomic_write(paths[4], lambda tmp: plot_probe(df, tmp))
    return paths


def _positive(name: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"{name} must be a finite number > 0, got {text!r}")
        return value
    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lossbench.probe",
        description="Sweep each loss over the target-logit margin z in float64/32, bfloat16 and "
                    "float16, compare with the exact closed form and find where each breaks.")
    p.add_argument("--out", type=Path, default=Path("results/probe"), help="output directory")
    p.add_argument("--step", type=_positive("--step"), default=0.1, help="grid step in z")
    p.add_argument("--zmax", type=_positive("--zmax"), default=120.0, help="grid is -zmax..zmax")
    return p


def _check_grid(parser: argparse.ArgumentParser, zmax: float, step: float) -> None:
    if zmax > ZMAX_LIMIT:
        parser.error(f"--zmax must be <= {ZMAX_LIMIT:g} (float16 cannot represent larger z)")
    if step > zmax:
        parser.error(f"--step ({step:g}) must not exceed --zmax ({zmax:g})")
    points = 2 * zmax / step + 1  # float: a tiny step must not overflow an int conversion
    if points > MAX_POINTS:
        parser.error(f"grid too fine: {points:.3g} points, at most {MAX_POINTS}; "
                     "raise --step or lower --zmax")


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check_grid(parser, args.zmax, args.step)
    try:  # before the sweep, so a bad --out fails fast
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        parser.error(f"--out {args.out}: cannot create the directory ({err.strerror})")
    df = run_probe(zmax=args.zmax, step=args.step)
    thresholds = find_thresholds(df)
    findings = explain(thresholds, df)
    try:
        paths = write_outputs(df, thresholds, findings, args.out)
    except OSError as err:
        print(f"error: cannot write to --out {args.out}: {err}", file=sys.stderr)
        return 1
    print(summary_table(thresholds).to_string(index=False))
    print()
    print("\n".join(findings))
    print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0
