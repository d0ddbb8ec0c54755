"""The docs site: its generated pages are what the code writes now, and it builds with
`mkdocs build --strict`, which fails on a broken link."""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lossbench import docs_gen
from lossbench.losses import LOSSES

ROOT = Path(__file__).resolve().parents[2]


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("mkdocs", reason='mkdocs is not installed: pip install -e ".[docs]"')
    pytest.importorskip("material", reason='mkdocs-material is not installed: pip install -e ".[docs]"')
    # NO_MKDOCS_2_WARNING: the theme's banner about MkDocs 2, noise in a failure's output.
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(config), "--site-dir", str(site)], capture_output=True, text=True,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


@pytest.mark.parametrize("page", sorted(docs_gen.PAGES))
def test_generated_page_is_what_the_code_writes_now(page):
    on_disk = ROOT / "docs" / page
    written = on_disk.read_text() if on_disk.is_file() else ""
    expected = docs_gen.PAGES[page]()
    diff = list(difflib.unified_diff(written.splitlines(), expected.splitlines(), f"docs/{page}",
                                     "generated now", lineterm="", n=0))
    assert not diff, (f"docs/{page} differs from what the code generates: run "
                      f"`{docs_gen.REGENERATE}` and commit the page. First differences:\n"
                      + "\n".join(diff[:12]))


def test_docs_gen_help_prints_usage_and_writes_nothing(tmp_path):
    done = subprocess.run([sys.executable, "-m", "lossbench.docs_gen", "--help"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0 and "usage: python -m lossbench.docs_gen" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_docs_gen_writes_its_pages_under_the_folder_given(tmp_path):
    docs_gen.cli([str(tmp_path / "site")])
    assert sorted(str(p.relative_to(tmp_path / "site")) for p in (tmp_path / "site").rglob("*.md")) == sorted(docs_gen.PAGES)


def test_a_new_loss_appears_in_the_catalogue(monkeypatch):
    fake = dataclasses.replace(LOSSES["ce"], name="fake_loss", formula="-log q_y (fake)")
    monkeypatch.setitem(LOSSES, "fake_loss", fake)
    catalogue = docs_gen.loss_catalogue()
    assert "## fake_loss" in catalogue and "`-log q_y (fake)`" in catalogue


def test_knob_ranges_come_from_the_loss_validation():
    # focal refuses gamma < 0 and asks for one alpha per class: the page says so in those words.
    assert docs_gen.knob_range(LOSSES["focal"], "gamma") == "a number >= 0 (0 gives plain ce)"
    assert "list of C numbers >= 0" in docs_gen.knob_range(LOSSES["focal"], "alpha")


def test_site_builds_strictly(tmp_path):
    result = mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "losses" / "index.html").is_file()


def test_a_broken_link_fails_the_strict_build(tmp_path):
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    (tmp_path / "docs" / "broken.md").write_text("# Broken\n\nSee [the missing page](missing.md).\n")
    result = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0 and "missing.md" in result.stderr


def github_anchor(heading: str) -> str:
    """The id GitHub gives a README heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_readme_link_resolves():
    # mkdocs --strict checks the links inside docs/; the README is outside the site
    text = (ROOT / "README.md").read_text()
    anchors = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"https?://", target):
            continue
        path, _, anchor = target.partition("#")
        if path and not (ROOT / path).exists():
            broken.append(target)
        elif not path and anchor not in anchors:
            broken.append(target)
        elif path.endswith(".md") and anchor:
            headings = re.findall(r"^#+ (.+)$", (ROOT / path).read_text(), flags=re.M)
            if anchor not in {github_anchor(h) for h in headings}:
                broken.append(target)
    assert len(re.findall(r"\]\(", text)) > 10 and broken == []


def test_the_readmes_quoted_verdicts_are_the_reference_reports():
    # the README quotes the committed report's better/worse verdicts; a rebuild must update both
    import pandas as pd

    verdicts = pd.read_csv(ROOT / "results" / "reference" / "tables" / "verdicts.csv")
    text = (ROOT / "README.md").read_text().split("## Results", 1)[1].split("\n## ", 1)[0]
    quoted = [[c.strip() for c in line.strip("|").split("|")]
              for line in text.splitlines() if line.startswith("| ") and "`" in line]
    stated = verdicts[verdicts["verdict"].isin(["better", "worse"])]
    assert len(quoted) == len(stated) > 0

    def signed(x: float) -> str:
        return f"{x:+.4f}"

    for (question, group, pair, metric, difference, seeds, p_improvement, p_adj, verdict), (_, row) in zip(
            quoted, stated.iterrows()):
        assert (question, group, pair, metric, seeds, verdict) == (
            row["question"], row["group"], f"`{row['loss']}` vs `{row['baseline']}`", row["metric"],
            row["k_of_n"], row["verdict"])
        assert difference == f"{signed(row['difference'])} [{signed(row['ci_low'])}, {signed(row['ci_high'])}]"
        assert p_improvement == f"{row['p_improvement']:.2f}"
        assert p_adj == ("< 0.0001" if row["p_adj"] < 1e-4 else f"{row['p_adj']:.4f}")
