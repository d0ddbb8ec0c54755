"""Reader for the IDX format of MNIST and Fashion-MNIST (plain or gzipped)."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

from lossbench.errors import DataError

_UBYTE = 0x08


def _shape(path: Path, raw: bytes) -> tuple[int, ...]:
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _UBYTE or not 1 <= raw[3] <= 3:
        raise DataError(
            f"{path}: not an unsigned-byte IDX file (magic bytes {raw[:4].hex() or 'missing'}, "
            "expected 0000080N); is it the right file?"
        )
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated inside its header ({len(raw)} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if shape[0] == 0:
        raise DataError(f"{path}: its header declares 0 items; delete it and provide a fresh copy")
    return shape


def _cannot_read(path: Path, error: Exception) -> DataError:
    fix = "fix its permissions" if isinstance(error, PermissionError) else "delete it and provide a fresh copy"
    kind = type(error).__name__ if type(error).__module__ == "builtins" else f"{type(error).__module__}.{type(error).__name__}"
    return DataError(f"{path}: cannot read it ({kind}: {error}); {fix}")


def _opened(path: Path):
    return gzip.open(path) if path.suffix == ".gz" else open(path, "rb")


def read_idx_shape(path: Path) -> tuple[int, ...]:
    """The shape an IDX file's header declares, reading only the header (cheap, even gzipped)."""
    try:
        with _opened(path) as f:
            head = f.read(16)
    except (OSError, EOFError, zlib.error) as error:
        raise _cannot_read(path, error) from None
    return _shape(path, head)


# deflate's largest ratio (a run of one byte): a gzip file cannot inflate to more than this
# many times its size, so a header declaring more is a lie told before anything is inflated.
GZIP_MAX_RATIO = 1032


def read_idx(path: Path, item_shape: Optional[tuple[int, ...]] = None) -> np.ndarray:
    """Read an unsigned-byte IDX file into an array of the shape its header declares.

    The header is the whole check, made before the data is read: a header declaring items of
    another shape than `item_shape`, or more bytes than the file can hold, is refused at once;
    the data is then read (inflated) only up to the size declared plus one byte, so a truncated
    or padded file (or a gzip bomb) is refused with the file's name, never parsed into garbage
    nor inflated whole. A wrong magic number, no items or a broken gzip stream are refused too.
    """
    try:
        size = path.stat().st_size
        with _opened(path) as f:
            head = f.read(4)
            shape = _shape(path, head + f.read(4 * head[3]) if len(head) == 4 else head)
            if item_shape is not None and shape[1:] != tuple(item_shape):
                raise DataError(f"{path}: its header declares items of shape {shape[1:]}, expected "
                                f"{tuple(item_shape)}; is it the right file?")
            header, expected = 4 + 4 * len(shape), int(np.prod(shape))
            room = size * GZIP_MAX_RATIO if path.suffix == ".gz" else size - header
            if expected > room:
                raise DataError(f"{path}: truncated or corrupt: its header declares shape {shape}, "
                                f"{expected + header} bytes, more than this {size}-byte file can hold; "
                                "delete it and provide a fresh copy")
            raw = f.read(expected + 1)
    except (OSError, EOFError, zlib.error) as error:
        raise _cannot_read(path, error) from None
    if len(raw) != expected:
        held = "more" if len(raw) > expected else len(raw) + header
        raise DataError(
            f"{path}: truncated or corrupt: its header declares shape {shape}, "
            f"{expected + header} bytes, but it holds {held}; delete it and provide a fresh copy"
        )
    return np.frombuffer(raw, dtype=np.uint8, count=expected).reshape(shape)
