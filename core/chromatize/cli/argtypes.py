"""Number parsers for argparse options shared by the sub-commands.

Each parser says in words what the option expects, e.g. ``argument --saturation: expected a
number >= 0, got 'abc'`` (argparse adds the ``argument --saturation:`` part), for a value that is
not a number at all as much as for one out of range.
"""

from __future__ import annotations

import argparse
import math


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def _whole_number(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def positive_float(text: str) -> float:
    """A finite number > 0."""
    what = "a number > 0"
    value = _number(text, what)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    what = "a number >= 0"
    value = _number(text, what)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    what = "a whole number >= 1"
    value = _whole_number(text, what)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number >= 0."""
    what = "a whole number >= 0"
    value = _whole_number(text, what)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value
