"""Read a report as one text: the main page, then its appendix pages (the report's sections are
spread over them; most tests check a section wherever it lives)."""

from __future__ import annotations

from pathlib import Path

from lossbench.report.document import Document
from lossbench.report.render import to_markdown


def pages_markdown(doc: Document) -> str:
    return "\n".join(to_markdown(page) for page in doc.pages())


def report_markdown(out: Path) -> str:
    """out/report.md then out/appendix/*.md, in name order."""
    return "\n".join(path.read_text() for path in
                     [out / "report.md", *sorted((out / "appendix").glob("*.md"))])
