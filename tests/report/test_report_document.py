"""The report is a short main page with linked appendix pages (#23): the main page holds only the
answer (limitations, Summary, forest plot, one table per question, glossary, links); every
appendix page exists, is linked from it and finds its figures; tables have no empty column, human
headings and a glossary for every abbreviation they use."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from lossbench.losses import LOSSES
from lossbench.training.metrics import CALIBRATION, CLASS_BALANCE, MULTI_LABEL, SINGLE_LABEL
from lossbench.report import ReportInputError, generate, write_report
from lossbench.report.document import Document, Section, Table
from lossbench.report.glossary import GLOSSARY
from lossbench.report.render import to_html, to_markdown
from run_dirs import make_sweep, write_run

MAIN_SECTIONS = {"Summary", "Effects", "Glossary", "Appendix"}


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    """A report of two studies: losses at shared settings (two datasets) and label noise at two
    rates (groups named by a setting)."""
    root = tmp_path_factory.mktemp("runs")
    make_sweep(root / "shared", extra=False)
    for loss in ("ce", "gce"):
        for seed in (0, 1, 2):
            for noise in (0.0, 0.4):
                write_run(root / "noise", f"{loss}-{noise}-{seed}", loss=loss, seed=seed,
                          cfg={"dataset.label_noise": noise, "dataset.noise_kind": "symmetric"})
    target = root / "report"
    generate([root / "shared", root / "noise"], out=target, say=lambda _: None)
    return target


def pages(out: Path) -> list[Path]:
    return [out / "report.md", *sorted((out / "appendix").glob("*.md"))]


class Tables(HTMLParser):
    """Every table of an html page: its header cells and rows of cells, as text."""

    def __init__(self):
        super().__init__()
        self.tables, self.cell, self.row = [], None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append({"head": [], "rows": []})
        elif tag == "tr":
            self.row = []
        elif tag in ("th", "td"):
            self.cell = ""

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data

    def handle_endtag(self, tag):
        if tag in ("th", "td"):
            (self.tables[-1]["head"] if tag == "th" else self.row).append(self.cell.strip())
            self.cell = None
        elif tag == "tr" and self.row:
            self.tables[-1]["rows"].append(self.row)


def html_tables(path: Path) -> list[dict]:
    parser = Tables()
    parser.feed(path.read_text())
    return parser.tables


def test_the_main_page_holds_only_the_answer(out):
    main = (out / "report.md").read_text()
    titles = [line[3:] for line in main.splitlines() if line.startswith("## ")]
    questions = [t for t in titles if t not in MAIN_SECTIONS]
    assert titles[:2] == ["Summary", "Effects"] and titles[-2:] == ["Glossary", "Appendix"]
    assert questions == ["Losses at shared settings", "Label noise"]
    assert not re.search(r"^#{3,} ", main, re.M)  # no group detail: one level of sections
    for detail in ("Final test metrics", "Learning curves", "Calibration", "Paired comparison",
                   "Setup", "Excluded runs", "Per-seed values"):
        assert f"# {detail}" not in main, detail
    assert re.findall(r"!\[[^]]*\]\(([^)]+)\)", main) == ["figures/forest.svg"]
    for question in questions:  # one compact table each, in percentage points
        section = main.split(f"\n## {question}\n")[1].split("\n## ")[0]
        tables = [line for line in section.splitlines() if line.startswith("| ---")]
        assert len(tables) == 1
        assert "difference, pp (95% CI)" in section and "P(improvement)" in section
    box = main.split("> **Limitations**")[1].split("\n\n")[0]
    for limit in ("Model: mlp [32]", "Split: every seed uses the same data split",
                  "Not a replication"):
        assert limit in box


def test_every_appendix_page_is_linked_and_finds_its_files(out):
    main_md, main_html = (out / "report.md").read_text(), (out / "report.html").read_text()
    appendix = sorted(p.stem for p in (out / "appendix").glob("*.md"))
    assert appendix == sorted(p.stem for p in (out / "appendix").glob("*.html"))
    assert {"noise", "shared", "setup", "verdicts", "excluded"} <= set(appendix)
    for name in appendix:
        assert f"](appendix/{name}.md)" in main_md and f'href="appendix/{name}.html"' in main_html
    for page in pages(out)[1:]:
        html = page.with_suffix(".html").read_text()
        assert "<style>" in html and "<nav>" in html  # self-contained, with its own contents
        assert 'href="../report.html"' in html and "](../report.md)" in page.read_text()
        links = re.findall(r"\]\(([^)#]+)\)", page.read_text())
        links += re.findall(r'(?:href|src)="([^"#]+)"', html)
        links = [link for link in links if not link.startswith("data:")]
        assert any(link.startswith("../figures/") for link in links) or page.stem != "shared"
        for link in links:
            assert (page.parent / link).resolve().is_file(), (page.name, link)


def test_no_table_has_an_empty_column(out):
    for page in pages(out):
        for table in html_tables(page.with_suffix(".html")):
            for i, column in enumerate(table["head"]):
                cells = [row[i] for row in table["rows"] if i < len(row)]
                assert any(c not in ("", "—") for c in cells), (page.name, column)


def test_a_blank_column_is_dropped_from_both_formats():
    frame = pd.DataFrame({"loss": ["ce", "bce"], "note": ["", ""], "MDE": ["—", "—"],
                          "acc": ["0.91", "0.9"]})
    doc = Document("t", [Section("s", [Table("t", frame, frame)])])
    markdown, html = to_markdown(doc), to_html(doc)
    assert "| loss | acc |" in markdown and "note" not in markdown and "MDE" not in html
    # numbers right-aligned, never wrapped; no rule that breaks words
    assert '<td class="num">0.91</td>' in html and "white-space: nowrap" in html
    assert "anywhere" not in html and "word-break" not in html


def test_headings_name_settings_in_words_not_config_keys_or_hashes(out):
    headings = [line.lstrip("#").strip() for page in pages(out)
                for line in page.read_text().splitlines() if re.match(r"#{1,6} ", line)]
    assert "mnist / sample, noise 40%" in headings  # the kind is the same in every group
    assert "mnist / sample, clean labels" in headings
    for heading in headings:
        assert not re.search(r"\w\.\w+=|\b[0-9a-f]{10}\b", heading), heading


def abbreviations(header: str) -> set[str]:
    """The header's tokens that are no plain word: a config or metric name (with _ or a metric
    of lossbench.training.metrics), two capitals (ECE, McNemar), k/n, P(improvement); loss names aside."""
    metrics = {*SINGLE_LABEL, *MULTI_LABEL, *CLASS_BALANCE, *CALIBRATION, "pp"}
    tokens = re.findall(r"P\(improvement\)|\w+/\w+|[\w]+", header)
    return {t for t in tokens if t.split("(")[0] not in LOSSES and t not in LOSSES
            and ("_" in t or "/" in t or "(" in t or sum(c.isupper() for c in t) >= 2
                 or t in metrics)}


def test_the_glossary_defines_every_abbreviation_in_table_headers(out):
    main = (out / "report.html").read_text()
    assert all(f"<strong>{term}</strong>" in main for term in ("nll_ts", "view", "family", "MDE"))
    words = {w.lower() for key in GLOSSARY for w in re.findall(r"P\(improvement\)|\w+/\w+|\w+", key)}
    found = set()
    for page in pages(out):
        for table in html_tables(page.with_suffix(".html")):
            for header in table["head"]:
                found |= abbreviations(header)
    assert {"ECE", "acc", "k/n", "P(improvement)", "pp"} <= found  # the check sees them
    assert {t for t in found if t.lower() not in words} == set()


def test_a_foreign_file_in_the_appendix_is_refused_untouched(out, tmp_path):
    (tmp_path / "appendix").mkdir()
    mine = tmp_path / "appendix" / "verdicts.md"
    mine.write_text("my notes")
    with pytest.raises(ReportInputError, match="appendix/verdicts.md"):
        write_report(Document("r", [], appendix=[Document("v", [], path="appendix/verdicts")]),
                     tmp_path)
    assert mine.read_text() == "my notes"
