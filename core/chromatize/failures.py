"""One place that turns an exception into what a front end tells its user.

Library messages name settings with tokens (``«weights»``, ``«allow_download=True»``; see
:func:`chromatize.options.setting_token`). ``str(exc)`` reads them as Python (``weights``,
``allow_download=True``); :func:`describe_failure` renders them in the words of the front end
that shows the message: the command line's flags, or an editor's control labels. It also
classifies the failure (``kind``), so that the out-of-memory advice, the "cancelled" wording and
the "this is a bug" wording exist once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from chromatize.errors import (
    Cancelled,
    ChromatizeError,
    DeviceUnavailableError,
    InputImageError,
    ModelUnavailableError,
    OutputError,
    WeightsError,
)
from chromatize.options import SETTINGS

FrontEnd = Literal["python", "cli", "napari", "gimp"]
FailureKind = Literal[
    "bad_request", "model_missing", "device_unavailable", "bad_image", "bad_output",
    "out_of_memory", "cancelled", "failed", "internal",
]

#: Settings that are not colorization options but appear in messages: (flag, label).
_OTHER_SETTINGS: dict[str, tuple[str, str]] = {
    "max_pixels": ("--max-pixels N", "Maximum pixels"),
    "overwrite": ("--overwrite", "Overwrite"),
}
_TOKEN = re.compile(r"«([a-z_]+)(=[^»]*)?»")
_OOM_MARKERS = ("out of memory", "can't allocate memory", "not enough memory",
                "failed to allocate")
_OOM_ADVICE: dict[FrontEnd, str] = {
    "python": "try a smaller render_size, another device, or a smaller image",
    "cli": "try a smaller --render-size, --batch-size 1, another --device, or a smaller image",
    "napari": "try a smaller 'Render size', another 'Device', or a smaller layer",
    "gimp": "try a smaller 'Render size', another 'Device', or a smaller image or selection",
}


@dataclass(frozen=True)
class Failure:
    """What to tell the user: a kind (for programs) and a message (for people)."""

    kind: FailureKind
    message: str


def _flag(name: str) -> str:
    setting = SETTINGS.get(name)
    if setting is None:
        return _OTHER_SETTINGS.get(name, (f"--{name.replace('_', '-')}", ""))[0]
    return setting.flag + (" PATH" if setting.kind == "path" else "")


def _label(name: str) -> str:
    setting = SETTINGS.get(name)
    label = setting.label if setting is not None else _OTHER_SETTINGS.get(name, ("", name))[1]
    if setting is not None and setting.kind == "bool":
        return f"tick '{label}'"
    return f"'{label}'"


def render_message(message: str, front_end: FrontEnd) -> str:
    """``message`` with its setting tokens in the words of ``front_end``."""

    def one(match: re.Match[str]) -> str:
        name, python = match.group(1), match.group(0)[1:-1]
        if front_end == "python":
            return python
        if front_end == "cli":
            return _flag(name)
        return _label(name)

    return _TOKEN.sub(one, message)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a (host or device) out-of-memory error."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _OOM_MARKERS)


def _kind(exc: BaseException) -> FailureKind:
    from chromatize.options import OptionError

    if isinstance(exc, OptionError):
        return "bad_request"
    if isinstance(exc, Cancelled):
        return "cancelled"
    if isinstance(exc, (ModelUnavailableError, WeightsError)):
        return "model_missing"
    if isinstance(exc, DeviceUnavailableError):
        return "device_unavailable"
    if isinstance(exc, InputImageError):
        return "bad_image"
    if isinstance(exc, OutputError):
        return "bad_output"
    if is_out_of_memory(exc):
        return "out_of_memory"
    if isinstance(exc, ChromatizeError):
        return "failed"
    return "internal"


def describe_failure(exc: BaseException, front_end: FrontEnd = "python") -> Failure:
    """The user-facing description of ``exc`` for ``front_end``."""
    kind = _kind(exc)
    text = str(exc.args[0]) if isinstance(exc, ChromatizeError) and exc.args else str(exc)
    if kind == "cancelled":
        return Failure(kind, text or "colorization was cancelled")
    if kind == "out_of_memory":
        first = text.splitlines()[0][:200] if text else ""
        return Failure(kind, "not enough memory to colorize this image"
                       + (f" ({first})" if first else "") + "; " + _OOM_ADVICE[front_end])
    if kind == "internal":
        return Failure(kind, f"unexpected error: {type(exc).__name__}: {text} "
                             "(this is a bug in chromatize; please report it)")
    return Failure(kind, render_message(text, front_end))
