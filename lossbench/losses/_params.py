"""A loss's knobs: one structured config per loss, the schema of `conf/loss/<name>.yaml` (Hydra
type-checks overrides against it), and the checks of the values the types allow but the loss
cannot use."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool): what a numeric knob may be."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def in_range(key: str, value: float, low: float, high: float, text: str) -> list[str]:
    ok = is_number(value) and low <= value <= high
    return [] if ok else [f"{key}={value!r} is not accepted: it must be {text}"]


def class_list(key: str, value: Any, n_classes: int, text: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or len(value) != n_classes or not all(
            is_number(v) and v >= 0 for v in value) or not any(v > 0 for v in value):
        return [f"{key}={value!r} is not accepted: give {text} as a list of {n_classes} numbers "
                f">= 0 (one per class), e.g. {key}=[{','.join(['1'] * n_classes)}]"]
    return []


@dataclass
class LossParams:
    """What every loss has: its name. Subclasses add the loss's knobs with their defaults."""

    name: str = "ce"

    def problems(self, n_classes: int) -> list[str]:
        """Values the types allow but the loss cannot use (checked before data loads)."""
        return []


def no_knobs(name: str) -> type[LossParams]:
    """The params of a loss without knobs: its name, as the default that makes it that loss."""
    return make_dataclass(f"{name}_params", [("name", str, field(default=name))], bases=(LossParams,))


def _format(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def loss_label(params: LossParams) -> str:
    """The loss's identity in results: its name, plus every knob that differs from the default,
    so focal(gamma=1) and focal are two entries of a comparison."""
    default = type(params)()
    changed = [f"{f.name}={_format(getattr(params, f.name))}" for f in fields(params)
               if f.name != "name" and getattr(params, f.name) != getattr(default, f.name)]
    return f"{params.name}({', '.join(changed)})" if changed else params.name
