"""User mistakes: the app prints their message and exits non-zero, never with a traceback."""

import errno
from typing import Optional


class UserError(Exception):
    """Something the user can fix; the message says what and how."""


class ConfigError(UserError):
    """A configuration value the run cannot use."""


class DataError(UserError):
    """Data files that are missing, truncated or corrupt."""


class LossInputError(UserError, ValueError):
    """Tensors handed to a loss in a shape, range or dtype it does not take."""


# Exit code of a run or sweep that could not write its output (sysexits.h's EX_IOERR).
WRITE_FAILED_EXIT = 74
_WRITE_FAILURES = {
    errno.EFBIG: "the file size limit of this process (ulimit -f) is reached: raise it",
    errno.ENOSPC: "the disk is full: free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up: free some space or write elsewhere",
}


def write_failure(error: BaseException) -> Optional[str]:
    """One line for an error that says the machine refused a write (file size limit, full
    disk, quota); None for any other error."""
    if isinstance(error, OSError) and error.errno in _WRITE_FAILURES:
        where = f" to {error.filename}" if error.filename else ""
        return f"cannot write{where} ({error.strerror}): {_WRITE_FAILURES[error.errno]}"
    return None
