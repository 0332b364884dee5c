"""chromatize: automatic photo colorization with a 313-bin classification colorizer."""

from __future__ import annotations

__version__ = "0.1.0"
