"""Comparison report of collected runs: `python -m lossbench.report DIR [DIR ...] [--out OUT]`.

load.py reads the collected tables -> groups.py splits them into comparable groups and studies.py
says which question each answers -> tables.py, stats.py and stability_verdicts.py compute the
numbers -> figures.py draws them -> recommendation.py (a which_loss study's answer, first),
summary_bullets.py and setup_section.py write the few generated lines
-> sections.py assembles a Document (the main page: limitations, Summary, forest plot, one table
per question) with its appendix pages -> render.py writes each as markdown and html. `generate`
runs the chain and writes OUT/report.md, OUT/report.html, OUT/appendix/*.md and *.html,
OUT/figures/*, OUT/tables/*.csv.

May import runs/ (the collected tables, and the rules for the files it writes), training's metric
and selection rules (metrics.py, selection.py), config, tasks and losses; never trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from lossbench.report.document import Document, Figure, Table
from lossbench.runs.owned import Manifest, PlantedLink, require_real_dirs
from lossbench.report.escape import csv_bytes
from lossbench.report.load import ReportInputError, load, split_stress
from lossbench.report.render import APPENDIX, FIGURES, TABLES, to_html, to_markdown
from lossbench.report.sections import build_document
from lossbench.report.stats import ADJUSTMENTS
from lossbench.runs.results import atomic_write

__all__ = ["ReportInputError", "generate", "write_report"]


def write_bytes(path: Path, data: bytes) -> None:
    """Atomic: a reader never sees a half-written report."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_report(doc: Document, out: Path) -> Path:
    """Write every page's md and html, the figures and CSVs into `out`. Replaces or removes only
    what an earlier report listed in out's manifest (lossbench.runs.owned): any other file in the way
    is refused, untouched."""
    files = {f"{FIGURES}/{block.name}.{block.suffix}": block.png for block in doc.walk()
             if isinstance(block, Figure)}
    files |= {f"{TABLES}/{block.name}.csv": csv_bytes(block.data) for block in doc.walk()
              if isinstance(block, (Figure, Table)) and block.data is not None}
    for page in doc.pages():
        files |= {f"{page.path}.md": to_markdown(page).encode(),
                  f"{page.path}.html": to_html(page).encode()}
    manifest = Manifest(out, "report")
    for directory in (FIGURES, TABLES, APPENDIX):
        require_real_dirs(out, directory)
    foreign = manifest.foreign(files)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ReportInputError(f"{out} holds {shown}, which no earlier report listed as its "
                               "own (.lossbench-manifest.report); lossbench overwrites no file it did not "
                               "write: move them away (a report from before manifests: remove it), or "
                               "give another --out")
    manifest.claim(files)
    for name, data in files.items():
        write_bytes(out / name, data)
    manifest.release(keep=files)
    return out / f"{doc.path}.md"


def generate(dirs: list[str | Path], out: str | Path | None = None, probe: str | Path | None = None,
             say: Callable[[str], None] = print, stress: list[str | Path] | None = None,
             adjust: str = "holm") -> Path:
    """Report on the runs under `dirs` into `out` (default: <first dir>/report). Returns report.md.

    `stress` dirs (stress sweeps) feed the Stability section only: each of their settings is a
    stress condition, not a configuration to compare losses in; so do the runs of `dirs` whose
    preset declares a stress sweep (question.study: stability). `adjust` names the multiple-
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
    inputs, stressed = split_stress(load(dirs, say), load(stress, say) if stress else None)
    out = Path(out) if out is not None else Path(dirs[0]) / "report"
    try:
        out.mkdir(parents=True, exist_ok=True)  # before the figures are drawn: fail fast
    except OSError as e:
        raise unwritable(out, e) from None
    doc = build_document(inputs, probe, stressed, adjust)
    try:
        return write_report(doc, out)
    except PlantedLink as e:
        raise ReportInputError(str(e)) from None
    except OSError as e:
        raise unwritable(out, e) from None


def unwritable(out: Path, error: OSError) -> ReportInputError:
    why = "it is a file" if out.exists() and not out.is_dir() else error.strerror or str(error)
    return ReportInputError(f"cannot write the report into {out} ({why}); give a writable "
                            "directory with --out")
