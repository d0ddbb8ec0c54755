"""`pip install .` gives a lossbench that runs anywhere: conf/ ships inside the wheel as lossbench.conf."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow  # builds a wheel and starts the installed app: seconds each

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel pip builds from a copy of the source tree (so the checkout gets no build/), offline."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source)
    for name in ("conf", "lossbench", "hydra_plugins"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(out), str(source)],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return next(out.glob("lossbench-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel's contents, importable from a PYTHONPATH that holds nothing of the checkout."""
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONHASHSEED": "0"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=240)


def test_wheel_holds_every_yaml_of_conf_and_every_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    yamls = {f"lossbench/conf/{p.relative_to(REPO / 'conf').as_posix()}" for p in (REPO / "conf").rglob("*.yaml")}
    modules = {p.relative_to(REPO).as_posix() for package in ("lossbench", "hydra_plugins")
               for p in (REPO / package).rglob("*.py")}
    assert len(yamls) > 10
    assert yamls - names == set()
    assert modules - names == set()


def test_installed_app_composes_its_config_from_the_package(installed, tmp_path):
    where = run_installed(installed, tmp_path, "-c", "import lossbench.app as app; print(app.__file__, app.config_path())")
    assert where.returncode == 0, where.stderr
    assert where.stdout.split() == [str(installed / "lossbench" / "app.py"), "pkg://lossbench.conf"]

    searchpath = run_installed(installed, tmp_path, "-m", "lossbench", "--info", "searchpath")
    assert "pkg://lossbench.conf" in searchpath.stdout, searchpath.stdout + searchpath.stderr

    job = run_installed(installed, tmp_path, "-m", "lossbench", "loss=bce_logits", "experiment=smoke", "--cfg", "job")
    assert job.returncode == 0, job.stderr
    cfg = yaml.safe_load(job.stdout)
    assert (cfg["loss"]["name"], cfg["experiment"], cfg["trainer"]["epochs"]) == ("bce_logits", "smoke", 1)


@pytest.mark.slow
def test_installed_app_trains_from_another_directory(installed, tmp_path):
    run = run_installed(installed, tmp_path, "-m", "lossbench", "loss=bce_logits", "trainer.epochs=1",
                        "model.hidden=[32]", "dataset.source=sample")
    assert run.returncode == 0, run.stdout + run.stderr
    (summary,) = tmp_path.glob("results/runs/*/*/summary.json")
    assert json.loads(summary.read_text())["status"] == "completed"
