"""lossbench removes or replaces only files it wrote, inside what it owns, and writes through no
symlink (lossbench/runs/owned.py); the report survives malformed runs and escapes what users named."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SMALL, compose_config, run_cli
from lossbench.runs.collect import collect
from lossbench.config import validate
from lossbench.errors import ConfigError
from lossbench.runs.owned import MANIFESTS, PlantedLink, planted_links
from lossbench.report import ReportInputError, generate, write_report
from lossbench.report.load import load
from lossbench.report.sections import build_document
from lossbench.runs.results import RUN_FILES, RunDirLock, RunFiles, atomic_write, temp_files
from lossbench.runs.run import execute
from lossbench.runs.trackers import TensorboardTracker
from report_pages import report_markdown
from run_dirs import make_sweep, write_run

TARGET = "precious: written by the user, not by lossbench\n"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    return make_sweep(tmp_path_factory.mktemp("owned"), seeds=(0, 1), extra=False)


@pytest.fixture(scope="module")
def document(sweep):
    return build_document(load([sweep], say=lambda _: None), None, None, "holm")


def plant(link: Path, tmp_path: Path) -> Path:
    """A symlink at `link` to a file outside the run dir, whose content must survive."""
    target = tmp_path / f"target-{link.name}"
    target.write_text(TARGET)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return target


# ---- the report's --out ----

def test_a_foreign_file_in_report_out_survives_a_rewrite(sweep, tmp_path):
    out = tmp_path / "paper"
    (out / "figures").mkdir(parents=True)
    (out / "tables").mkdir()
    (out / "figures" / "my_plot.png").write_text(TARGET)
    (out / "tables" / "my_data.csv").write_text(TARGET)
    generate([sweep], out, say=lambda _: None)
    listed = (out / MANIFESTS[1]).read_text().split()
    # an earlier report's figure no longer drawn is removed: it is in the manifest
    (out / "figures" / "gone.png").write_text("an earlier report drew this")
    (out / MANIFESTS[1]).write_text("\n".join([*listed, "figures/gone.png"]) + "\n")
    generate([sweep], out, say=lambda _: None)
    assert (out / "figures" / "my_plot.png").read_text() == TARGET
    assert (out / "tables" / "my_data.csv").read_text() == TARGET
    assert not (out / "figures" / "gone.png").exists()
    assert sorted((out / MANIFESTS[1]).read_text().split()) == sorted(listed)


def test_a_foreign_file_where_the_report_writes_is_refused_untouched(sweep, tmp_path, document):
    out = tmp_path / "paper"
    out.mkdir()
    (out / "report.md").write_text(TARGET)
    with pytest.raises(ReportInputError, match="report.md, which no earlier report listed as its own"):
        write_report(document, out)
    assert (out / "report.md").read_text() == TARGET
    assert not (out / "figures").exists() or not any((out / "figures").iterdir())


def test_a_report_tables_dir_that_is_a_link_is_refused(sweep, tmp_path, document):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / "tables").symlink_to(elsewhere)
    with pytest.raises(PlantedLink):
        write_report(document, tmp_path / "paper")
    assert not any(elsewhere.iterdir())


# ---- tracker dirs ----

@pytest.mark.parametrize("value, says", [
    ("/tmp/some/abs/dir", "must stay inside the run directory"),
    (".", "not the run directory itself"),
    ("./", "not the run directory itself"),
    ("..", "must stay inside the run directory"),
    ("../shared_tb", "must stay inside the run directory"),
    ("tb/../../x", "must stay inside the run directory"),
    (".hydra", "one of the run's own files"),
    ("summary.json", "one of the run's own files"),
])
def test_tensorboard_dir_outside_the_run_dir_is_refused(value, says, monkeypatch):
    cfg = compose_config("logger=tensorboard", f"logger.tensorboard.dir='{value}'", "dataset.source=sample")
    with pytest.raises(ConfigError, match=rf"logger.tensorboard.dir='{value}' is not accepted: .*{says}"):
        validate(cfg)


def test_a_subdirectory_tensorboard_dir_is_accepted():
    validate(compose_config("logger=tensorboard", "logger.tensorboard.dir=logs/tb", "dataset.source=sample"))


# ---- symlinks planted in a run dir ----

def test_the_lock_refuses_a_planted_link_and_leaves_its_target(tmp_path):
    target = plant(tmp_path / "run" / ".lossbench.lock", tmp_path)
    with pytest.raises(PlantedLink, match=r"\.lossbench\.lock is a symlink"):
        with RunDirLock(tmp_path / "run"):
            pass
    assert target.read_text() == TARGET


@pytest.mark.parametrize("name", ["summary.json", "metrics.parquet", "predictions.parquet"])
def test_an_atomic_write_refuses_a_planted_link_and_leaves_its_target(name, tmp_path):
    target = plant(tmp_path / "run" / name, tmp_path)
    with pytest.raises(PlantedLink):
        RunFiles(tmp_path / "run", {}).write_summary({"status": "running"}) if name == "summary.json" \
            else atomic_write(tmp_path / "run" / name, lambda tmp: Path(tmp).write_text("x"))
    assert target.read_text() == TARGET
    assert (tmp_path / "run" / name).is_symlink()


def test_a_run_refuses_a_planted_link_before_it_writes(tmp_path):
    cfg = compose_config("dataset.source=sample", *SMALL)
    target = plant(tmp_path / "run" / "summary.json", tmp_path)
    with pytest.raises(PlantedLink):
        execute(cfg, tmp_path / "run", threads=1, overrides=[])
    assert target.read_text() == TARGET


# Every file lossbench or Hydra (for it) writes in a run dir.
WRITTEN_IN_A_RUN_DIR = [*RUN_FILES, ".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml"]


@pytest.mark.parametrize("name", WRITTEN_IN_A_RUN_DIR)
def test_a_planted_link_in_a_run_dir_is_refused_before_hydra_writes(name, tmp_path):
    target = plant(tmp_path / "run" / name, tmp_path)
    done = run_cli("trainer.threads=1", "trainer.epochs=1", "dataset.source=sample", *SMALL,
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{name} is a symlink" in done.stderr and "Traceback" not in done.stderr
    assert target.read_text() == TARGET


def test_a_planted_link_in_a_sweep_job_dir_is_refused_before_any_job(tmp_path):
    target = plant(tmp_path / "sweep" / "seed=1" / "lossbench.log", tmp_path)
    done = run_cli("-m", "seed=0,1", "trainer.threads=1", "trainer.epochs=1", "dataset.source=sample",
                   *SMALL, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "lossbench.log is a symlink" in done.stderr
    assert target.read_text() == TARGET
    assert not (tmp_path / "sweep" / "seed=0").exists()


def test_links_elsewhere_in_a_run_dir_are_the_users_business(tmp_path):
    plant(tmp_path / "run" / "my_data.csv", tmp_path)
    assert planted_links(tmp_path / "run", RUN_FILES, recursive=False) == []


# ---- malformed runs ----

def malformed_sweep(root: Path) -> Path:
    make_sweep(root, seeds=(0, 1), extra=False)
    strings = write_run(root, "loss=ce,seed=7", loss="ce", seed=7)
    metrics = pd.read_parquet(strings / "metrics.parquet")
    metrics["acc"] = metrics["acc"].astype(str)
    metrics.to_parquet(strings / "metrics.parquet")
    bogus = write_run(root, "loss=ce,seed=8", loss="ce", seed=8)
    summary = json.loads((bogus / "summary.json").read_text())
    (bogus / "summary.json").write_text(json.dumps({**summary, "seed": "abc", "config": []}))
    empty = write_run(root, "loss=nll,seed=8", loss="nll", seed=8)
    pd.DataFrame().to_parquet(empty / "metrics.parquet")
    return root


def test_malformed_runs_are_collected_as_bad_with_the_reason(tmp_path):
    summary = collect(malformed_sweep(tmp_path)).summary.set_index("run")
    assert summary.loc["loss=ce,seed=7", "status"] == "failed"
    assert "metrics.parquet column acc holds" in summary.loc["loss=ce,seed=7", "error"]
    assert summary.loc["loss=ce,seed=8", "status"] == "failed"
    assert "seed is 'abc', not an integer" in summary.loc["loss=ce,seed=8", "error"]
    assert summary.loc["loss=nll,seed=8", "status"] == "failed"
    assert (summary["status"] == "completed").sum() == 2 * 6
    assert pd.api.types.is_integer_dtype(summary["seed"].dropna().astype("int64"))


def test_the_report_lists_malformed_runs_as_excluded_without_crashing(tmp_path, capsys):
    from lossbench.runs.collect import main as collect_main

    root = malformed_sweep(tmp_path)
    assert collect_main([str(root)]) == 0
    said = capsys.readouterr().out
    assert "bad run loss=ce,seed=7: metrics.parquet column acc holds" in said
    assert "bad run loss=ce,seed=8: summary.json seed is 'abc'" in said
    markdown = report_markdown(generate([root], say=lambda _: None).parent)
    assert "=unset" not in markdown
    for run in ("loss=ce,seed=7", "loss=ce,seed=8", "loss=nll,seed=8"):
        assert f"| {run} | failed |" in markdown


# ---- escaping ----

def test_user_text_is_escaped_in_markdown_and_csv(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path, f"a{seed}", loss="<script>alert(1)</script>", seed=seed)
        write_run(tmp_path, f"b{seed}", loss="=HYPERLINK(\"http://x\")", seed=seed)
    markdown = report_markdown(generate([tmp_path], say=lambda _: None).parent)
    outside_code = re.sub(r"`[^`]*`", "", markdown)  # viewers show code spans literally
    assert "<script>" not in outside_code and "&lt;script>" in outside_code
    cells = [cell for csv in (tmp_path / "report" / "tables").glob("*.csv")
             for cell in pd.read_csv(csv, dtype=str).fillna("").to_numpy().ravel()]
    assert "'=HYPERLINK(\"http://x\")" in cells
    assert not [cell for cell in cells if cell.startswith(("=", "+", "@"))]
    negatives = [cell for cell in cells if cell.startswith("-")]
    assert negatives and all(float(cell) < 0 for cell in negatives)  # numbers stay numbers


# ---- the property: no file lossbench did not write is ever lost ----

# Suffixes of the files lossbench writes (and its temp files'), so a writer that removed by
# pattern (*.png, .*.tmp*) rather than by its manifest would meet them.
NAMES = st.builds(lambda stem, suffix: stem + suffix, st.text("abx_-.0", min_size=1, max_size=6),
                  st.sampled_from(["", ".png", ".csv", ".tmp", ".tmp.json", ".parquet"])).filter(
    lambda n: n not in (".", "..") and n not in {*RUN_FILES, *MANIFESTS, "report.md", "report.html"})
TREES = st.dictionaries(st.lists(NAMES, min_size=1, max_size=3).map(tuple), st.binary(max_size=20), max_size=8)


def plant_tree(root: Path, tree: dict) -> dict[Path, bytes]:
    """Foreign files (and the dirs holding them) under root; a path blocked by an earlier one is skipped."""
    planted = {}
    for parts, data in tree.items():
        path = root.joinpath(*parts)
        if any(p == path or p in path.parents or path in p.parents for p in planted):
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            continue
        planted[path] = data
    return planted


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(out_tree=TREES, run_tree=TREES, prefix=st.sampled_from(["", "figures", "tables", "appendix", "tensorboard"]))
def test_generated_foreign_files_are_never_lost(out_tree, run_tree, prefix, document, tmp_path_factory):
    root = tmp_path_factory.mktemp("property")
    out, run_dir = root / "out", root / "run"
    planted = plant_tree(out / prefix, out_tree) | plant_tree(run_dir / prefix, run_tree)
    # temp files as a killed writer leaves them, which the next run removes: lossbench's own
    (run_dir / ".summary.json.abc.tmp.json").parent.mkdir(parents=True, exist_ok=True)
    (run_dir / ".summary.json.abc.tmp.json").write_text("torn")
    for _ in range(2):  # a rewrite: each writer removes what its last write listed
        try:
            write_report(document, out)
        except (ReportInputError, OSError):
            pass  # a foreign file sat where the report writes: refused, nothing written
        with RunDirLock(run_dir):
            try:
                TensorboardTracker(SimpleNamespace(dir="tensorboard"), run_dir, {}, None).writer.close()
            except OSError:
                pass  # a foreign file named `tensorboard` blocks the folder: the tracker stops
            for leftover in temp_files(run_dir):
                leftover.unlink()
            files = RunFiles(run_dir, {"loss": "ce", "seed": 0})
            files.add_epoch([{"epoch": 1, "split": "test", "acc": 0.5}], [], [])
            files.write_tables()  # and removes the journal
            files.write_summary({"status": "completed"})
    assert not (run_dir / ".summary.json.abc.tmp.json").exists()
    for path, data in planted.items():
        assert path.read_bytes() == data, path
