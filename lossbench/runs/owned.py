"""The one rule for what lossbench may replace or remove: only files it created itself, inside a
directory it owns (a run dir, a sweep dir, a report's --out), never through a symlink planted there.

A directory's files with lossbench's fixed names (a run's summary.json, a sweep's summary.parquet)
are lossbench's. Files whose names vary (figures, tables, event files) are listed, as they are
written, in the directory's manifest (`.lossbench-manifest.<writer>`), and only a listed file is ever
removed or replaced. A write opens nothing through a link: the lock and a run's journal with
O_NOFOLLOW, every other file as a fresh temp file (O_EXCL never follows a link) renamed over the
old one (a rename replaces a link, never its target), under parents checked to be real directories.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path, PurePosixPath
from typing import Iterable, Optional

from lossbench.errors import UserError

# One manifest per writer: a report written into a sweep dir lists its files apart from collect's.
WRITERS = ("collect", "report", "tensorboard")
MANIFESTS = tuple(f".lossbench-manifest.{writer}" for writer in WRITERS)
# Where Hydra writes into a job's directory (its output_subdir and job_logging's file handler)
# and into a sweep's: lossbench checks these for planted links before Hydra writes.
HYDRA_FILES = (".hydra", "config.yaml", "hydra.yaml", "overrides.yaml", "multirun.yaml")


class PlantedLink(UserError):
    """A symlink where lossbench (or Hydra for it) would write."""

    def __init__(self, link: Path):
        super().__init__(f"{link} is a symlink: lossbench writes no file through a link (its target "
                         "would be overwritten). Remove the link, or choose another directory")


def open_nofollow(path: Path, flags: int, mode: int = 0o666) -> int:
    """os.open that refuses a symlink at `path` (PlantedLink) instead of opening its target."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise PlantedLink(path) from None
        raise


def require_real_dirs(root: Path, relative: str | Path) -> None:
    """PlantedLink if a directory between `root` and root/relative, or the file itself, is a link."""
    path = root
    for part in PurePosixPath(relative).parts:
        path = path / part
        if path.is_symlink():
            raise PlantedLink(path)


def planted_links(directory: Path, names: Iterable[str], recursive: bool) -> list[Path]:
    """Symlinks named like a file lossbench or Hydra writes (`names`, Hydra's, the manifest) in
    `directory` (itself not followed) and its .hydra, or anywhere under it if `recursive` (a sweep
    dir), sorted. A directory that does not exist holds none."""
    names = set(names) | set(HYDRA_FILES) | set(MANIFESTS)
    found = []
    for root, dirs, files in os.walk(directory):
        found += [Path(root, name) for name in dirs + files
                  if name in names and Path(root, name).is_symlink()]
        if not recursive:
            dirs[:] = [name for name in dirs if name == ".hydra" and Path(root) == Path(directory)]
    return sorted(found)


def refuse_planted_links(directory: Path, names: Iterable[str], recursive: bool = False) -> None:
    """PlantedLink for the first link planted_links finds: checked before Hydra writes its own
    files (.hydra/*.yaml, the job's log, multirun.yaml), which it opens without O_NOFOLLOW."""
    links = planted_links(directory, names, recursive)
    if links:
        raise PlantedLink(links[0])


def subdir_problem(key: str, value: str, reserved: Iterable[str]) -> Optional[str]:
    """Why `value` cannot name a subdirectory of a run dir lossbench owns, or None: it must stay
    inside (not absolute, no `..`), not be the run dir itself, and not be one of its own files."""
    path = PurePosixPath(value)
    parts = [part for part in path.parts if part != "."]
    why = None
    if path.is_absolute() or ".." in parts:
        why = "it must stay inside the run directory (no absolute path, no '..'): other runs' or your files there would be replaced"
    elif not parts:
        why = "it must be a subdirectory, not the run directory itself, whose own files it would replace"
    elif parts[0] in set(reserved) | set(HYDRA_FILES) | set(MANIFESTS):
        why = f"{parts[0]} is one of the run's own files"
    return None if why is None else f"{key}={value!r} is not accepted: {why}; e.g. {key}=tensorboard"


class Manifest:
    """The files one writer of lossbench wrote under `root`, as paths relative to it, one a line
    in root/.lossbench-manifest.<writer>."""

    def __init__(self, root: Path, writer: str):
        assert writer in WRITERS, writer
        self.root = root
        self.path = root / MANIFESTS[WRITERS.index(writer)]

    def read(self) -> set[str]:
        try:
            fd = open_nofollow(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return set()
        with os.fdopen(fd) as file:
            return {line.strip() for line in file if line.strip() and safe_relative(line.strip())}

    def write(self, names: Iterable[str]) -> None:
        from lossbench.runs.results import atomic_write

        text = "".join(f"{name}\n" for name in sorted(set(names)))
        require_real_dirs(self.root, self.path.name)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))

    def foreign(self, names: Iterable[str]) -> list[str]:
        """The `names` that exist under root (links included) but no earlier write listed."""
        listed = self.read()
        return sorted(name for name in names if name not in listed and os.path.lexists(self.root / name))

    def claim(self, names: Iterable[str]) -> set[str]:
        """List `names` before writing them, so a write cut short leaves them claimed. Returns
        what was listed before."""
        earlier = self.read()
        self.write(earlier | set(names))
        return earlier

    def release(self, keep: Iterable[str]) -> None:
        """Remove the listed files not in `keep`, then list only `keep`. A listed path that is now
        a link or a directory is someone else's: it is left alone."""
        keep = set(keep)
        for name in self.read() - keep:
            path = self.root / name
            if path.is_file() and not path.is_symlink():
                path.unlink()
        self.write(keep)


def safe_relative(name: str) -> bool:
    """A manifest line names a path inside its root: an edited manifest cannot point outside it."""
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts
