"""The CPU fast path of the finish stage: one compiled pass per pixel (numba).

:meth:`chromatize.pipeline.Colorizer.finish` brings the model's ab to full size
(:class:`chromatize.upsample.ABUpsampler`), joins it with the image's own L, reduces out-of-gamut
chroma at constant L and hue (:func:`chromatize.color.lightness_ab_to_linear_rgb`) and encodes
8-bit sRGB (:func:`chromatize.color.linear_to_srgb_uint8`). Written with torch, that is some 40
full-resolution passes over memory, and at 1-2 MP it costs several times the network itself.
Here the same arithmetic runs once per pixel in a loop that numba compiles (``nogil``, so the
pipeline's strip threads run it in parallel), with the very same tables: the max-chroma table
and its 0.998 safety margin, the bisection where the table overshoots, and the sqrt-indexed
8-bit table; 16-bit and float output get the sRGB curve from a fine table
(:func:`_transfer_table`). It computes in float64 where torch uses float32, so a few pixels in a
thousand land on the other side of a rounding boundary (one level);
``tests/test_finish_kernel.py`` holds it to the torch path.

Used for 8-bit, 16-bit and float output on the CPU when numba is installed (the ``fast``
extra); the torch path serves everything else (CUDA, masks). The 8-bit kernel loads in the
background when a CPU Colorizer is made; the others at their first use.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chromatize import color
from chromatize.upsample import ABUpsampler, GuideStatistics, _source_index, resize_bilinear_rows

log = logging.getLogger(__name__)

_TOLERANCE = 1e-6
_BISECTIONS = 14


_BUILD_LOCK = threading.Lock()


def _compiled() -> Any:
    """The compiled row kernel, or None when numba is missing or fails to compile (built once,
    whichever thread asks first)."""
    with _BUILD_LOCK:
        return _build_once()


@lru_cache(maxsize=1)
def _build_once() -> Any:
    try:
        import numba
    except ImportError:
        return None
    _cache_outside_a_read_only_package(numba)
    try:
        from chromatize import finish_numba  # compiles or loads from numba's cache
        finish_numba.warm_up()
    except Exception as exc:  # noqa: BLE001 - a broken numba/llvmlite must not stop colorizing
        log.warning("numba could not load or compile the fast finish (%s); using torch", exc)
        return None
    return finish_numba.rows_uint8


def _cache_outside_a_read_only_package(numba: Any) -> None:
    """numba caches next to the source (``__pycache__``); where that cannot be written (a
    read-only install, such as the environment GIMP's plug-in reaches in a sandbox), use
    chromatize's own cache folder instead of failing to cache at all."""
    package = Path(__file__).resolve().parent
    pycache = package / "__pycache__"
    if numba.config.CACHE_DIR or os.access(pycache if pycache.exists() else package, os.W_OK):
        return
    from chromatize.weights.finding import cache_dir

    numba.config.CACHE_DIR = str(cache_dir() / "numba")


def build_in_background() -> None:
    """Start loading (or compiling) the kernel in a daemon thread, so that the first finish
    does not wait for it (numba's import and cache load take ~0.5 s)."""
    if _build_once.cache_info().currsize == 0:
        threading.Thread(target=_compiled, name="chromatize-numba", daemon=True).start()


def available(dtype: Any = np.uint8) -> bool:
    """Whether the compiled finish can run here for output of ``dtype`` (one of
    :data:`DTYPES`; the first ask for 16-bit or float compiles or loads its variant)."""
    if _compiled() is None:
        return False
    name = np.dtype(dtype).name
    if name == "uint8":
        return True
    with _BUILD_LOCK:
        return _transfer_ready(name)


@cache
def _transfer_ready(dtype_name: str) -> bool:
    from chromatize import finish_numba

    try:
        finish_numba.warm_up_transfer(np.dtype(dtype_name))
    except Exception as exc:  # noqa: BLE001 - as in _build_once: fall back to torch
        log.warning("numba could not load or compile the fast finish for %s output (%s); "
                    "using torch", dtype_name, exc)
        return False
    return True


def _grid(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear neighbours and weights of every output position, from the torch path's own
    :func:`chromatize.upsample._source_index`, as numpy."""
    i0, i1, w1 = _source_index(out_size, in_size, 0, out_size, torch.device("cpu"))
    return i0.numpy(), i1.numpy(), w1.double().numpy()


class FastFinish:
    """One image's compiled finish: :meth:`rows` writes sRGB of output rows into ``out``
    (H, W, C of one of :data:`DTYPES`; channels 0-2), from an
    :class:`~chromatize.upsample.ABUpsampler` and L."""

    def __init__(self, upsampler: ABUpsampler) -> None:
        kernel = _compiled()
        if kernel is None:
            raise RuntimeError("the compiled finish needs numba (pip install 'chromatize[fast]')")
        self._kernel = kernel
        if upsampler.method == "guided":
            coeff_a, coeff_b = upsampler._a, upsampler._b
        else:
            coeff_b = upsampler.ab_low
            coeff_a = torch.zeros((2, 1, 1))
        self._a = np.ascontiguousarray(coeff_a.detach().cpu().numpy(), dtype=np.float32)
        self._b = np.ascontiguousarray(coeff_b.detach().cpu().numpy(), dtype=np.float32)
        self._use_a = upsampler.method == "guided"
        in_h, in_w = self._b.shape[1:]
        self._grid = (*_grid(upsampler.height, in_h), *_grid(upsampler.width, in_w))
        self._table = color.max_chroma_table("cpu").double().numpy()
        self._codes = _codes()
        self._constants = _constants()

    def rows(self, rows: slice, lightness_rows: torch.Tensor, out: np.ndarray) -> None:
        """Fill ``out[rows, :, :3]`` (uint8, uint16, float32 or float64) from L of those rows
        (h, W)."""
        lightness = np.ascontiguousarray(lightness_rows.detach().cpu().numpy(), dtype=np.float32)
        if out.dtype == np.uint8:
            self._kernel(lightness, self._a, self._b, self._use_a, rows.start, *self._grid,
                         self._table, self._codes, *self._constants, out)
            return
        from chromatize import finish_numba  # loaded with the 8-bit kernel already

        # available(out.dtype) has compiled (or loaded) this variant for out's dtype
        matrix, scalars = self._constants
        scale = 65535.0 if out.dtype == np.uint16 else 0.0
        finish_numba.rows_transfer(lightness, self._a, self._b, self._use_a, rows.start,
                                   *self._grid, self._table, _transfer_table(),
                                   float(TRANSFER_STEPS), scale, matrix, scalars, out)


def guided_fit(ab: torch.Tensor, guide: GuideStatistics, eps: float) -> torch.Tensor:
    """:meth:`chromatize.upsample.ABUpsampler._fit` compiled (its ``fit``): the same float32
    arithmetic and float64 box sums in one loop instead of ~40 small torch ops (~4 ms -> well
    under 1 ms per image at the default render size)."""
    from chromatize import finish_numba

    p = resize_bilinear_rows(ab, *guide.shape)

    def plane(t: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)

    out = np.empty((4, *guide.shape), dtype=np.float32)
    finish_numba.guided_coefficients(plane(p), plane(guide.guide), plane(guide.mean),
                                     plane(guide.variance), int(guide.radius), np.float32(eps),
                                     out)
    return torch.from_numpy(out)


#: Intervals of :func:`_transfer_table` (in sqrt of linear light).
TRANSFER_STEPS = 65536
#: The output dtypes the compiled finish writes.
DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32), np.dtype(np.float64))


@lru_cache(maxsize=1)
def _transfer_table() -> np.ndarray:
    """The sRGB transfer curve of :func:`chromatize.color.linear_to_srgb` at linear light
    (k / TRANSFER_STEPS)^2, k = 0..TRANSFER_STEPS + 1, float64 (512 KB). Sampled in sqrt(x) the
    curve is smooth enough that linear interpolation errs by < 1e-9 everywhere (largest at the
    joint of its linear and power parts): 16-bit levels come out as the formula gives them, and
    float output within float32's own rounding."""
    s = np.arange(TRANSFER_STEPS + 2, dtype=np.float64) / TRANSFER_STEPS
    x = np.minimum(s * s, 1.0)
    curve = np.where(x <= 0.0031308, x * 12.92,
                     1.055 * np.maximum(x, 0.0031308) ** (1.0 / 2.4) - 0.055)
    return np.ascontiguousarray(curve)


@lru_cache(maxsize=1)
def _constants() -> tuple[np.ndarray, np.ndarray]:
    """What :func:`chromatize.finish_numba.rows_uint8` takes from :mod:`chromatize.color`:
    XYZ/white -> linear sRGB, and the Lab and table constants (passed in, not compiled in, so
    that numba's on-disk cache can never hold stale ones)."""
    matrix = np.array(color._RGB_FROM_XYZ_REL, dtype=np.float64)
    scalars = np.array([color._DELTA, color._SLOPE, color._OFFSET, color._LUT_L_STEPS,
                        color._LUT_HUE_STEPS, color._LUT_SAFETY, color._UINT8_TABLE_SIZE,
                        _TOLERANCE, _BISECTIONS], dtype=np.float64)
    return matrix, scalars


@lru_cache(maxsize=1)
def _codes() -> np.ndarray:
    """The 8-bit table of :func:`chromatize.color.linear_to_srgb_uint8`, as numpy."""
    color.linear_to_srgb_uint8(torch.zeros(1))  # builds and caches the table
    return color._UINT8_TABLES["cpu"].numpy()
