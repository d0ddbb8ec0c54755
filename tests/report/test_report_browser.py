"""report.html as a reader sees it: rendered by Chromium (through Playwright) at 1280x800.

A browser is no dependency of lossbench: the tests skip, saying what to install, without
Playwright (pip install -e '.[browser]') or a Chromium binary (apt-get install chromium, or
playwright install chromium). Run them with `pytest -m browser`.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from lossbench.report import generate
from run_dirs import make_sweep

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "results" / "reference"
VIEWPORT = {"width": 1280, "height": 800}
MAX_HEIGHT = 8_000  # px: ten screens, issue #23's bound on the main document

# number tokens a browser must never split across lines: 0.0042, +0.0120, 1e-05, 12%, 4/5
NUMBER_BREAKS = """() => {
  const broken = [];
  for (const cell of document.querySelectorAll('td')) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const m of node.data.matchAll(/[-+−]?\\d[\\d.,/]*(?:e[-+]?\\d+)?%?/g)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const lines = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
        if (lines.size > 1) broken.push(m[0] + ' in "' + cell.textContent + '"');
      }
    }
  }
  return broken;
}"""

# cells of numbers only (the report marks them td.num) on one line: their text's line boxes
WRAPPED_CELLS = """() => [...document.querySelectorAll('td.num')].filter(cell => {
  const range = document.createRange();
  range.selectNodeContents(cell);
  return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size > 1;
}).map(cell => cell.textContent)"""

BROKEN_IMAGES = """() => [...document.images]
  .filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.alt.slice(0, 60))"""


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.fixture(scope="module")
def browser():
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("Playwright is not installed: pip install -e '.[browser]' (README: Tests)")
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as playwright:
        binary = chromium_binary()
        try:  # without a system Chromium, the one `playwright install chromium` downloads
            browser = playwright.chromium.launch(executable_path=binary)
        except Error as error:
            pytest.skip(f"no Chromium to run ({binary or 'none on PATH'}: "
                        f"{str(error).splitlines()[0]}): apt-get install chromium, or "
                        "playwright install chromium")
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def fixture_report(tmp_path_factory) -> Path:
    """The fixture sweep the other report tests read (test_collect.make_sweep)."""
    root = make_sweep(tmp_path_factory.mktemp("sweep"))
    generate([root], say=lambda _: None)
    return root / "report" / "report.html"


def reference_plan():
    """experiments/reference.py's steps: which of its data dirs are stress runs."""
    spec = importlib.util.spec_from_file_location("reference", ROOT / "experiments" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module.steps(None)


@pytest.fixture(scope="module")
def reference_report(tmp_path_factory) -> Path:
    """The report of the committed reference tables, built by today's code into a temp dir."""
    data = REFERENCE / "data"
    if not data.is_dir():
        pytest.skip(f"no reference tables at {data}")
    stress = {step.name for step in reference_plan() if step.stress}
    dirs = sorted(d for d in data.iterdir() if (d / "summary.parquet").exists())
    out = tmp_path_factory.mktemp("reference")
    generate([d for d in dirs if d.name not in stress], out=out, say=lambda _: None,
             stress=[d for d in dirs if d.name in stress] or None,
             probe=REFERENCE / "probe" if (REFERENCE / "probe").is_dir() else None)
    return out / "report.html"


def open_page(browser, report: Path):
    """The report in a 1280x800 page, and the console errors it logs (a list that grows)."""
    page = browser.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error"
            else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(report.as_uri(), wait_until="load")
    return page, errors


def contents_links_land(page) -> list[str]:
    """Click every contents link (unfolding the contents first) and return the anchors whose
    heading is missing or not on screen afterwards."""
    page.evaluate("() => document.querySelectorAll('nav details').forEach(d => d.open = true)")
    anchors = page.eval_on_selector_all("nav a[href^='#']", "links => links.map(a => a.hash)")
    assert anchors, "the report has no contents links"
    missed = []
    for anchor in anchors:
        page.evaluate("() => window.scrollTo(0, 0)")
        page.click(f"nav a[href='{anchor}']")
        top = page.evaluate("""id => {
          const target = document.getElementById(decodeURIComponent(id));
          return target === null ? null : target.getBoundingClientRect().top; }""", anchor[1:])
        if top is None or not -1 <= top < VIEWPORT["height"]:  # -1: sub-pixel scrolling
            missed.append(f"{anchor} (top {top})")
    return missed


def local_links_resolve(page, report: Path) -> list[str]:
    """Relative links (appendix pages, CSV tables, figures) that point at no file."""
    hrefs = page.eval_on_selector_all(
        "a[href]", "links => links.map(a => a.getAttribute('href'))")
    local = {h.split("#")[0] for h in hrefs if not h.startswith(("#", "http:", "https:", "mailto:"))}
    return sorted(h for h in local if h and not (report.parent / h).exists())


def check_reads_well(browser, report: Path) -> float:
    """Every assertion of a page a reader can use; returns its height in px."""
    page, errors = open_page(browser, report)
    try:
        assert page.evaluate(NUMBER_BREAKS) == []
        assert page.evaluate(WRAPPED_CELLS) == []
        assert page.evaluate(BROKEN_IMAGES) == []
        assert local_links_resolve(page, report) == []
        height = page.evaluate("() => document.documentElement.scrollHeight")
        assert contents_links_land(page) == []
        assert errors == []
        return height
    finally:
        page.close()


def test_fixture_report_reads_well_in_a_browser(browser, fixture_report):
    check_reads_well(browser, fixture_report)


def test_reference_report_is_at_most_ten_screens_and_reads_well(browser, reference_report):
    height = check_reads_well(browser, reference_report)
    assert height <= MAX_HEIGHT, f"the main document is {height} px tall at 1280x800"
