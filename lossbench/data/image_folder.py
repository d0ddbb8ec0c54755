"""`dataset=image_folder`: a folder of images in torchvision's ImageFolder layout, `DIR/<class>/<file>`
(class names are the folder names, sorted), or `DIR/train/<class>/...` and `DIR/test/<class>/...`
with an optional `DIR/val/<class>/...` that becomes the validation split.

Images are decoded once with PIL, resized to `dataset.image_size` x `dataset.image_size` when set,
and cached decoded (lossbench/data/cache.py) under a key made of the file list with sizes and
mtimes and the recipe (size, channels, PIL's version): a changed file is decoded again. Grey and
colour as found (colour when any image has it), or `dataset.channels` forces one. Without
image_size every image must have one size; two files of different sizes are named."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from lossbench.data import Dataset, DatasetInfo, Peek
from lossbench.data.cache import cached
from lossbench.data.files import FileDataConfig, assemble, check_fits, existing_path, file_source
from lossbench.errors import DataError
from lossbench.losses import Task

SPLITS = ("train", "test", "val")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
# 16-bit, 32-bit integer and float pixels: PIL's convert to L or RGB clips them at 255.
WIDE_MODES = ("I", "F")


@dataclass
class ImageFolderConfig(FileDataConfig):
    name: str = "image_folder"
    # Resize every image to image_size x image_size (null: keep the size, which must be shared)
    image_size: Optional[int] = None
    # 1 (grey) or 3 (RGB); null: as found, 3 when any image has colour
    channels: Optional[int] = None


def _split_folders(root: Path) -> dict[str, Path]:
    if (root / "train").is_dir() and (root / "test").is_dir():
        return {split: root / split for split in SPLITS if (root / split).is_dir()}
    return {"train": root}


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _listing(folder: Path, classes: Optional[list[str]] = None) -> tuple[list[str], list[tuple[Path, int]]]:
    """The class names and every (file, class index) under `folder`/<class>/ (recursively)."""
    found = sorted(d.name for d in folder.iterdir() if d.is_dir() and _visible(d))
    if not found:
        loose = any(f.is_file() for f in folder.iterdir())
        raise DataError(f"{folder} holds no class folders{' (only loose files)' if loose else ''}; "
                        "dataset=image_folder reads DIR/<class>/<image>")
    if classes is not None and set(found) - set(classes):
        raise DataError(f"{folder} has classes the training folder lacks: {', '.join(sorted(set(found) - set(classes)))}")
    classes = classes or found
    files = []
    for name in found:
        images = sorted(f for f in (folder / name).rglob("*") if f.is_file() and _visible(f))
        if not images:
            raise DataError(f"{folder / name} holds no images: a class folder needs at least one")
        files += [(f, classes.index(name)) for f in images]
    return classes, files


def _listings(cfg: Any) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    root = existing_path(cfg)
    if not root.is_dir():
        raise DataError(f"dataset.path={cfg.path} is a file; dataset=image_folder reads a folder of class folders")
    folders = _split_folders(root)
    classes, files = _listing(folders["train"])
    listed = {"train": files}
    for split in ("test", "val"):
        if split in folders:
            listed[split] = _listing(folders[split], classes)[1]
    return classes, listed


def _header(path: Path) -> tuple[str, tuple[int, int]]:
    """(mode, (width, height)) from the file's header, refusing a file PIL cannot read."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.mode, image.size
    except Exception as error:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
        raise DataError(f"{path} is not an image PIL can read ({type(error).__name__}: {error})") from None


def _recipe(cfg: Any, headers: dict[Path, tuple[str, tuple[int, int]]]) -> tuple[int, tuple[int, int]]:
    """The channels and (width, height) every image is decoded to."""
    for path, (mode, _) in headers.items():
        if mode in WIDE_MODES or mode.startswith("I;16"):
            raise DataError(f"{path} has more than 8 bits per pixel (PIL mode {mode}); lossbench holds "
                            "images as 8-bit pixels and converting would clip it: save the images as 8-bit")
    channels = cfg.channels or (1 if all(mode in GREY_MODES for mode, _ in headers.values()) else 3)
    if cfg.image_size is not None:
        return channels, (cfg.image_size, cfg.image_size)
    sizes = {}
    for path, (_, size) in headers.items():
        sizes.setdefault(size, path)
        if len(sizes) > 1:
            (a, first), (b, second) = sizes.items()
            raise DataError(f"images differ in size: {first} is {a[0]}x{a[1]}, {second} is {b[0]}x{b[1]}; "
                            "set dataset.image_size=N to resize every image to NxN")
    return channels, next(iter(sizes))


def _decode(path: Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            if image.size != size:
                image = image.resize(size, Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except Exception as error:  # a header that reads but a body that does not (truncated files)
        raise DataError(f"{path} cannot be decoded ({type(error).__name__}: {error})") from None
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def _check(cfg: Any) -> None:
    if cfg.image_size is not None and cfg.image_size < 1:
        raise DataError(f"dataset.image_size={cfg.image_size} must be an integer >= 1 (or null: as found)")
    if cfg.channels not in (None, 1, 3):
        raise DataError(f"dataset.channels={cfg.channels} is not accepted: 1 (grey), 3 (RGB) or null (as found)")


def load(cfg: Any) -> Dataset:
    _check(cfg)
    classes, listed = _listings(cfg)
    headers = {path: _header(path) for files in listed.values() for path, _ in files}
    channels, size = _recipe(cfg, headers)
    check_fits(len(headers) * channels * size[0] * size[1], f"dataset.path={cfg.path} ({len(headers)} images)")
    from PIL import __version__ as pil

    identity = repr(([(split, str(p), p.stat().st_size, p.stat().st_mtime_ns, c) for split, files in listed.items()
                      for p, c in files], channels, size, pil)).encode()

    def decode() -> dict[str, np.ndarray]:
        arrays = {}
        for split, files in listed.items():
            arrays[f"x_{split}"] = np.stack([_decode(p, channels, size).reshape(-1) for p, _ in files])
            arrays[f"y_{split}"] = np.array([c for _, c in files], dtype=np.int64)
        return arrays

    arrays = cached("image_folder", identity, decode)
    return assemble(cfg, arrays["x_train"], arrays["y_train"], f"{existing_path(cfg)} ({len(headers)} images)",
                    classes, arrays.get("x_test"), arrays.get("y_test"), arrays.get("x_val"), arrays.get("y_val"),
                    image_shape=(channels, size[1], size[0]))


def peek(cfg: Any) -> Peek:
    """Classes from the folder names, the input size from the first image's header."""
    _check(cfg)
    classes, listed = _listings(cfg)
    mode, (width, height) = _header(listed["train"][0][0])
    channels = cfg.channels or (1 if mode in GREY_MODES else 3)
    if cfg.image_size is not None:
        width = height = cfg.image_size
    n_images = sum(len(files) for files in listed.values())
    sizes = f"dataset.path={cfg.path} ({n_images} images of {width}x{height})"
    check_fits(n_images * 3 * width * height, sizes)
    return Peek(Task.single_label, len(classes), channels * width * height, (channels, height, width),
                own_val="val" in listed, bytes=n_images * 3 * width * height, sizes=sizes)


INFO = DatasetInfo(ImageFolderConfig, load, lambda cfg: None, peek, Task.single_label, images=True,
                   source_now=file_source)
