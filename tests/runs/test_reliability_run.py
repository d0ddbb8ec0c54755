"""A run that stops for any reason says why: every exit path leaves a final status in
summary.json, bad values are refused before data loads, typos are refused, nothing hangs."""

import gzip
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from hydra.errors import MissingConfigException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

import lossbench.config
import lossbench.errors
import lossbench.runs.run
from lossbench.config import validate
from lossbench.errors import ConfigError, DataError
from lossbench.runs.run import Interrupted, execute
from lossbench.runs.journal import JOURNAL
from lossbench.runs.sweep import failure_reason

from conftest import SMALL, compose_config, run_cli
from idx_files import idx_bytes, write_mnist_idx

CHEAP = ("dataset.source=sample", "trainer.epochs=1", "model.hidden=[8]")


def execute_in(tmp_path, *overrides):
    """execute() as the app calls it; returns (the exception it raised or None, summary.json)."""
    cfg = compose_config(*overrides)
    run_dir = tmp_path / "run"
    try:
        execute(cfg, run_dir, threads=1, overrides=list(overrides))
        raised = None
    except BaseException as error:  # noqa: BLE001 - the claim is about every kind
        raised = error
    return raised, json.loads((run_dir / "summary.json").read_text())


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["seed=-1"], "seed=-1"),
        ([f"seed={2**40}"], "seeds must be in 0..4294967295"),
        (["dataset=multilabel", "loss=bce_logits", "dataset.seed=-1"], "dataset.seed=-1"),
        (["dataset=multilabel", "loss=bce_logits", "dataset.n_samples=1"], "0 training and 1 test"),
        (["model.hidden=[1000000000]"], "GiB"),
        (["dataset=multilabel", "loss=bce_logits", "dataset.n_labels=100"], "dataset.n_labels=100"),
        (["dataset=multilabel", "loss=bce_logits", "dataset.n_samples=1000000000000"], "GiB"),
        (["optim.lr=inf"], "optim.lr=inf"),
        (["model.logit_scale=inf"], "model.logit_scale=inf"),
        (["model.dropout=nan"], "model.dropout=nan"),
        (["+trainer.epoch=3"], "did you mean trainer.epochs?"),
        (["+foo=1"], "foo is not a key of the config"),
        (["++model.widths=[3]"], "model.widths is not a key"),
        (["dataset=multi_mnist", "loss=bce_logits", "dataset.n_train=5000000000"], "dataset.n_train=5000000000"),
        (["dataset=multi_mnist", "loss=bce_logits", "dataset.grid=6000"], "168000x168000 (dataset.grid=6000)"),
        (["dataset=multi_mnist", "loss=bce_logits", "dataset.grid=100", "model.hidden=[300000]"],
         "model=mlp on 7,840,000 inputs"),
        (["model=cnn", "model.channels=[6,3000000]"], "model=cnn on 784 inputs"),
        (["model=cnn", "model.channels=[2,2,2,2,2]"], "needs images of at least 32x32; this data's are 28x28"),
        (["loss=focal_sigmoid", "dataset=multilabel", "loss.alpha=-0.5"], "-1 to switch alpha_t off"),
    ],
)
def test_values_the_run_cannot_use_are_refused_before_data_and_recorded(tmp_path, overrides, message):
    # multilabel has no dataset.source: its schema refuses the key
    cheap = [o for o in CHEAP if "dataset=multilabel" not in overrides or not o.startswith("dataset.source")]
    raised, summary = execute_in(tmp_path, *cheap, *overrides)
    assert isinstance(raised, ConfigError) and message in str(raised)
    assert summary["status"] == "failed" and message in summary["error"]
    assert "n_train" not in summary  # no data was loaded


@pytest.mark.parametrize("n_labels, n_classes", [(9, 10), (1, 2)])
def test_multilabel_generator_parameters_it_can_satisfy_are_accepted(n_labels, n_classes):
    validate(compose_config("dataset=multilabel", "loss=bce_logits", f"dataset.n_labels={n_labels}",
                            f"dataset.n_classes={n_classes}"))


