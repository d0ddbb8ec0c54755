"""Hydra's refusals of an override as lossbench's one line: the key, the bad value and what is
accepted. Hydra prints a type or enum mismatch (`trainer.epochs=abc`, `dataset.layout=nhcw`) and a
missing group option (`scheduler=linear`) over several lines, with its config internals
(reference_type, the search path) and exit 1; a user mistake here is one line and exit 2."""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any, Optional

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

# omegaconf's names for the types it converts to, as the refusal words them
TYPES = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false", "String": "a string"}
CONVERTED = re.compile(r"could not be converted to (\w+)")
ONE_OF = re.compile(r"expected one of \[(.*)\]")
MERGING = re.compile(r"Error merging override (.+)")


def _near(value: str, accepted: list[str]) -> str:
    near = difflib.get_close_matches(value, accepted, n=1)
    return f"did you mean {near[0]}? " if near else ""


def _missing_option(error: MissingConfigException) -> Optional[str]:
    group, _, choice = (error.missing_cfg_file or "").rpartition("/")
    if not group or error.options is None:
        return None
    return missing_option(group, choice, error.options)


def missing_option(group: str, choice: str, options: list[str]) -> str:
    """`loss=cee is not a loss option; did you mean ce? accepted: ...`"""
    accepted = sorted(options)
    article = "an" if group[:1] in "aeiou" else "a"  # "an experiment option"
    return (f"{group}={choice} is not {article} {group} option; {_near(choice, accepted)}"
            f"accepted: {', '.join(accepted)}")


def _unknown_key(key: str, schema: Any) -> Optional[str]:
    """A key the section's schema lacks (`trainer.epoch=3`), with the nearest it has."""
    if not dataclasses.is_dataclass(schema):
        return None
    section, _, name = key.rpartition(".")
    keys = sorted(field.name for field in dataclasses.fields(schema))
    near = difflib.get_close_matches(name, keys, n=1)
    hint = f"did you mean {section + '.' if section else ''}{near[0]}? " if near else ""
    return f"{key} is not a key of {section or 'the config'}; {hint}accepted: {', '.join(keys)}"


def _bad_value(error: ConfigCompositionException, cause: OmegaConfBaseException) -> Optional[str]:
    override = MERGING.match(str(error))
    key = cause.full_key or (override.group(1).partition("=")[0] if override else None)
    if not key:
        return None
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        return _unknown_key(key, cause.object_type)
    value = override.group(1).partition("=")[2] if override else cause.value
    message = str(cause.msg) if getattr(cause, "msg", None) else str(cause).splitlines()[0]
    if isinstance(cause, ValidationError):
        one_of, converted = ONE_OF.search(message), CONVERTED.search(message)
        if one_of:
            accepted = [a.strip() for a in one_of.group(1).split(",")]
            return f"{key}={value} is not accepted; {_near(str(value), accepted)}accepted: {', '.join(accepted)}"
        if converted:
            kind = TYPES.get(converted.group(1), converted.group(1))
            return f"{key}={value} is not accepted: it must be {kind}"
    return f"{key}={value} is not accepted: {message.splitlines()[0]}"


def one_line(error: BaseException) -> Optional[str]:
    """The refusal of a mistake in the overrides, or None for any other error (left to Hydra)."""
    if isinstance(error, MissingConfigException):
        return _missing_option(error)
    if isinstance(error, OverrideParseException):
        first = str(error).splitlines()[0]
        return f"an override cannot be parsed: {first} (Hydra's override grammar: key=value, a,b,c to sweep)"
    if isinstance(error, ConfigCompositionException) and isinstance(error.__cause__, OmegaConfBaseException):
        return _bad_value(error, error.__cause__)
    return None
