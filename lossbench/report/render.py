"""Render a Document as markdown (figures as relative links) and as one self-contained html page
(figures inline as base64 PNG). Pure functions of the Document: no clock, no paths."""

from __future__ import annotations

import base64
import html
import re

import pandas as pd

from lossbench.report.document import Bullets, Document, Figure, Paragraph, Section, Table, Verbatim

FIGURES, TABLES = "figures", "tables"


def markdown_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(markdown_cell(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(markdown_cell(v) for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def to_markdown(doc: Document) -> str:
    out = [f"# {doc.title}", ""]

    def section(s: Section, level: int):
        out.extend([f"{'#' * level} {s.title}", ""])
        for block in s.blocks:
            if isinstance(block, Paragraph):
                out.extend([block.text, ""])
            elif isinstance(block, Bullets):
                out.extend([f"- {item}" for item in block.items] + [""])
            elif isinstance(block, Table):
                if block.caption:
                    out.extend([block.caption, ""])
                out.extend([markdown_table(block.display), "",
                            f"CSV: [{TABLES}/{block.name}.csv]({TABLES}/{block.name}.csv)", ""])
            elif isinstance(block, Figure):
                out.extend([f"![{block.caption}]({FIGURES}/{block.name}.png)", "", block.caption])
                if block.data is not None:
                    out[-1] += f" Data: [{TABLES}/{block.name}.csv]({TABLES}/{block.name}.csv)."
                out.append("")
            elif isinstance(block, Verbatim):
                out.extend([block.text.strip(), ""])
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


def html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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
            rows = [("th" if i == 0 else "td", row) for i, row in enumerate(cells)]
            out.append("<table>" + "".join(
                "<tr>" + "".join(f"<{tag}>{inline(c)}</{tag}>" for c in row) + "</tr>"
                for tag, row in rows) + "</table>")
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
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
img { max-width: 100%; }
figure { margin: 1em 0; }
figcaption { font-size: 0.9em; color: #555; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; }
"""


def to_html(doc: Document) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{html.escape(doc.title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
           f"<h1>{html.escape(doc.title)}</h1>"]

    def section(s: Section, level: int):
        out.append(f"<h{level}>{html.escape(s.title)}</h{level}>")
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
                out.append(f'<figure><img alt="{html.escape(block.caption)}" '
                           f'src="data:image/png;base64,{data}">'
                           f"<figcaption>{inline(block.caption)}</figcaption></figure>")
            elif isinstance(block, Verbatim):
                out.append(simple_markdown_html(block.text))
        for sub in s.subsections:
            section(sub, min(level + 1, 6))

    for s in doc.sections:
        section(s, 2)
    out.extend(["</body>", "</html>"])
    return "\n".join(out) + "\n"
