"""Normalising the arrays users hand to the pipeline, and giving results back in their layout.

Accepted: numpy arrays shaped (H, W) gray, (H, W, 1) gray, (H, W, 2) gray + alpha, (H, W, 3) RGB,
(H, W, 4) RGBA; dtype uint8, uint16, or float32/float64 with values in [0, 1]. Colour values are
sRGB-encoded. Everything else is refused with :class:`~chromatize.errors.InputImageError`.

The pipeline needs only the lightness L of the input (float32, [0, 100]) plus the untouched alpha
channel; the output is RGB (3 channels) or RGBA (4 channels, for any input with alpha) in the
input's dtype. Work is done in row strips (``rows``) so big images never need a full-size float
copy of their colour channels.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from chromatize import color
from chromatize.errors import InputImageError

ACCEPTED_DTYPES: tuple[str, ...] = ("uint8", "uint16", "float32", "float64")
ACCEPTED_LAYOUTS = "(H, W) or (H, W, 1) gray, (H, W, 2) gray+alpha, (H, W, 3) RGB, (H, W, 4) RGBA"
_ACCEPTED_TEXT = (
    f"accepted are numpy arrays shaped {ACCEPTED_LAYOUTS}, dtype uint8, uint16, or float32/float64 "
    "with values in [0, 1]"
)
#: Rows per block when scanning float input for NaN / out-of-range values.
_SCAN_PIXELS = 1 << 22


@dataclass(frozen=True)
class ImageLayout:
    """What the caller gave us: size, channel layout and dtype (to hand results back alike)."""

    height: int
    width: int
    channels: int  # 1 (gray), 2 (gray + alpha), 3 (RGB), 4 (RGBA)
    dtype: np.dtype
    squeezed: bool  # input was (H, W) without a channel axis

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)

    @property
    def is_gray(self) -> bool:
        return self.channels in (1, 2)

    @property
    def color_channels(self) -> int:
        return 1 if self.is_gray else 3

    @property
    def out_channels(self) -> int:
        """Channels of the colorized result: RGB, or RGBA when the input had alpha."""
        return 4 if self.has_alpha else 3

    @property
    def pixels(self) -> int:
        return self.height * self.width

    @property
    def max_value(self) -> float:
        return _max_value(self.dtype)

    def describe(self) -> str:
        kind = {1: "gray", 2: "gray+alpha", 3: "RGB", 4: "RGBA"}[self.channels]
        return f"{self.width}x{self.height} {kind} {self.dtype.name}"


def _max_value(dtype: np.dtype) -> float:
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    return 1.0


def _describe_given(image: object) -> str:
    if isinstance(image, np.ndarray):
        return f"an array of shape {image.shape} and dtype {image.dtype}"
    return f"an object of type {type(image).__name__}"


def inspect_image(image: object, name: str = "image") -> ImageLayout:
    """Validate ``image`` and describe its layout; raise InputImageError if it is not usable.

    Float images are scanned (in blocks, without a full-size temporary) for NaN/inf and values
    outside [0, 1].
    """
    if not isinstance(image, np.ndarray):
        raise InputImageError(f"{name}: got {_describe_given(image)}; {_ACCEPTED_TEXT}")
    if image.dtype.name not in ACCEPTED_DTYPES:
        raise InputImageError(
            f"{name}: dtype {image.dtype} is not supported (shape {image.shape}); {_ACCEPTED_TEXT}"
        )
    if image.ndim == 2:
        channels, squeezed = 1, True
    elif image.ndim == 3 and image.shape[2] in (1, 2, 3, 4):
        channels, squeezed = image.shape[2], False
    else:
        raise InputImageError(
            f"{name}: shape {image.shape} is not an image layout; {_ACCEPTED_TEXT}"
        )
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise InputImageError(f"{name}: the image is empty (shape {image.shape})")
    if image.dtype.kind == "f":
        _check_float_values(image, name)
    return ImageLayout(height, width, channels, image.dtype, squeezed)


def _check_float_values(image: np.ndarray, name: str) -> None:
    rows = max(
        1, _SCAN_PIXELS // max(1, image.shape[1] * (image.shape[2] if image.ndim == 3 else 1))
    )
    for y0 in range(0, image.shape[0], rows):
        block = image[y0 : y0 + rows]
        if not np.isfinite(block).all():
            raise InputImageError(
                f"{name}: the {image.dtype} image contains NaN or infinite values; "
                "float images must hold finite values in [0, 1]"
            )
        lo, hi = float(block.min()), float(block.max())
        if lo < 0.0 or hi > 1.0:
            raise InputImageError(
                f"{name}: float values must lie in [0, 1], found {lo:g}..{hi:g} "
                f"(dtype {image.dtype}); divide by 255 or 65535 if these are integer levels"
            )


def as_tensor(array: np.ndarray, dtype: type | None = None) -> torch.Tensor:
    """A CPU tensor sharing ``array``'s memory where possible (contiguous, same dtype), only ever
    read. Read-only arrays (e.g. ``np.asarray(PIL_image)``) are accepted without torch's warning
    about non-writable memory: chromatize never writes through these tensors."""
    contiguous = np.ascontiguousarray(array, dtype=dtype)
    if contiguous.flags.writeable:
        return torch.from_numpy(contiguous)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(contiguous)


def _channel_view(image: np.ndarray) -> np.ndarray:
    return image[:, :, None] if image.ndim == 2 else image


@lru_cache(maxsize=4)
def _linear_lut(dtype_name: str) -> np.ndarray:
    """Linear-light value of every integer level (uint8: 256, uint16: 65536 entries)."""
    levels = torch.arange(int(_max_value(np.dtype(dtype_name))) + 1, dtype=torch.float64)
    return color.srgb_to_linear((levels / levels[-1]).float()).numpy()


def _to_linear(values: np.ndarray) -> torch.Tensor:
    """sRGB-encoded values of any accepted dtype -> linear float32 tensor (same shape)."""
    if values.dtype.kind == "u":
        return torch.from_numpy(_linear_lut(values.dtype.name)[values])
    return color.srgb_to_linear(as_tensor(values, np.float32))


def lightness(image: np.ndarray, layout: ImageLayout, rows: slice | None = None) -> torch.Tensor:
    """L (float32, [0, 100]) of ``image[rows]`` as an (h, W) CPU tensor.

    Integer gray input is one lookup in a table of L per level; integer colour input goes
    through tables of each channel's share of the luminance Y (no a, b are computed).
    """
    block = _channel_view(image)[rows if rows is not None else slice(None)]
    if layout.is_gray and layout.dtype.kind == "u":  # L itself is a table of the gray level
        return torch.from_numpy(_lightness_lut(layout.dtype.name)[block[:, :, 0]])
    if layout.is_gray:
        y = _to_linear(block[:, :, 0])
    elif layout.dtype.kind == "u":  # Y = sum of per-channel tables with the weights folded in
        tables = _luminance_luts(layout.dtype.name)
        y_np = np.take(tables[0], block[:, :, 0])
        y_np += np.take(tables[1], block[:, :, 1])
        y_np += np.take(tables[2], block[:, :, 2])
        y = torch.from_numpy(y_np)
    else:
        m = color.XYZ_FROM_RGB[1]
        y = m[0] * _to_linear(block[:, :, 0])
        y += m[1] * _to_linear(block[:, :, 1])
        y += m[2] * _to_linear(block[:, :, 2])
    return color.luminance_to_lightness(y)


@lru_cache(maxsize=4)
def _lightness_lut(dtype_name: str) -> np.ndarray:
    """L of every integer gray level (a gray pixel's Y is its linear value)."""
    return color.luminance_to_lightness(torch.from_numpy(_linear_lut(dtype_name))).numpy()


@lru_cache(maxsize=4)
def _luminance_luts(dtype_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each integer level's contribution to Y, for R, G and B."""
    lut = _linear_lut(dtype_name)
    w = color.XYZ_FROM_RGB[1]
    return tuple((lut * np.float32(w[i])).astype(np.float32) for i in range(3))  # type: ignore[return-value]


def color_float(image: np.ndarray, layout: ImageLayout, rows: slice | None = None) -> torch.Tensor:
    """The colour channels of ``image[rows]`` as float32 sRGB in [0, 1], shape (3, h, W).

    Gray input is replicated to three channels.
    """
    block = _channel_view(image)[rows if rows is not None else slice(None)]
    values = as_tensor(block[:, :, : layout.color_channels])
    values = values.float() / layout.max_value if layout.dtype.kind == "u" else values.float()
    values = values.permute(2, 0, 1)
    return values.expand(3, -1, -1) if layout.is_gray else values


def color_values(image: np.ndarray, layout: ImageLayout, rows: slice | None = None) -> np.ndarray:
    """The colour channels of ``image[rows]`` as given (caller's dtype), shape (h, W, 1 or 3).

    Gray is a broadcast view to 3 channels' worth of values when assigned into RGB (1 channel).
    """
    block = _channel_view(image)[rows if rows is not None else slice(None)]
    return block[:, :, : layout.color_channels]


def alpha(image: np.ndarray, layout: ImageLayout, rows: slice | None = None) -> np.ndarray | None:
    """The alpha channel of ``image[rows]`` exactly as given (a view, caller's dtype), or None."""
    if not layout.has_alpha:
        return None
    return _channel_view(image)[rows if rows is not None else slice(None), :, -1]


def allocate_output(layout: ImageLayout) -> np.ndarray:
    """An uninitialised (H, W, 3 or 4) array of the caller's dtype for the colorized result."""
    return np.empty((layout.height, layout.width, layout.out_channels), dtype=layout.dtype)


def from_float_rgb(rgb: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """Float sRGB (3, h, w) in [0, 1] -> (h, w, 3) array of ``dtype`` (integers rounded)."""
    rgb = rgb.detach().to("cpu", torch.float32)
    hwc = rgb.permute(1, 2, 0)
    if np.dtype(dtype).kind == "u":
        scale = _max_value(np.dtype(dtype))
        levels = hwc.mul(scale).round_().clamp_(0.0, scale)
        torch_dtype = torch.uint8 if np.dtype(dtype) == np.uint8 else torch.int32
        out = levels.to(torch_dtype).numpy()
        return out if out.dtype == dtype else out.astype(dtype)
    return hwc.clamp(0.0, 1.0).numpy().astype(dtype, copy=False)


def from_linear_rgb(linear: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """Linear sRGB (3, h, w) in [0, 1] -> (h, w, 3) sRGB-encoded array of ``dtype``.

    8-bit output goes through :func:`chromatize.color.linear_to_srgb_uint8` (a table lookup);
    other dtypes apply the transfer curve in float32."""
    if np.dtype(dtype) == np.uint8:
        codes = color.linear_to_srgb_uint8(linear.detach()).to("cpu")
        return codes.permute(1, 2, 0).numpy()
    return from_float_rgb(color.linear_to_srgb(linear.clamp(0.0, 1.0)), dtype)


def write_linear_rgb(
    out: np.ndarray,
    rows: slice,
    linear: torch.Tensor,
    alpha_rows: np.ndarray | None,
) -> None:
    """Store a linear sRGB strip (3, h, W) and its untouched alpha into ``out[rows]``."""
    if out.dtype == np.uint8:
        codes = color.linear_to_srgb_uint8(linear.detach()).to("cpu").numpy()
        block = out[rows]
        for c in range(3):  # channel by channel: much faster than one interleaving copy
            block[:, :, c] = codes[c]
    else:
        out[rows, :, :3] = from_linear_rgb(linear, out.dtype)
    if alpha_rows is not None:
        out[rows, :, 3] = alpha_rows
