"""Reader for the IDX format of MNIST and Fashion-MNIST (plain or gzipped)."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

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


def read_idx_shape(path: Path) -> tuple[int, ...]:
    """The shape an IDX file's header declares, reading only the header (cheap, even gzipped)."""
    try:
        with (gzip.open(path) if path.suffix == ".gz" else open(path, "rb")) as f:
            head = f.read(16)
    except (OSError, EOFError, zlib.error) as error:
        raise _cannot_read(path, error) from None
    return _shape(path, head)


def read_idx(path: Path) -> np.ndarray:
    """Read an unsigned-byte IDX file into an array of the shape its header declares.

    The header is the whole check: a truncated or padded file, a wrong magic number, a header
    declaring no items or a broken gzip stream is refused with the file's name, never parsed
    into garbage.
    """
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise _cannot_read(path, error) from None
    shape = _shape(path, raw)
    header = 4 + 4 * len(shape)
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(
            f"{path}: truncated or corrupt: its header declares shape {shape}, "
            f"{expected} bytes, but it holds {len(raw)}; delete it and provide a fresh copy"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
