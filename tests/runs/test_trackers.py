"""Optional trackers: a smoke sweep read back with MLflow's and TensorBoard's own readers, never
imported when off, refused before data loads when not installed, and never costing a run."""

import json
import socket
import subprocess
import sys
import textwrap
import threading

import pandas as pd
import pytest
import torch

from lossbench.config import validate
from lossbench.errors import ConfigError
from lossbench.runs.run import execute
from lossbench.runs.trackers import prepare_sweep

from conftest import SMALL, compose_config, run_sweep

SMOKE_RUNS = 4
TRACKER_MODULES = ("mlflow", "tensorboard", "torch.utils.tensorboard")


def test_logger_group_switches_trackers_on_one_or_several_at_once():
    assert dict(compose_config().logger) == {"mlflow": None, "tensorboard": None}
    both = compose_config("logger=[mlflow,tensorboard]", "experiment=smoke").logger
    assert both.mlflow.tracking_uri and both.tensorboard.dir == "tensorboard"


@pytest.mark.slow
@pytest.mark.parametrize("logger, expected", [
    ("none", []),
    ("[mlflow,tensorboard]", sorted(TRACKER_MODULES)),  # the check sees them when they are used
])
def test_trackers_are_imported_only_when_switched_on(logger, expected, tmp_path):
    if expected:
        pytest.importorskip("mlflow", reason="mlflow not installed")
        pytest.importorskip("tensorboard", reason="tensorboard not installed")
    script = textwrap.dedent(f"""
        import atexit, runpy, sys
        atexit.register(lambda: print("imported:", sorted(m for m in {TRACKER_MODULES!r} if m in sys.modules)))
        sys.argv = ["lossbench", *sys.argv[1:]]
        runpy.run_module("lossbench", run_name="__main__")
    """)
    run = subprocess.run(
        [sys.executable, "-c", script, f"logger={logger}", "trainer.epochs=1", "dataset.source=sample", *SMALL,
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"imported: {expected}" in run.stdout


@pytest.mark.parametrize("tracker", ["mlflow", "tensorboard"])
def test_a_tracker_not_installed_is_refused_before_data_loads(tracker, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, tracker, None)  # import and find_spec now fail as if absent
    monkeypatch.setattr("lossbench.runs.run.load_dataset", lambda *a: pytest.fail("data loaded"))
    cfg = compose_config(f"logger={tracker}", "dataset.source=sample")
    with pytest.raises(ConfigError, match=rf'logger={tracker} needs .* pip install -e "\.\[{tracker}\]"'):
        validate(cfg)
    with pytest.raises(ConfigError):
        execute(cfg, tmp_path / "run", threads=1, overrides=[])
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"


@pytest.mark.slow
@pytest.mark.parametrize("logger, broken, message", [
    ("mlflow", "logger.mlflow.tracking_uri=nosuchscheme://nowhere", "logger=mlflow stopped logging"),
    ("tensorboard", "logger.tensorboard.dir=in_the_way", "logger=tensorboard stopped logging"),
])
def test_a_failing_tracker_is_a_warning_never_a_lost_run(logger, broken, message, tmp_path, caplog):
    pytest.importorskip(logger, reason=f"{logger} not installed")
    cfg = compose_config(f"logger={logger}", broken, "trainer.epochs=1", "dataset.source=sample", *SMALL)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "in_the_way").write_text("a file where the event files' folder would go")
    summary = execute(cfg, tmp_path / "run", threads=torch.get_num_threads(), overrides=[])
    assert summary["status"] == "completed"
    assert len(pd.read_parquet(tmp_path / "run" / "metrics.parquet")) == 3  # train, val, test
    assert any(message in record.getMessage() for record in caplog.records if record.levelname == "WARNING")


@pytest.fixture
def dropping_server():
    """A loopback port that accepts every connection and closes it unanswered, counting them:
    an MLflow server that is down, whose every request fails as a connection error."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    connections = []

    def serve():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:  # closed: the test is over
                return
            connections.append(1)
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], connections
    server.close()


def test_an_mlflow_server_that_is_down_costs_a_few_retries_and_the_run_goes_on(
        dropping_server, tmp_path, caplog, monkeypatch):
    pytest.importorskip("mlflow", reason="mlflow not installed")
    from lossbench.runs.trackers import MLFLOW_HTTP_BOUNDS

    for key in MLFLOW_HTTP_BOUNDS:  # unset for the run, restored after the test
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    port, connections = dropping_server
    cfg = compose_config("logger=mlflow", f"logger.mlflow.tracking_uri=http://127.0.0.1:{port}",
                         "trainer.epochs=1", "dataset.source=sample", *SMALL)
    summary = execute(cfg, tmp_path / "run", threads=1, overrides=[])
    assert summary["status"] == "completed"
    assert any("logger=mlflow stopped logging" in record.getMessage() for record in caplog.records)
    # one request and its bounded retries (MLflow's default is 7 retries, about two minutes)
    assert 1 <= len(connections) <= 1 + int(MLFLOW_HTTP_BOUNDS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])


def test_a_sweep_creates_its_mlflow_store_and_experiment_before_its_jobs_start(tmp_path):
    pytest.importorskip("mlflow", reason="mlflow not installed")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    prepare_sweep(compose_config("logger=mlflow", "experiment=smoke", f"logger.mlflow.tracking_uri='{uri}'"))
    assert MlflowClient(tracking_uri=uri).get_experiment_by_name("smoke") is not None


@pytest.fixture(scope="module")
def tracked_sweep(tmp_path_factory):
    """A smoke sweep logging to both trackers from parallel jobs, MLflow at its default: a SQLite
    file under results/, new, so the jobs would race to create it."""
    pytest.importorskip("mlflow", reason="mlflow not installed")
    pytest.importorskip("tensorboard", reason="tensorboard not installed")
    sweep = tmp_path_factory.mktemp("tracked") / "sweep"
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = run_sweep("smoke", sweep, "logger=[mlflow,tensorboard]", "hydra/launcher=joblib")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stopped logging" not in result.stdout + result.stderr
    return sweep


def run_tables(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    return summary, metrics[metrics.split == "test"], pd.read_parquet(run_dir / "steps.parquet")


@pytest.mark.slow
def test_mlflow_holds_one_run_per_sweep_run_under_the_presets_experiment(tracked_sweep):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tracked_sweep.parent / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("smoke")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == SMOKE_RUNS
    for run in runs:
        summary, test, steps = run_tables(tracked_sweep / run.info.run_name)
        run_id = run.info.run_id
        assert run.info.status == "FINISHED" and run.data.tags["lossbench.status"] == "completed"
        assert run.data.params["loss.name"] == summary["loss"]
        assert run.data.params["seed"] == str(summary["seed"])
        acc = client.get_metric_history(run_id, "test/acc")
        assert [(m.step, m.value) for m in acc] == list(zip(test["epoch"], test["acc"]))
        grad = sorted(client.get_metric_history(run_id, "steps/grad_norm"), key=lambda m: m.step)
        assert [(m.step, m.value) for m in grad] == list(zip(steps["step"], steps["grad_norm"]))
        assert run.data.metrics["summary/test_acc"] == summary["test_acc"]
        assert run.data.metrics["summary/wall_time_s"] == summary["wall_time_s"]


@pytest.mark.slow
def test_tensorboard_event_files_sit_in_each_run_directory(tracked_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dirs = sorted(p.parent for p in tracked_sweep.glob("*/summary.json"))
    assert len(run_dirs) == SMOKE_RUNS
    for run_dir in run_dirs:
        summary, test, steps = run_tables(run_dir)
        events = EventAccumulator(str(run_dir / "tensorboard"))
        events.Reload()
        acc = events.Scalars("test/acc")
        assert [e.step for e in acc] == list(test["epoch"])
        assert [e.value for e in acc] == pytest.approx(list(test["acc"]), rel=1e-6)  # float32 on disk
        grad = events.Scalars("steps/grad_norm")
        assert [e.step for e in grad] == list(steps["step"])
        assert [e.value for e in grad] == pytest.approx(list(steps["grad_norm"]), rel=1e-6)
        assert events.Scalars("summary/test_acc")[-1].value == pytest.approx(summary["test_acc"], rel=1e-6)
        text = events.Tensors("summary/text_summary")[-1].tensor_proto.string_val[0].decode()
        assert '"status": "completed"' in text
        assert events.PluginTagToContent("hparams")  # the config, for the HParams tab