def test_an_unknown_experiment_preset_is_refused_with_the_list_of_presets():
    with pytest.raises(MissingConfigException) as caught:
        compose_config("experiment=classic_loses")
    assert "classic_losses" in str(caught.value) and "stability_smoke" in str(caught.value)


def test_a_sweep_without_a_preset_lands_in_adhoc():
    from hydra import compose

    from conftest import initialize_config

    with initialize_config():
        cfg = compose(config_name="config", return_hydra_config=True)
        assert OmegaConf.select(cfg, "hydra.sweep.dir") == "results/sweeps/adhoc"
        cfg = compose(config_name="config", overrides=["experiment=smoke"], return_hydra_config=True)
        assert OmegaConf.select(cfg, "hydra.sweep.dir") == "results/sweeps/smoke"


def test_a_dataset_root_that_is_a_file_is_refused_not_replaced_by_the_sample(tmp_path):
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        validate(compose_config(f"dataset.root={tmp_path / 'data'}"))


def test_an_unreadable_dataset_root_is_refused(tmp_path, monkeypatch):
    # As root every folder is readable, so the permission check is what is replaced here.
    monkeypatch.setattr(lossbench.config.os, "access", lambda path, mode: False)
    with pytest.raises(ConfigError, match="cannot be read by this user"):
        validate(compose_config(f"dataset.root={tmp_path}"))


def corrupt_deflate(path):
    """Flip the first deflate block's type to the reserved one: zlib.error on decompression."""
    raw = bytearray(path.read_bytes())
    raw[10] = 0x07  # right after gzip's 10-byte header
    path.write_bytes(bytes(raw))


def replace_idx(folder, stem, array):
    (folder / f"{stem}.gz").write_bytes(gzip.compress(idx_bytes(array)))


def constant_images(folder):
    replace_idx(folder, "train-images-idx3-ubyte", np.zeros((600, 28, 28)))
    replace_idx(folder, "t10k-images-idx3-ubyte", np.zeros((200, 28, 28)))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: corrupt_deflate(d / "t10k-images-idx3-ubyte.gz"), "zlib.error"),
        (lambda d: replace_idx(d, "train-labels-idx1-ubyte", np.zeros(0)), "declares 0 items"),
        (lambda d: replace_idx(d, "t10k-images-idx3-ubyte", np.zeros((200, 20, 20))), "differ in size"),
        (constant_images, "every training pixel has the same value"),
    ],
    ids=["corrupt-deflate", "zero-items", "train-test-sizes", "constant-images"],
)
def test_data_that_cannot_be_loaded_is_recorded_as_failed_with_the_reason(tmp_path, damage, message):
    data = tmp_path / "data"
    write_mnist_idx(data, gz=True)
    damage(data)
    raised, summary = execute_in(tmp_path, "dataset.source=full", f"dataset.root={data}", "trainer.epochs=1")
    assert isinstance(raised, DataError) and message in str(raised)
    assert summary["status"] == "failed" and message in summary["error"]


def test_any_other_exception_is_recorded_as_failed_with_its_type(tmp_path, monkeypatch):
    def out_of_memory(*args):
        raise MemoryError("cannot allocate the model")

    monkeypatch.setattr(lossbench.runs.run, "build_model", out_of_memory)
    raised, summary = execute_in(tmp_path, *CHEAP)
    assert isinstance(raised, MemoryError)
    assert summary["status"] == "failed"
    assert summary["error"] == "MemoryError: cannot allocate the model"


def test_a_stop_signal_during_data_loading_is_recorded_as_interrupted(tmp_path, monkeypatch):
    loading = lossbench.runs.run.load_dataset

    def preempted_while_loading(cfg):
        os.kill(os.getpid(), signal.SIGTERM)  # Python runs the handler before the next line
        return loading(cfg)

    monkeypatch.setattr(lossbench.runs.run, "load_dataset", preempted_while_loading)
    before = signal.getsignal(signal.SIGTERM)
    raised, summary = execute_in(tmp_path, *CHEAP)
    assert isinstance(raised, Interrupted) and raised.signum == signal.SIGTERM
    assert summary["status"] == "interrupted" and summary["error"] == "interrupted by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before  # the run's handler is gone again


