"""Exceptions chromatize raises on purpose. Each message says what went wrong and what to do.

Messages name settings with tokens (``«weights»``; :func:`chromatize.options.setting_token`):
``str(exc)`` reads them as a Python caller writes them, and
:func:`chromatize.failures.describe_failure` renders them for the command line or an editor.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"«([^»]*)»")


class ChromatizeError(Exception):
    """Base class: an expected failure whose message is meant for the user (no traceback)."""

    def __str__(self) -> str:
        return _TOKEN.sub(r"\1", super().__str__())


class ModelUnavailableError(ChromatizeError):
    """The requested model has no usable weights here (not shipped, not cached, no download)."""


class WeightsError(ChromatizeError):
    """A weights file is missing, corrupted, has the wrong hash or does not fit the architecture."""


class DownloadError(WeightsError):
    """Downloading weights failed (offline, HTTP error, truncated transfer, hash mismatch)."""


class DeviceUnavailableError(ChromatizeError):
    """The requested device (CUDA, MPS) is not available on this machine."""


class InputImageError(ChromatizeError):
    """An input image cannot be read or colorized (empty, truncated, unsupported, too large)."""


class OutputError(ChromatizeError):
    """An output cannot be written (exists without overwrite, unwritable folder, encoder error)."""


class Cancelled(ChromatizeError):
    """The caller cancelled a running job; nothing was written or returned."""
