"""The compiled finish (chromatize.finish_kernel) against the torch path it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chromatize import finish_kernel
from chromatize.hints import Hints
from chromatize.pipeline import Colorizer

pytestmark = pytest.mark.skipif(not finish_kernel.available(),
                                reason="numba is not installed (the 'fast' extra)")


class _Vivid(torch.nn.Module):
    """Logits that favour vivid, partly out-of-gamut bins that change across the image."""

    stride, logit_scale, default_input_size, default_temperature = 4, 1.0, 64, 0.38
    accepts_hints = False

    def forward(self, lightness: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:
        n, _, h, w = lightness.shape
        small = torch.nn.functional.avg_pool2d(lightness, 4)
        phase = torch.linspace(0, 6.0, 313)[None, :, None, None]
        return 4.0 * torch.sin(phase * (1 + small / 25.0))


def _image(mode: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gray = np.kron(rng.integers(0, 256, (12, 18)), np.ones((25, 25))).astype(np.uint8)
    gray[::7] = 255 - gray[::7]  # sharp edges for the guided filter
    if mode == "L":
        return gray
    rgb = np.stack([gray, np.roll(gray, 3, 1), np.roll(gray, 5, 0)], axis=2)
    if mode == "RGBA":
        return np.dstack([rgb, rng.integers(0, 256, gray.shape, dtype=np.uint8)])
    return rgb


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("upsample", ["guided", "bilinear"])
@pytest.mark.parametrize("saturation", [1.0, 2.5])
def test_compiled_finish_matches_the_torch_path(mode: str, upsample: str, saturation: float):
    colorizer = Colorizer(_Vivid(), device="cpu", engine="torch")
    image = _image(mode)
    colorizer.fast_finish = False
    expected = colorizer.colorize(image, upsample=upsample, saturation=saturation)
    colorizer.fast_finish = True
    got = colorizer.colorize(image, upsample=upsample, saturation=saturation)
    assert got.shape == expected.shape and got.dtype == np.uint8
    difference = np.abs(got.astype(int) - expected.astype(int))
    assert difference.max() <= 1
    assert (difference > 0).mean() < 0.002  # rounding-boundary flips only
    if mode == "RGBA":
        assert np.array_equal(got[..., 3], image[..., 3])
    assert np.ptp(expected[..., :3].astype(int) - expected[..., :1]) > 40  # really coloured


def _as_dtype(image: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "uint16":
        return image.astype(np.uint16) * 257
    return (image / 255.0).astype(dtype)


@pytest.mark.parametrize("dtype", ["uint16", "float32", "float64"])
@pytest.mark.parametrize("mode", ["L", "RGBA"])
@pytest.mark.parametrize("upsample", ["guided", "bilinear"])
def test_compiled_finish_of_16_bit_and_float_images_matches_the_torch_path(
        dtype: str, mode: str, upsample: str) -> None:
    """16-bit and float output (archival scans, napari, GIMP's high bit depths) take the compiled
    path too: within one 16-bit level of the torch path (float: within 1e-4; the torch path
    computes in float32, the kernel in float64), alpha as given."""
    colorizer = Colorizer(_Vivid(), device="cpu", engine="torch")
    image = _as_dtype(_image(mode), dtype)
    colorizer.fast_finish = False
    expected = colorizer.colorize(image, upsample=upsample, saturation=2.5)
    colorizer.fast_finish = True
    got = colorizer.colorize(image, upsample=upsample, saturation=2.5)
    assert got.shape == expected.shape and got.dtype == np.dtype(dtype)
    difference = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    if dtype == "uint16":
        assert difference.max() <= 1
        assert (difference > 0).mean() < 0.02  # rounding-boundary flips only
    else:
        assert difference.max() < 1e-4
        assert got.min() >= 0.0 and got.max() <= 1.0
    if mode == "RGBA":
        assert np.array_equal(got[..., 3], image[..., 3])
    top = 65535 if dtype == "uint16" else 1.0
    assert np.ptp(expected[..., :3] / top - expected[..., :1] / top) > 0.15  # really coloured


def test_pinned_hint_pixels_of_a_16_bit_image_are_exact_on_the_compiled_path():
    colorizer = Colorizer("mobile", device="cpu", engine="torch")
    image = _as_dtype(_image("L", seed=3), "uint16")
    hints = Hints.from_points([(60, 40, "#2e8b57"), (300, 200, "#c03020")], size=5)
    colorizer.fast_finish = False
    expected = colorizer.colorize(image, hints=hints)
    colorizer.fast_finish = True
    got = colorizer.colorize(image, hints=hints)
    assert got.dtype == np.uint16
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert np.array_equal(got[38:43, 58:63], expected[38:43, 58:63])
    assert np.array_equal(got[198:203, 298:303], expected[198:203, 298:303])


@pytest.mark.parametrize("ab_shape, full_shape", [((48, 72), (800, 1200)), ((3, 5), (12, 20)),
                                                   ((16, 2), (64, 9))])
def test_compiled_guided_fit_equals_the_torch_fit(ab_shape, full_shape) -> None:
    """The guided filter's coefficients, compiled, against ABUpsampler._fit: float32 rounding
    apart the same, also where the window is wider than the image (truncated borders)."""
    from chromatize.upsample import GUIDED_EPS, ABUpsampler, guide_key, guide_statistics

    generator = torch.Generator().manual_seed(1)
    ab = torch.randn(2, *ab_shape, generator=generator) * 40
    lightness = torch.rand(full_shape, generator=generator) * 100
    guide = guide_statistics(lightness, guide_key(ab_shape, full_shape))
    expected = ABUpsampler._fit(ab, guide, GUIDED_EPS)
    got = finish_kernel.guided_fit(ab, guide, GUIDED_EPS)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_pinned_hint_pixels_are_exact_on_the_compiled_path():
    colorizer = Colorizer("mobile", device="cpu", engine="torch")
    image = _image("L", seed=3)
    hints = Hints.from_points([(60, 40, "#2e8b57"), (300, 200, "#c03020")], size=5)
    colorizer.fast_finish = False
    expected = colorizer.colorize(image, hints=hints)
    colorizer.fast_finish = True
    got = colorizer.colorize(image, hints=hints)
    difference = np.abs(got.astype(int) - expected.astype(int))
    assert difference.max() <= 1
    assert np.array_equal(got[38:43, 58:63], expected[38:43, 58:63])


def test_a_cpu_colorizer_loads_the_kernel_in_the_background() -> None:
    """Making a CPU Colorizer starts loading the kernel in a thread of its own, so that the
    first finish need not wait for numba; nothing but that thread fills the build cache here."""
    import time

    finish_kernel._build_once.cache_clear()
    colorizer = Colorizer(_Vivid(), device="cpu")
    deadline = time.monotonic() + 120
    while finish_kernel._build_once.cache_info().currsize == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert finish_kernel._build_once.cache_info().currsize == 1
    image = _image("L")
    out = colorizer.colorize(image)
    colorizer.fast_finish = False
    assert np.abs(out.astype(int) - colorizer.colorize(image)).max() <= 1


def test_a_variant_that_cannot_compile_falls_back_to_torch(monkeypatch, caplog) -> None:
    """If numba cannot build the 16-bit variant (a broken llvmlite, say), 16-bit images are
    finished by torch, with a warning, instead of failing; 8-bit keeps the compiled path."""
    from chromatize import finish_numba

    def broken(dtype: np.dtype) -> None:
        raise RuntimeError("LLVM ERROR: simulated")

    monkeypatch.setattr(finish_numba, "warm_up_transfer", broken)
    finish_kernel._transfer_ready.cache_clear()
    try:
        colorizer = Colorizer(_Vivid(), device="cpu", engine="torch")
        image = _as_dtype(_image("L"), "uint16")
        with caplog.at_level("WARNING", logger="chromatize.finish_kernel"):
            got = colorizer.colorize(image)
        assert "for uint16 output (LLVM ERROR: simulated); using torch" in caplog.text
        colorizer.fast_finish = False
        assert np.array_equal(got, colorizer.colorize(image))  # the torch path itself
        assert finish_kernel.available(np.uint8)
    finally:
        finish_kernel._transfer_ready.cache_clear()
