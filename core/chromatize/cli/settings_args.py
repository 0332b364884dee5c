"""Command-line flags for the colorization settings, made from :data:`chromatize.options.SETTINGS`.

Sub-commands add the flags they offer with :func:`add_setting_flags` and turn the parsed
arguments into one :class:`~chromatize.options.ColorizeOptions` with :func:`options_from_args`.
Every flag's default is None, so the defaults live only in ColorizeOptions; a value is checked
by ColorizeOptions itself while parsing, so a bad one is a usage error naming the flag.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from chromatize.options import SETTINGS, ColorizeOptions, OptionError
from chromatize.registry import MODELS

_METAVARS = {"weights": "PATH", "render_size": "PIXELS", "temperature": "T", "saturation": "S",
             "batch_size": "N", "device": "DEVICE"}


def _checked(name: str, parse: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    what = SETTINGS[name].expects or what

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        try:
            ColorizeOptions(**{name: value})
        except OptionError as exc:
            raise argparse.ArgumentTypeError(
                f"expected {exc.expected or what}, got {text!r}") from None
        return value

    convert.__name__ = name  # argparse names the type in some messages
    return convert


def _help(name: str) -> str:
    setting = SETTINGS[name]
    default = getattr(ColorizeOptions(), name)
    if setting.kind == "bool":
        return setting.help
    shown = setting.default_text if default is None else str(default)
    return f"{setting.help} (default: {shown})"


def add_setting_flags(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    """Add one flag per setting in ``names`` (``--temperature``, ``--model``, ...)."""
    for name in names:
        setting = SETTINGS[name]
        extra: dict[str, Any] = {"default": None, "help": _help(name), "dest": name}
        if setting.kind == "bool":
            parser.add_argument(setting.flag, action="store_true", **{**extra, "default": False})
            continue
        if name == "model":
            extra["choices"] = sorted(MODELS)
        elif setting.kind == "choice" and name != "device":
            extra["choices"] = setting.choices
        elif setting.kind == "float":
            extra["type"] = _checked(name, float, "a number")
        elif setting.kind == "int":
            extra["type"] = _checked(name, int, "a whole number")
        elif name == "device":
            extra["type"] = _checked(name, str, "auto, cpu, cuda, cuda:N or mps")
        if name in _METAVARS:
            extra["metavar"] = _METAVARS[name]
        parser.add_argument(setting.flag, **extra)


def options_from_args(args: argparse.Namespace) -> ColorizeOptions:
    """The ColorizeOptions the parsed flags describe (absent flags keep the defaults)."""
    given = {name: getattr(args, name) for name in SETTINGS if hasattr(args, name)}
    return ColorizeOptions.from_mapping(given)
