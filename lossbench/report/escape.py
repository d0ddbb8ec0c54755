"""User-derived text (loss labels, run names, errors, config values) made inert for the format
it lands in: markdown that viewers may render as HTML, and CSV that spreadsheets may evaluate."""

from __future__ import annotations

import re

import pandas as pd

CODE_SPAN = re.compile(r"(`[^`]*`)")
# Only what can start markup: a tag or comment (`<` before a letter, `/`, `!`, `?`) and an entity;
# `p < 0.05` and `a -> b` stay readable in the raw file.
MARKUP = re.compile(r"<(?=[A-Za-z/!?])|&(?=#?\w+;)")
# A spreadsheet evaluates a cell starting with these as a formula (OWASP's CSV injection list).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def markdown_text(text: str) -> str:
    """Text that would open an HTML tag or entity, escaped outside code spans (which viewers
    already show literally)."""
    parts = CODE_SPAN.split(str(text))
    return "".join(part if i % 2 else MARKUP.sub(lambda m: "&lt;" if m.group() == "<" else "&amp;", part)
                   for i, part in enumerate(parts))


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_cell(value):
    """A text cell a spreadsheet would run as a formula, prefixed with `'` (shown as text);
    numbers, and text that reads as a number (-0.5), stay as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not is_number(value):
        return "'" + value
    return value


def csv_bytes(frame: pd.DataFrame) -> bytes:
    safe = frame.rename(columns=lambda c: csv_cell(str(c)))
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]):
            safe[column] = safe[column].map(csv_cell)
    return safe.to_csv(index=False).encode()
