"""Decoded arrays kept on disk between runs, so a machine decodes a source once.

The MNIST sample ships as a 1 MB CSV that numpy parses in seconds, longer than a short run trains;
its split arrays are cached as an .npz under $LOSSBENCH_CACHE, else $XDG_CACHE_HOME/lossbench,
else ~/.cache/lossbench. An entry is keyed by the SHA-256 of the source file and of what else
decides the arrays (`recipe`), and checked on every read: the key stored inside it must match, it
must hold exactly the arrays it lists (at least one) and the zip's CRCs must hold, else it is
rebuilt. A cache that cannot be written only costs time.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from lossbench.runs.results import atomic_write

KEY = "cache_key"
NAMES = "cache_names"  # the arrays the entry holds: an entry missing one is incomplete


def cache_dir() -> Path:
    if os.environ.get("LOSSBENCH_CACHE"):
        return Path(os.environ["LOSSBENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lossbench"


def _read(path: Path, key: str) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as stored:
            if not {KEY, NAMES} <= set(stored.files) or str(stored[KEY]) != key:
                return None
            names = [str(name) for name in stored[NAMES].ravel()]
            if not names or set(names) != set(stored.files) - {KEY, NAMES}:
                return None
            return {name: stored[name] for name in names}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # missing, torn or corrupt
        return None


def _write(path: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Atomically: runs that start together each write a whole file, the last one wins. A cache
    that cannot be written only costs the next run a decode."""
    try:
        atomic_write(path, lambda tmp: np.savez(tmp, **arrays, **{KEY: np.array(key),
                                                                 NAMES: np.array(list(arrays))}))
    except OSError:
        pass


def cached_arrays(name: str, source: Path, recipe: str, decode: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """decode()'s arrays, read from the cache when it holds them for this source file and recipe."""
    return cached(name, source.read_bytes() + recipe.encode(), decode)


def cached(name: str, identity: bytes, decode: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """decode()'s arrays, read from the cache when it holds them for this `identity` (whatever
    decides the arrays: the source's bytes, or a folder's file list with sizes and mtimes, and
    the recipe)."""
    key = hashlib.sha256(identity).hexdigest()
    path = cache_dir() / f"{name}-{key[:16]}.npz"
    arrays = _read(path, key)
    if arrays is None:
        arrays = decode()
        _write(path, key, arrays)
    return arrays
