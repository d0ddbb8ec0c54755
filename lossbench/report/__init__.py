"""Comparison report of collected runs: `python -m lossbench.report DIR [DIR ...] [--out OUT]`.

load.py reads the collected tables -> groups.py splits them into comparable groups and studies.py
says which question each answers -> tables.py, stats.py and stability_verdicts.py compute the
numbers -> figures.py draws them -> recommendation.py (a which_loss study's answer, first),
summary_bullets.py and setup.py write the few generated lines
-> sections.py assembles a Document -> render.py writes it as markdown and html. `generate` runs
the chain and writes OUT/report.md, OUT/report.html, OUT/figures/*.png, OUT/tables/*.csv.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from lossbench.report.document import Document, Figure, Table
from lossbench.report.load import ReportInputError, load
from lossbench.report.render import FIGURES, TABLES, to_html, to_markdown
from lossbench.report.sections import build_document
from lossbench.report.stats import ADJUSTMENTS
from lossbench.results import atomic_write

__all__ = ["ReportInputError", "generate", "write_report"]


def write_bytes(path: Path, data: bytes) -> None:
    """Atomic: a reader never sees a half-written report."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_report(doc: Document, out: Path) -> Path:
    """Write md, html, PNGs and CSVs into `out`; stale PNG/CSV files of earlier reports go."""
    figures_dir, tables_dir = out / FIGURES, out / TABLES
    for directory, pattern in ((figures_dir, "*.png"), (tables_dir, "*.csv")):
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(pattern):
            stale.unlink()
    for block in doc.walk():
        if isinstance(block, Figure):
            write_bytes(figures_dir / f"{block.name}.png", block.png)
            if block.data is not None:
                write_bytes(tables_dir / f"{block.name}.csv", block.data.to_csv(index=False).encode())
        elif isinstance(block, Table):
            write_bytes(tables_dir / f"{block.name}.csv", block.data.to_csv(index=False).encode())
    write_bytes(out / "report.md", to_markdown(doc).encode())
    write_bytes(out / "report.html", to_html(doc).encode())
    return out / "report.md"


def generate(dirs: list[str | Path], out: str | Path | None = None, probe: str | Path | None = None,
             say: Callable[[str], None] = print, stress: list[str | Path] | None = None,
             adjust: str = "holm") -> Path:
    """Report on the runs under `dirs` into `out` (default: <first dir>/report). Returns report.md.

    `stress` dirs (stress sweeps) feed the Stability section only: each of their settings is a
    stress condition, not a configuration to compare losses in. `adjust` names the multiple-
    comparison correction of the paired tests (stats.ADJUSTMENTS)."""
    if not dirs:
        raise ReportInputError("give at least one DIR")
    if adjust not in ADJUSTMENTS:
        raise ReportInputError(f"unknown --adjust {adjust!r}; accepted: {', '.join(ADJUSTMENTS)}")
    if probe is not None:
        probe = Path(probe)
        if not probe.is_dir():
            raise ReportInputError(f"probe dir {probe} does not exist")
        if not any((probe / name).exists() for name in ("probe.png", "thresholds.md")):
            raise ReportInputError(f"probe dir {probe} holds neither probe.png nor thresholds.md "
                                   "(write them with python -m lossbench.probe --out DIR)")
    inputs = load(dirs, say)
    stressed = load(stress, say) if stress else None
    out = Path(out) if out is not None else Path(dirs[0]) / "report"
    try:
        out.mkdir(parents=True, exist_ok=True)  # before the figures are drawn: fail fast
    except OSError as e:
        raise unwritable(out, e) from None
    doc = build_document(inputs, probe, stressed, adjust)
    try:
        return write_report(doc, out)
    except OSError as e:
        raise unwritable(out, e) from None


def unwritable(out: Path, error: OSError) -> ReportInputError:
    why = "it is a file" if out.exists() and not out.is_dir() else error.strerror or str(error)
    return ReportInputError(f"cannot write the report into {out} ({why}); give a writable "
                            "directory with --out")
