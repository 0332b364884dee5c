"""napari plug-in for chromatize: a "Colorize" dock widget and a grayscale sample photo.

The npe2 manifest is ``napari.yaml`` beside this file (entry point ``napari.manifest``). Importing
this package does not import Qt or napari; the widget module does, when napari asks for it.
"""

from __future__ import annotations

__all__: list[str] = []
