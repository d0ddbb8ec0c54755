"""CLI: python -m lossbench.report DIR [DIR ...] [--out OUT] [--stress DIR ...] [--probe PROBE_DIR]
[--adjust holm|fdr_bh]"""

from __future__ import annotations

import argparse
import sys

from lossbench.report import ReportInputError, generate
from lossbench.report.stats import ADJUSTMENTS
from lossbench.signals import run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lossbench.report",
        description="Compare losses across the runs under one or more DIRs (collected with "
        "python -m lossbench.collect; collected here if not yet, or again if the runs changed "
        "since). Writes report.md, report.html, "
        "figures/*.png and tables/*.csv.",
    )
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="sweep or results dir(s)")
    parser.add_argument("--out", help="output dir (default: <first DIR>/report)")
    parser.add_argument("--stress", nargs="+", metavar="DIR", default=[],
                        help="stress sweep dir(s) for the Stability section only (their settings "
                             "are not compared as groups); runs whose preset declares "
                             "question.study=stability go there without it")
    parser.add_argument("--probe", metavar="PROBE_DIR",
                        help="a probe output dir (probe.png, thresholds.md) for the Stability section")
    parser.add_argument("--adjust", choices=list(ADJUSTMENTS), default="holm",
                        help="correction of the paired tests' p-values within each family (one "
                             "group, metric and view): holm (default) or fdr_bh "
                             "(Benjamini-Hochberg)")
    args = parser.parse_args(argv)
    try:
        path = generate(args.dirs, args.out, args.probe, stress=args.stress, adjust=args.adjust)
    except ReportInputError as e:
        print(f"lossbench.report: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} and {path.with_suffix('.html').name}, figures/, tables/ in {path.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("lossbench.report", main))
