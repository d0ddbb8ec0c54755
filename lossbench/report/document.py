"""What a report is made of, independent of its output format (render.py writes md and html).

A section builder returns Sections; blocks are plain data: text, bullet lists, tables (display
strings for the page, raw numbers for the CSV) and figures (PNG bytes, optional data for a CSV).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd


def file_stem(name: str) -> str:
    """A name as a file stem: stems carry loss labels, which are user text (`a/b`, `<x>`)."""
    return re.sub(r"[^\w.=+,-]", "_", name).lstrip(".") or "_"


@dataclass
class Paragraph:
    text: str  # may use **bold** and `code`


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    name: str  # file stem: tables/<name>.csv
    display: pd.DataFrame  # strings, as shown in the report
    data: pd.DataFrame  # raw numbers, written as CSV
    caption: str = ""

    def __post_init__(self):
        self.name = file_stem(self.name)


@dataclass
class Figure:
    name: str  # file stem: figures/<name>.png
    png: bytes
    caption: str
    data: pd.DataFrame | None = None  # the plotted numbers, written as tables/<name>.csv

    def __post_init__(self):
        self.name = file_stem(self.name)


@dataclass
class Verbatim:
    text: str  # markdown included as-is (e.g. a probe's thresholds.md); <pre> in html


Block = Paragraph | Bullets | Table | Figure | Verbatim


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    subsections: list["Section"] = field(default_factory=list)


@dataclass
class Document:
    title: str
    sections: list[Section]
    meta: list[str] = field(default_factory=list)  # lines under the title: date, versions, runs

    def walk(self):
        """Every block, depth first, in page order."""
        def visit(section: Section):
            yield from section.blocks
            for sub in section.subsections:
                yield from visit(sub)

        for section in self.sections:
            yield from visit(section)
