"""Sample photos for trying chromatize, taken from the images bundled with scikit-image.

chromatize commits no third-party photos; scikit-image ships a few freely usable ones inside its
wheel (no download). :func:`sample_grayscale` turns one into the grayscale photo a user would
colorize: each pixel gets the sRGB gray value with the same CIE lightness (D65 luminance Y) as
the colour original, so a perfect colorizer could restore the original exactly.
Needs the ``samples`` extra (``pip install 'chromatize[samples]'``).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from chromatize.errors import ChromatizeError

__all__ = ["SAMPLES", "sample_color", "sample_grayscale"]

#: Sample name -> (scikit-image ``skimage.data`` function, what it shows). All ship in the wheel.
SAMPLES: dict[str, tuple[str, str]] = {
    "astronaut": ("astronaut", "astronaut Eileen Collins, NASA (public domain)"),
    "coffee": ("coffee", "a cup of coffee (CC0, Rachel Michetti)"),
    "chelsea": ("chelsea", "Chelsea the cat (CC0, Stefan van der Walt)"),
    "rocket": ("rocket", "DSCOVR launch on a Falcon 9, SpaceX (public domain)"),
}

_SRGB_WEIGHTS = np.array([0.2126, 0.7152, 0.0722])  # luminance Y of linear sRGB (D65)


def _skimage_data() -> ModuleType:
    try:
        import skimage.data
    except ImportError:
        raise ChromatizeError(
            "the sample photos come from scikit-image, which is not installed; install it with "
            "pip install 'chromatize[samples]' (or pip install scikit-image)"
        ) from None
    return skimage.data


def sample_color(name: str = "astronaut") -> np.ndarray:
    """The colour original of sample ``name``: (H, W, 3) uint8 sRGB."""
    try:
        function, _ = SAMPLES[name]
    except KeyError:
        raise ChromatizeError(
            f"unknown sample {name!r}; choose one of {', '.join(SAMPLES)}"
        ) from None
    image = getattr(_skimage_data(), function)()
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


def sample_grayscale(name: str = "astronaut") -> np.ndarray:
    """Sample ``name`` as a grayscale photo: (H, W) uint8 with the original's lightness."""
    rgb = sample_color(name).astype(np.float64) / 255.0
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    luminance = linear @ _SRGB_WEIGHTS
    gray = np.where(luminance <= 0.0031308, luminance * 12.92,
                    1.055 * np.power(luminance, 1 / 2.4) - 0.055)
    return np.round(np.clip(gray, 0.0, 1.0) * 255.0).astype(np.uint8)
