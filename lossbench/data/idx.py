"""Reader for the IDX format of MNIST and Fashion-MNIST (plain or gzipped)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from lossbench.errors import DataError

_UBYTE = 0x08


def read_idx(path: Path) -> np.ndarray:
    """Read an unsigned-byte IDX file into an array of the shape its header declares.

    The header is the whole check: a truncated or padded file, a wrong magic number or a broken
    gzip stream is refused with the file's name, never parsed into garbage.
    """
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot read it ({error}); delete it and provide a fresh copy") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _UBYTE or not 1 <= raw[3] <= 3:
        raise DataError(
            f"{path}: not an unsigned-byte IDX file (magic bytes {raw[:4].hex() or 'missing'}, "
            "expected 0000080N); is it the right file?"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated inside its header ({len(raw)} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(
            f"{path}: truncated or corrupt: its header declares shape {shape}, "
            f"{expected} bytes, but it holds {len(raw)}; delete it and provide a fresh copy"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
