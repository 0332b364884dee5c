"""Normalising user arrays to L + alpha and giving results back in the caller's dtype/layout."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import torch

from chromatize import imagearray
from chromatize.errors import InputImageError

skcolor = pytest.importorskip("skimage.color")

DTYPES = [np.uint8, np.uint16, np.float32, np.float64]
LAYOUTS = {  # name -> (shape suffix, channels)
    "gray2d": ((), 1),
    "gray": ((1,), 1),
    "gray_alpha": ((2,), 2),
    "rgb": ((3,), 3),
    "rgba": ((4,), 4),
}

class _Normalized(NamedTuple):
    lightness: torch.Tensor
    alpha: np.ndarray | None
    layout: imagearray.ImageLayout


def _normalize(image: np.ndarray) -> _Normalized:
    """L and untouched alpha of a user image, as the pipeline's first stage reads them."""
    layout = imagearray.inspect_image(image)
    return _Normalized(imagearray.lightness(image, layout), imagearray.alpha(image, layout),
                       layout)



def _image(layout: str, dtype, h: int = 9, w: int = 7, seed: int = 0) -> np.ndarray:
    suffix, _ = LAYOUTS[layout]
    rng = np.random.default_rng(seed)
    values = rng.random((h, w, *suffix))
    if np.dtype(dtype).kind == "u":
        return np.round(values * np.iinfo(dtype).max).astype(dtype)
    return values.astype(dtype)


