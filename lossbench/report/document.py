"""What a report is made of, independent of its output format (render.py writes md and html).

A section builder returns Sections; blocks are plain data: text, bullet lists, tables (display
strings for the page, raw numbers for the CSV), figures (PNG or SVG bytes, optional data for a
CSV) and links to other pages of the report. A report is a main Document (the few things a
reader needs first) with appendix Documents, each written as its own page under appendix/.
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
    name: str  # file stem: figures/<name>.<suffix>
    png: bytes  # the image file's bytes, in the format `suffix` names
    caption: str
    data: pd.DataFrame | None = None  # the plotted numbers, written as tables/<name>.csv
    suffix: str = "png"  # or "svg"

    def __post_init__(self):
        self.name = file_stem(self.name)


@dataclass
class Verbatim:
    text: str  # markdown included as-is (e.g. a probe's thresholds.md); <pre> in html


@dataclass
class PageLinks:
    """Links to other pages of the report: (page path from the report's root without suffix,
    e.g. appendix/noise; its title; what a reader finds there). Each format links its own
    suffix (.md or .html), relative to the page it is on."""

    links: list[tuple[str, str, str]]


Block = Paragraph | Bullets | Table | Figure | Verbatim | PageLinks


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
    limits: list[str] = field(default_factory=list)  # the limitations box under the header
    path: str = "report"  # where the page lives, from the report's root, without suffix
    appendix: list["Document"] = field(default_factory=list)  # pages of their own, linked
    up: str | None = None  # the page this one is an appendix of (its path), linked at the top

    def pages(self):
        """This page, then every appendix page."""
        yield self
        for page in self.appendix:
            yield from page.pages()

    def walk(self):
        """Every block of every page, depth first, in page order."""
        def visit(section: Section):
            yield from section.blocks
            for sub in section.subsections:
                yield from visit(sub)

        for section in self.sections:
            yield from visit(section)
        for page in self.appendix:
            yield from page.walk()
