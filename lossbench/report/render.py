"""Render a Document page as markdown (figures as relative links) and as one self-contained html
page (figures inline as base64; a PNG shown at half its pixels). Pure functions of the Document:
no clock, no absolute paths; links to figures, tables and other pages are relative to the page's
own place (Document.path), so an appendix page under appendix/ finds ../figures/.

Both open with a table of contents whose links are the headings' anchors: GitHub's rule for
markdown headings (lower case, punctuation dropped, spaces to hyphens, -1, -2 for repeats), and
the same ids on the html headings, so one link works in both.

Tables drop a column with no value in any row, and in html a column of numbers is right-aligned
in tabular figures and never wraps (a number broken over two lines reads as two numbers).
"""

from __future__ import annotations

import base64
import html
import posixpath
import re
import struct

import pandas as pd

from lossbench.report.escape import markdown_text
from lossbench.report.document import (Bullets, Document, Figure, PageLinks, Paragraph, Section,
                                       Table, Verbatim)

FIGURES, TABLES, APPENDIX = "figures", "tables", "appendix"
BLANK = {"", "—"}
# a cell made of numbers: 0.8846 [0.8832, 0.8860] (n=10), +1.2 pp, 9/10, <0.0001, 1–3, -4.4e-05
NUMBER = re.compile(r"[-+−–<>≤≥\d.,/\[\]()%=n—eE ]*\d[-+−–<>≤≥\d.,/\[\]()%=n—eE ]*")
MIME = {"png": "image/png", "svg": "image/svg+xml"}


def relative(page: Document, target: str) -> str:
    """`target` (a path from the report's root) as a link from `page`."""
    return posixpath.relpath(target, posixpath.dirname(page.path) or ".")


