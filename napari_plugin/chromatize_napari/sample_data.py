"""Sample data for napari's File > Open Sample > chromatize menu.

The photo is made on the fly from one that scikit-image ships (see :mod:`chromatize.samples`), so
no third-party photo is committed to this repository.
"""

from __future__ import annotations

from typing import Any

from chromatize_napari.layer_data import METADATA_KEY

SAMPLE_LAYER_NAME = "grayscale photo"


def grayscale_photo() -> list[tuple[Any, dict[str, Any], str]]:
    """One grayscale (H, W) uint8 photo as a napari layer-data tuple."""
    from chromatize.samples import sample_grayscale

    image = sample_grayscale()
    metadata = {f"{METADATA_KEY}_sample": "made from scikit-image's bundled sample data"}
    return [(image, {"name": SAMPLE_LAYER_NAME, "metadata": metadata}, "image")]
