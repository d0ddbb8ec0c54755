"""User mistakes: the app prints their message and exits non-zero, never with a traceback."""


class UserError(Exception):
    """Something the user can fix; the message says what and how."""


class ConfigError(UserError):
    """A configuration value the run cannot use."""


class DataError(UserError):
    """Data files that are missing, truncated or corrupt."""


class LossInputError(UserError, ValueError):
    """Tensors handed to a loss in a shape, range or dtype it does not take."""
