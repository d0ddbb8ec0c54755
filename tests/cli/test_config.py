"""Hydra composition and the refusal of bad input: a message naming the value, never a traceback."""

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from lossbench.config import validate
from lossbench.data import DATASETS
from lossbench.data.files import file_source
from lossbench.training.device import available_devices
from lossbench.errors import UserError
from lossbench.losses import LOSSES

from conftest import compose_config, run_cli

MISSING_DEVICE = next((d for d in ("cuda", "mps") if d not in available_devices()), None)
# The datasets read from a user's files are composed and validated in tests/data/test_your_data.py.
BUILT_IN = [d for d in DATASETS if DATASETS[d].source_now is not file_source]
PAIRS = [(d, l) for d in BUILT_IN for l in LOSSES if DATASETS[d].task in LOSSES[l].tasks]


@pytest.mark.parametrize("dataset, loss", PAIRS)
def test_every_valid_loss_dataset_pair_composes_and_validates(dataset, loss, tmp_path):
    # fashion_mnist has no shipped sample, so it is valid only where its files are.
    root = tmp_path / "fashion"
    if dataset == "fashion_mnist":
        (root / "FashionMNIST" / "raw").mkdir(parents=True)
        for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                     "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
            (root / "FashionMNIST" / "raw" / stem).touch()
    extra = [f"dataset.root={root}"] if dataset == "fashion_mnist" else []
    cfg = compose_config(f"dataset={dataset}", f"loss={loss}", *extra)
    assert cfg.loss.name == loss and cfg.dataset.name == dataset
    validate(cfg)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["dataset=multilabel", "loss=ce"], "exactly one class per sample"),
        (["dataset=multilabel", "loss=nll"], "loss=bce_logits"),
        (["optim.lr=-1"], "optim.lr=-1.0"),
        (["optim.lr=0"], "optim.lr=0.0"),
        (["trainer.batch_size=0"], "trainer.batch_size=0"),
        (["trainer.epochs=0"], "trainer.epochs=0"),
        (["model.hidden=[0]"], "model.hidden=[0]"),
        (["model.hidden=[]"], "model.hidden=[]"),
        (["dataset.source=full", "dataset.root=/nonexistent"], "train-images-idx3-ubyte"),
        (["dataset=fashion_mnist", "dataset.root=/nonexistent"], "dataset.download=true"),
        (["loss.name=nope"], "accepted: " + ", ".join(sorted(LOSSES))),
        pytest.param([f"trainer.device={MISSING_DEVICE}"], "not available on this machine",
                     marks=pytest.mark.skipif(MISSING_DEVICE is None, reason="has cuda and mps")),
        (["optim.momentum=1.5"], "optim.momentum=1.5"),
    ],
)
def test_bad_values_are_refused_with_a_message(overrides, message):
    cfg = compose_config(*overrides)
    with pytest.raises(UserError) as caught:
        validate(cfg)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "overrides, error",
    [
        (["loss=nope"], MissingConfigException),
        (["trainer.epochs=abc"], ConfigCompositionException),
        (["trainer.precision=8"], ConfigCompositionException),
        (["dataset.source=everything"], ConfigCompositionException),
    ],
)
def test_type_errors_are_caught_by_hydra_before_the_app(overrides, error):
    with pytest.raises(error):
        compose_config(*overrides)


@pytest.mark.parametrize("args, line", [
    (["trainer.epochs=abc"], "trainer.epochs=abc is not accepted: it must be an integer"),
    (["dataset=arrays", "dataset.layout=nhcw"],
     "dataset.layout=nhcw is not accepted; did you mean nhwc? accepted: auto, nchw, nhwc"),
    (["scheduler=linear"], "scheduler=linear is not a scheduler option; accepted: cosine, multistep, none, onecycle, step"),
    (["experiment=nope"], "experiment=nope is not an experiment option; did you mean noise? accepted: all_losses, "),
    (["trainer.train_metrics=none"], "trainer.train_metrics=none is not accepted; accepted: running, full"),
    (["trainer.epoch=3"], "trainer.epoch is not a key of trainer; did you mean trainer.epochs?"),
])
def test_cli_refuses_a_value_hydra_rejects_in_one_line_with_exit_2(args, line, tmp_path):
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    [printed] = result.stderr.strip().splitlines()
    assert printed.startswith(f"error: {line}")


def test_a_sweep_with_one_bad_value_is_refused_before_any_job_runs(tmp_path):
    result = run_cli("-m", "dataset.source=sample", "trainer.epochs=1,abc", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                     cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: trainer.epochs=abc is not accepted: it must be an integer"
    assert not list((tmp_path / "sweep").rglob("summary.json"))


def test_hydra_help_is_still_hydras(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0 and "python -m lossbench -m experiment=NAME" in result.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["loss=nope"], ["loss=nope is not a loss option", "bce_logits"]),
        (["trainer.epochs=abc"], ["trainer.epochs", "abc"]),
        (["dataset=multilabel", "loss=ce"], ["exactly one class per sample", "loss=bce_logits"]),
        (["optim.lr=0"], ["optim.lr=0.0", "a number > 0"]),
    ],
)
def test_cli_refuses_bad_input_without_a_traceback(args, expected, tmp_path):
    result = run_cli(*args, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    for text in expected:
        assert text in output
    assert not (tmp_path / "data").exists()  # refused before any data was touched


def test_a_plain_key_the_chosen_dataset_lacks_is_refused_with_did_you_mean(tmp_path):
    done = run_cli("dataset=multilabel", "loss=bce", "dataset.n_sample=300", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "dataset.n_sample is not a key of dataset=multilabel; did you mean dataset.n_samples?" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "results").exists()


@pytest.mark.parametrize("args, expected", [
    (["loss=focal", "loss.gama=2"], "did you mean loss.gamma?"),
    (["experiment=all_losses_multi_label", "dataset.grid=3"], "dataset.grid is not a key of dataset=multilabel"),
    (["dataset.n_samples=4"], "dataset.n_samples is not a key of dataset=mnist"),
    (["loss=apl_sce", "loss.alpha=0.1"], None),  # apl_sce builds on sce: its schema is sce's
    (["-m", "loss=ce,focal", "loss.gamma=2"], None),  # a swept choice: Hydra composes each job
    (["dataset=image_folder", "dataset.path=x", "trainer.epochs=1"], None),
])
def test_plain_group_keys_are_checked_against_the_choice_hydra_would_compose(args, expected):
    from lossbench.app import plain_key_problems

    found = plain_key_problems(args)
    assert (found == []) if expected is None else (len(found) == 1 and expected in found[0])