def _as_unit_float(image: np.ndarray) -> np.ndarray:
    if image.dtype.kind == "u":
        return image.astype(np.float64) / np.iinfo(image.dtype).max
    return image.astype(np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_are_recognised_and_lightness_matches_scikit_image(layout, dtype):
    image = _image(layout, dtype)
    info = imagearray.inspect_image(image)
    _, channels = LAYOUTS[layout]
    assert (info.height, info.width, info.channels) == (9, 7, channels)
    assert info.dtype == np.dtype(dtype) and info.squeezed == (layout == "gray2d")
    assert info.out_channels == (4 if channels in (2, 4) else 3)

    norm = _normalize(image)
    unit = _as_unit_float(image)
    unit = unit[:, :, None] if unit.ndim == 2 else unit
    rgb = unit[:, :, :1].repeat(3, axis=2) if channels in (1, 2) else unit[:, :, :3]
    expected = skcolor.rgb2lab(rgb)[:, :, 0]
    assert norm.lightness.dtype == torch.float32 and norm.lightness.shape == (9, 7)
    assert np.abs(norm.lightness.numpy() - expected).max() < 0.01
    if channels in (2, 4):
        assert norm.alpha is not None and norm.alpha.dtype == np.dtype(dtype)
        assert np.array_equal(norm.alpha, image[:, :, -1])
    else:
        assert norm.alpha is None


def test_lightness_of_row_strips_equals_whole_image():
    image = _image("rgb", np.uint16, h=40, w=5)
    info = imagearray.inspect_image(image)
    whole = imagearray.lightness(image, info)
    strips = torch.cat(
        [imagearray.lightness(image, info, slice(y, y + 7)) for y in range(0, 40, 7)]
    )
    # same values up to float rounding of vectorised vs. tail loops
    assert torch.allclose(whole, strips, rtol=0, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_integer_gray_lightness_table_equals_the_float_computation(dtype):
    levels = np.iinfo(dtype).max
    image = np.arange(levels + 1, dtype=np.int64)[:: max(1, (levels + 1) // 4096)]
    image = image.astype(dtype).reshape(1, -1)  # every 8-bit level; every 16th 16-bit level
    by_table = imagearray.lightness(image, imagearray.inspect_image(image))
    as_float = (image / levels).astype(np.float32)
    computed = imagearray.lightness(as_float, imagearray.inspect_image(as_float))
    assert by_table.dtype == torch.float32 and by_table.shape == image.shape
    assert torch.allclose(by_table, computed, rtol=0, atol=1e-4)
    assert by_table[0, 0] == 0.0 and by_table[0, -1] > 99.9


def test_non_contiguous_views_are_accepted():
    image = _image("rgba", np.uint8, h=20, w=20)[::2, ::-1]
    norm = _normalize(image)
    expected = _normalize(np.ascontiguousarray(image))
    assert torch.equal(norm.lightness, expected.lightness)


@pytest.mark.parametrize(
    ("bad", "expect"),
    [
        (np.zeros((4, 4), dtype=np.int32), r"dtype int32 is not supported.*uint8, uint16"),
        (np.zeros((4, 4), dtype=np.float16), r"dtype float16 is not supported"),
        (np.zeros((4, 4), dtype=bool), r"dtype bool is not supported"),
        (np.zeros((4, 4, 5), dtype=np.uint8), r"shape \(4, 4, 5\) is not an image.*RGBA"),
        (np.zeros((2, 4, 4, 3), dtype=np.uint8), r"shape \(2, 4, 4, 3\)"),
        (np.zeros((16,), dtype=np.uint8), r"shape \(16,\)"),
        (np.zeros((0, 4, 3), dtype=np.uint8), r"empty"),
        (np.full((4, 4), np.nan, dtype=np.float32), r"NaN or infinite"),
        (np.full((4, 4, 3), np.inf, dtype=np.float64), r"NaN or infinite"),
        (np.full((4, 4), 255.0, dtype=np.float32), r"\[0, 1\], found 255\.\.255.*divide by 255"),
        (np.full((4, 4), -0.5, dtype=np.float64), r"found -0\.5"),
        ([[0, 1], [1, 0]], r"object of type list.*accepted are numpy arrays"),
    ],
)
def test_invalid_input_is_refused_with_a_clear_message(bad, expect):
    with pytest.raises(InputImageError, match=expect):
        imagearray.inspect_image(bad)


def test_out_of_range_value_far_down_a_big_image_is_found():
    image = np.zeros((3000, 2000), dtype=np.float32)  # more than one scan block
    image[-1, -1] = 1.5
    with pytest.raises(InputImageError, match=r"found 0\.\.1\.5"):
        imagearray.inspect_image(image)


@pytest.mark.parametrize("dtype", DTYPES)
def test_float_rgb_back_to_caller_dtype(dtype):
    levels = 255 if dtype == np.uint8 else 65535
    ramp = torch.linspace(0, 1, 64)
    rgb = torch.stack((ramp, ramp.flip(0), ramp * 0 + 0.5))[:, None, :].expand(3, 2, 64)
    out = imagearray.from_float_rgb(rgb, np.dtype(dtype))
    assert out.shape == (2, 64, 3) and out.dtype == np.dtype(dtype)
    if np.dtype(dtype).kind == "u":
        expected = np.round(rgb.permute(1, 2, 0).double().numpy() * levels)
        assert np.abs(out.astype(np.float64) - expected).max() <= 0.5 + 1e-6
        exact = torch.arange(levels + 1, dtype=torch.float64) / levels  # every level exactly
        back = imagearray.from_float_rgb(
            exact.float()[None, None].expand(3, 1, -1), np.dtype(dtype)
        )
        assert np.array_equal(back[0, :, 0], np.arange(levels + 1))
    else:
        assert np.allclose(out, rgb.permute(1, 2, 0).numpy())
    # out-of-range floats are clipped into the caller's range
    wild = imagearray.from_float_rgb(
        torch.tensor([-0.2, 0.5, 1.3]).reshape(3, 1, 1), np.dtype(dtype)
    )
    assert wild.min() >= 0 and float(wild.max()) <= (1.0 if np.dtype(dtype).kind == "f" else levels)


def test_written_output_adds_untouched_alpha():
    image = _image("gray_alpha", np.uint16)
    norm = _normalize(image)
    out = imagearray.allocate_output(norm.layout)
    linear = torch.full((3, 9, 7), 0.25)
    imagearray.write_linear_rgb(out, slice(None), linear, norm.alpha)
    assert out.shape == (9, 7, 4) and out.dtype == np.uint16
    assert np.array_equal(out[:, :, 3], image[:, :, 1])
    srgb = 1.055 * 0.25 ** (1 / 2.4) - 0.055
    assert (np.abs(out[:, :, :3].astype(int) - round(srgb * 65535)) <= 1).all()


def test_read_only_arrays_work_without_warnings():
    import warnings

    for dtype in DTYPES:
        image = _image("rgba", dtype)
        image.flags.writeable = False  # like np.asarray(PIL image)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            norm = _normalize(image)
            rgb = imagearray.color_float(image, norm.layout)
        assert rgb.shape == (3, 9, 7) and norm.lightness.shape == (9, 7)
