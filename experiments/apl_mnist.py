"""Rebuild the committed run of Ma et al. 2020's MNIST setting (experiment=apl_mnist) and its
"versus published" report.

    python experiments/apl_mnist.py                     # the reduced run: results/apl_mnist_sample/
    python experiments/apl_mnist.py --mnist-root DIR    # the full table: results/apl_mnist_full/
        [--launcher basic|joblib|batched] [--override KEY=VALUE ...] [--out DIR] [--sweep DIR]

Reduced (the default, offline): the 5,000-digit MNIST sample (4,000 training digits instead of
the paper's 60,000), symmetric noise 0, 0.4 and 0.8, all six losses, 3 seeds: 54 runs of 50
epochs. Full: MNIST's IDX files under DIR, every noise setting of the preset: 162 runs.
The runs live in --sweep (git-ignored; rerunning resumes), their collected tables are copied into
OUT/data/ (as experiments/reference.py does) and the report is written from those copies alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reference import ROOT, keep_tables, timed

REDUCED_NOISE = "none,symmetric_40,symmetric_80"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist-root", help="a dir holding MNIST's IDX files: the full table")
    parser.add_argument("--launcher", choices=["basic", "joblib", "batched"], default="basic")
    parser.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra Hydra overrides (e.g. trainer.threads=1 with "
                             "--launcher joblib)")
    parser.add_argument("--out", type=Path, help="report dir (default results/apl_mnist_<source>)")
    parser.add_argument("--sweep", type=Path, help="run dirs (default results/sweeps/apl_mnist_<source>)")
    args = parser.parse_args()
    source = "full" if args.mnist_root else "sample"
    out = (args.out or ROOT / "results" / f"apl_mnist_{source}").resolve()
    sweep = (args.sweep or ROOT / "results" / "sweeps" / f"apl_mnist_{source}").resolve()
    data = (["dataset.source=full", f"dataset.root={Path(args.mnist_root).resolve()}"]
            if args.mnist_root else ["dataset.source=sample", f"noise={REDUCED_NOISE}"])
    launcher = [] if args.launcher == "basic" else [f"hydra/launcher={args.launcher}"]
    timed(f"apl_mnist ({source})", [
        sys.executable, "-m", "lossbench", "-m", "experiment=apl_mnist", *data, *args.override,
        *launcher, f"hydra.sweep.dir={sweep}"], sweep)
    keep_tables(sweep, out / "data", predictions=True)
    timed("report", [sys.executable, "-m", "lossbench.report", str(out / "data"), "--out", str(out)])


if __name__ == "__main__":
    main()