def filled(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns that hold a value in at least one row."""
    keep = [c for c in frame.columns
            if not frame[c].map(lambda v: str(v).strip() in BLANK or v is None).all()]
    return frame[keep] if len(frame) else frame


def numeric_column(values: pd.Series) -> bool:
    cells = [str(v).strip() for v in values if str(v).strip() not in BLANK]
    return bool(cells) and all(NUMBER.fullmatch(c) for c in cells)


def markdown_cell(text: str) -> str:
    return markdown_text(str(text).replace("|", "\\|").replace("\n", " "))


def markdown_table(frame: pd.DataFrame) -> str:
    frame = filled(frame)
    header = "| " + " | ".join(markdown_cell(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(markdown_cell(v) for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def slug(title: str) -> str:
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def anchors(doc: Document) -> dict[int, str]:
    """id(section) -> its anchor, unique over the page, in page order."""
    seen: dict[str, int] = {}
    out = {}

    def visit(s: Section):
        base = slug(s.title)
        count = seen.get(base, 0)
        seen[base] = count + 1
        out[id(s)] = base if count == 0 else f"{base}-{count}"
        for sub in s.subsections:
            visit(sub)

    for s in doc.sections:
        visit(s)
    return out


TOC_DEPTH = 2  # top-level sections and their subsections


def contents(doc: Document, anchor: dict[int, str]) -> list[tuple[int, str, str]]:
    """(depth, title, anchor) of the sections the table of contents lists."""
    out = []

    def visit(s: Section, depth: int):
        out.append((depth, s.title, anchor[id(s)]))
        if depth + 1 < TOC_DEPTH:
            for sub in s.subsections:
                visit(sub, depth + 1)

    for s in doc.sections:
        visit(s, 0)
    return out


def to_markdown(doc: Document) -> str:
    anchor = anchors(doc)
    out = [f"# {markdown_text(doc.title)}", ""]
    if doc.up is not None:
        out.extend([f"Part of [the report]({relative(doc, doc.up + '.md')}).", ""])
    for line in doc.meta:
        out.extend([markdown_text(line), ""])
    if doc.limits:
        out.extend(["> **Limitations**", ">"] + [f"> - {markdown_text(item)}" for item in doc.limits]
                   + [""])
    out.extend(["**Contents**", ""])
    out.extend(f"{'  ' * depth}- [{markdown_text(title)}](#{target})"
               for depth, title, target in contents(doc, anchor))
    out.append("")

    def section(s: Section, level: int):
        out.extend([f"{'#' * min(level, 6)} {markdown_text(s.title)}", ""])
        for block in s.blocks:
            if isinstance(block, Paragraph):
                out.extend([markdown_text(block.text), ""])
            elif isinstance(block, Bullets):
                out.extend([f"- {markdown_text(item)}" for item in block.items] + [""])
            elif isinstance(block, Table):
                if block.caption:
                    out.extend([markdown_text(block.caption), ""])
                csv = relative(doc, f"{TABLES}/{block.name}.csv")
                out.extend([markdown_table(block.display), "", f"CSV: [{csv}]({csv})", ""])
            elif isinstance(block, Figure):
                caption = markdown_text(block.caption)
                image = relative(doc, f"{FIGURES}/{block.name}.{block.suffix}")
                out.extend([f"![{caption}]({image})", "", caption])
                if block.data is not None:
                    csv = relative(doc, f"{TABLES}/{block.name}.csv")
                    out[-1] += f" Data: [{csv}]({csv})."
                out.append("")
            elif isinstance(block, Verbatim):
                out.extend([block.text.strip(), ""])
            elif isinstance(block, PageLinks):
                out.extend([f"- [{markdown_text(title)}]({relative(doc, page + '.md')})"
                            + (f": {markdown_text(note)}" if note else "")
                            for page, title, note in block.links] + [""])
        for sub in s.subsections:
            section(sub, level + 1)

    for s in doc.sections:
        section(s, 2)
    return "\n".join(out).rstrip() + "\n"


def inline(text: str) -> str:
    """Escape, then the two markdown marks paragraphs use: **bold** and `code`."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def cell_class(value) -> str:
    """A number in a column that also holds words still never wraps."""
    text = str(value).strip()
    return 'class="num"' if text not in BLANK and NUMBER.fullmatch(text) else ""


def html_table(frame: pd.DataFrame) -> str:
    frame = filled(frame)
    kind = ['class="num"' if numeric_column(frame[c]) else "" for c in frame.columns]
    head = "".join(f"<th {k}>{html.escape(str(c))}</th>".replace(" >", ">")
                   for c, k in zip(frame.columns, kind))
    body = "".join(
        "<tr>" + "".join(f"<td {k or cell_class(v)}>{inline(str(v))}</td>".replace(" >", ">")
                         for v, k in zip(row, kind)) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'



def simple_markdown_html(text: str) -> str:
    """The markdown other tools write (headings, pipe tables, bullets, paragraphs) as html;
    anything fancier stays readable as text."""
    out, paragraph, table, bullets = [], [], [], []

    def flush():
        if paragraph:
            out.append(f"<p>{inline(' '.join(paragraph))}</p>")
        if bullets:
            out.append("<ul>" + "".join(f"<li>{inline(b)}</li>" for b in bullets) + "</ul>")
        if table:
            cells = [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]
                     for row in table if not re.fullmatch(r"[|\s:-]+", row.strip())]
            if cells:
                out.append(html_table(pd.DataFrame(cells[1:], columns=cells[0])))
        paragraph.clear(), table.clear(), bullets.clear()

    for line in text.splitlines():
        heading = re.match(r"(#{1,6}) (.*)", line)
        if heading:
            flush()
            level = len(heading.group(1))
            out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
        elif line.strip().startswith("|"):
            if paragraph or bullets:
                flush()
            table.append(line)
        elif line.startswith("- "):
            if paragraph or table:
                flush()
            bullets.append(line[2:])
        elif not line.strip():
            flush()
        else:
            if table:
                flush()
            paragraph.append(line.strip())
    flush()
    return "\n".join(out)


CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.35; }
.wide { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.08em 0.5em; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
th.num, td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
nav ul { margin: 0.2em 0; }
nav > ul { columns: 3; }
#glossary + p + ul { columns: 3; column-gap: 1.5em; font-size: 0.85em; }
#appendix + ul { columns: 3; }
li { break-inside: avoid; }
.meta { color: #555; }
.limits { border: 1px solid #c9a227; background: #fff8e1; padding: 0.4em 1em; margin: 1em 0; }
.limits ul { margin: 0.3em 0; }
th { background: #f3f3f3; }
img { max-width: 100%; height: auto; }
figure { margin: 1em 0; }
figcaption { font-size: 0.9em; color: #555; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; }
"""


PIXEL_DENSITY = 2  # figures are drawn at twice the pixels they are shown at (figures.png)


def display_size(png: bytes) -> tuple[int, int]:
    """The size in CSS pixels to show a PNG at: its pixel size (the IHDR chunk, bytes 16-24) over
    PIXEL_DENSITY, so its text is as large as the figure meant and sharp on dense screens."""
    width, height = struct.unpack(">II", png[16:24])
    return -(-width // PIXEL_DENSITY), -(-height // PIXEL_DENSITY)


def html_contents(sections: list[Section], anchor: dict[int, str], depth: int = 0) -> str:
    if not sections or depth >= TOC_DEPTH:
        return ""
    return "<ul>" + "".join(
        f'<li><a href="#{anchor[id(s)]}">{html.escape(s.title)}</a>'
        f"{html_contents(s.subsections, anchor, depth + 1)}</li>" for s in sections) + "</ul>"


def to_html(doc: Document) -> str:
    anchor = anchors(doc)
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{html.escape(doc.title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
           f"<h1>{html.escape(doc.title)}</h1>"]
    if doc.up is not None:
        out.append(f'<p class="meta">Part of <a href="{html.escape(relative(doc, doc.up + ".html"))}">'
                   "the report</a>.</p>")
    out.extend(f'<p class="meta">{inline(line)}</p>' for line in doc.meta)
    if doc.limits:
        out.append('<aside class="limits"><strong>Limitations</strong><ul>'
                   + "".join(f"<li>{inline(item)}</li>" for item in doc.limits) + "</ul></aside>")
    out.append(f"<nav><strong>Contents</strong>{html_contents(doc.sections, anchor)}</nav>")

    def section(s: Section, level: int):
        out.append(f'<h{level} id="{anchor[id(s)]}">{html.escape(s.title)}</h{level}>')
        for block in s.blocks:
            if isinstance(block, Paragraph):
                out.append(f"<p>{inline(block.text)}</p>")
            elif isinstance(block, Bullets):
                out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in block.items) + "</ul>")
            elif isinstance(block, Table):
                if block.caption:
                    out.append(f"<p>{inline(block.caption)}</p>")
                out.append(html_table(block.display))
            elif isinstance(block, Figure):
                data = base64.b64encode(block.png).decode("ascii")
                size = ('width="{}" height="{}" '.format(*display_size(block.png))
                        if block.suffix == "png" else "")
                out.append(f'<figure><img alt="{html.escape(block.caption)}" {size}'
                           f'src="data:{MIME[block.suffix]};base64,{data}">'
                           f"<figcaption>{inline(block.caption)}</figcaption></figure>")
            elif isinstance(block, Verbatim):
                out.append(simple_markdown_html(block.text))
            elif isinstance(block, PageLinks):
                out.append("<ul>" + "".join(
                    f'<li><a href="{html.escape(relative(doc, page + ".html"))}">{html.escape(title)}</a>'
                    + (f": {inline(note)}" if note else "") + "</li>"
                    for page, title, note in block.links) + "</ul>")
        for sub in s.subsections:
            section(sub, min(level + 1, 6))

    for s in doc.sections:
        section(s, 2)
    out.extend(["</body>", "</html>"])
    return "\n".join(out) + "\n"
