"""Exceptions chromatize raises on purpose. Each message says what went wrong and what to do."""

from __future__ import annotations


class ChromatizeError(Exception):
    """Base class: an expected failure with a message meant for the user (no traceback needed)."""


class ModelUnavailableError(ChromatizeError):
    """The requested model has no usable weights here (not shipped, not cached, download not allowed)."""


class WeightsError(ChromatizeError):
    """A weights file is missing, corrupted, has the wrong hash, or does not fit the architecture."""


class DownloadError(WeightsError):
    """Downloading weights failed (offline, HTTP error, truncated transfer, hash mismatch)."""


class InputImageError(ChromatizeError):
    """An input image cannot be read or colorized (empty, truncated, unsupported mode, too large)."""


class OutputError(ChromatizeError):
    """An output cannot be written (exists and no overwrite, unwritable directory, encoder error)."""


class Cancelled(ChromatizeError):
    """The caller cancelled a running job; nothing was written or returned."""