def test_the_sweep_failure_list_names_a_killed_run_instead_of_nan():
    assert failure_reason("failed", "loss=ce cannot train") == "loss=ce cannot train"
    assert "killed" in failure_reason("running", math.nan)


def run_until(tmp_path, target: str, *args: str) -> subprocess.Popen:
    """Start `python -m lossbench ARGS` and return once tmp_path/run/TARGET exists."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lossbench", *args, "hydra.run.dir=run"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.time() + 120
    while not (tmp_path / "run" / target).exists():
        assert process.poll() is None and time.time() < deadline, process.communicate()[0]
        time.sleep(0.05)
    return process


@pytest.mark.slow
def test_sigterm_records_interrupted(tmp_path, signum=signal.SIGTERM):
    process = run_until(tmp_path, JOURNAL, "dataset.source=sample", "trainer.epochs=200",
                        "model.hidden=[16]")
    process.send_signal(signum)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + signum
    assert "Traceback" not in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert summary["error"] == f"interrupted by {signal.Signals(signum).name}"
    metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert len(metrics) == 3 * summary["epochs_completed"] >= 3  # train, val, test


@pytest.mark.slow
def test_a_corrupt_gzip_in_the_data_root_fails_the_cli_run_with_its_message(tmp_path):
    write_mnist_idx(tmp_path / "data", gz=True)
    corrupt_deflate(tmp_path / "data" / "train-images-idx3-ubyte.gz")
    result = run_cli("dataset.source=full", "hydra.run.dir=run", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output
    assert "train-images-idx3-ubyte.gz: cannot read it (zlib.error" in output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "zlib.error" in summary["error"]


@pytest.mark.slow
def test_ctrl_c_in_a_sweep_collects_what_finished_and_says_how_to_resume(tmp_path):
    sweep = tmp_path / "sweep"
    process = subprocess.Popen(
        [sys.executable, "-m", "lossbench", "-m", "experiment=smoke", *SMALL, "trainer.epochs=100",
         f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.time() + 120
    while not list(sweep.glob(f"*/{JOURNAL}")):  # a run has finished an epoch
        assert process.poll() is None and time.time() < deadline, process.communicate()[0]
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in out
    assert "sweep interrupted: 1 interrupted" in out
    assert "to resume (finished runs are skipped): python -m lossbench -m experiment=smoke" in out
    assert pd.read_parquet(sweep / "summary.parquet")["status"].tolist() == ["interrupted"]


# The property: whatever the overrides, a run ends with exit 0 and a result, or with a non-zero
# exit, a message and no traceback, and never leaves summary.json saying `running`.
FLOATS = st.one_of(
    st.sampled_from([0.0, -1.0, 1e-3, 0.5, 1.0, 1e300, math.inf, -math.inf, math.nan]),
    st.floats(min_value=-10, max_value=10),
)
INTS = st.one_of(st.sampled_from([-1, 0, 1, 2, 2**31, 2**40]), st.integers(min_value=-3, max_value=70))
BAD_TYPES = st.sampled_from(["abc", "[1,2]", "null", "{a: 1}", "''"])


def render(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return str(value).replace(" ", "")


OVERRIDES = {
    "seed": INTS,
    "optim.lr": FLOATS,
    "optim.weight_decay": FLOATS,
    "model.dropout": FLOATS,
    "model.logit_scale": FLOATS,
    "model.hidden": st.lists(st.sampled_from([-1, 0, 1, 4, 10**9]), max_size=2),
    "trainer.batch_size": INTS,
    "trainer.log_every": INTS,
    "trainer.threads": st.sampled_from([-1, 0, 1, "null"]),
    "trainer.epochs": st.sampled_from([-1, 0, 1, "abc"]),
    "dataset.n_samples": st.sampled_from([-1, 0, 1, 2, 60, 10**15]),
    "dataset.n_labels": st.sampled_from([-1, 0, 1, 3, 9, 10, 100]),
    "dataset.n_classes": st.sampled_from([-1, 0, 1, 2, 10]),
    "dataset.test_fraction": FLOATS,
    "dataset.seed": INTS,
}
TYPOS = st.sampled_from(["+trainer.epoch=3", "+foo=1", "trainer.epoch=3", "model.hiden=[4]",
                         "experiment=nope", "loss=nope", "+model.hidden=[4]"])


@st.composite
def override_sets(draw) -> list[str]:
    dataset = draw(st.sampled_from([
        ["dataset.source=sample"],
        ["dataset=multilabel", "loss=bce_logits", "dataset.n_samples=200"],
    ]))
    base = {"trainer.epochs": "1", "model.hidden": "[8]"}
    for key in draw(st.lists(st.sampled_from(sorted(OVERRIDES)), min_size=1, max_size=3, unique=True)):
        base[key] = render(draw(st.one_of(OVERRIDES[key], BAD_TYPES)))
    extra = draw(st.lists(TYPOS, max_size=1))
    return dataset + [f"{key}={value}" for key, value in base.items()] + extra


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=override_sets())
def test_every_run_ends_with_a_result_or_a_message_and_a_final_status(tmp_path, overrides):
    run_dir = tmp_path / f"run{time.monotonic_ns()}"
    result = run_cli(*overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=120)
    output = result.stdout + result.stderr
    summary_file = run_dir / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else None
    assert "Traceback" not in output, output
    if result.returncode == 0:
        assert summary["status"] in ("completed", "diverged"), summary
    else:
        assert output.strip(), "a refusal without a message"
        # Hydra refuses wrong types before the app starts: no run, no summary. Past that point
        # the run must say how it ended.
        assert summary is None or summary["status"] in ("failed", "interrupted"), summary
        if summary is not None:
            assert summary["error"] and summary["error"] in output
            assert "Traceback" not in (run_dir / "lossbench.log").read_text(), "not a user mistake"


@pytest.mark.parametrize("mode, key", [((), "hydra.run.dir"), (("-m", "seed=0,1"), "hydra.sweep.dir")])
def test_an_output_dir_that_cannot_be_made_is_one_line_naming_the_key(tmp_path, mode, key):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = run_cli(*mode, f"{key}={blocker}/out", "trainer.epochs=1", cwd=tmp_path)
    assert result.returncode == 2
    assert f"{key}={blocker}/out cannot be written" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def run_with_file_size_limit(tmp_path, limit: int, *args):
    """The CLI under `ulimit -f` (RLIMIT_FSIZE, bytes)."""
    import resource

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "lossbench", *args, *CHEAP, "trainer.threads=1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=240, preexec_fn=limited)


@pytest.mark.parametrize("mode, key", [((), "hydra.run.dir"), (("-m", "seed=0,1"), "hydra.sweep.dir")])
def test_a_file_size_limit_below_what_hydra_writes_is_one_line_before_anything_runs(tmp_path, mode, key):
    out = tmp_path / "out"
    result = run_with_file_size_limit(tmp_path, 512, *mode, f"{key}={out}")
    assert result.returncode == lossbench.errors.WRITE_FAILED_EXIT, result.stderr
    assert result.stderr.strip() == (f"error: {key}={out}: cannot write (File too large): the file size "
                                     "limit of this process (ulimit -f) is reached: raise it")


def test_a_write_that_fails_mid_run_is_one_line_and_recorded_failed(tmp_path):
    run_dir = tmp_path / "run"
    # room for Hydra's files, the probe and the first tables, not for the predictions (~50 kB)
    result = run_with_file_size_limit(tmp_path, 20 * 1024, f"hydra.run.dir={run_dir}")
    assert result.returncode == lossbench.errors.WRITE_FAILED_EXIT, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "error: cannot write" in output and "(ulimit -f) is reached" in output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "ulimit -f" in summary["error"]
