"""The compiled loop of :mod:`chromatize.finish_kernel` (numba; imported only when used).

Every constant arrives as an argument (``matrix``, ``scalars``): numba's on-disk cache is keyed
on this file, so nothing from another module may be compiled in.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_jit = numba.njit(nogil=True, cache=True)


@_jit
def _f_inv(f, delta, slope, offset):
    return f * f * f if f > delta else (f - offset) / slope


@_jit
def _linear_rgb(fy, y, a, b, matrix, delta, slope, offset, tolerance):
    """Linear sRGB (r, g, b) of (f(Y), a, b), and whether it lies inside the gamut."""
    x = _f_inv(fy + a * (1.0 / 500.0), delta, slope, offset)
    z = _f_inv(fy - b * (1.0 / 200.0), delta, slope, offset)
    r = matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2] * z
    g = matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2] * z
    bl = matrix[2, 0] * x + matrix[2, 1] * y + matrix[2, 2] * z
    inside = min(r, g, bl) >= -tolerance and max(r, g, bl) <= 1.0 + tolerance
    return r, g, bl, inside


@_jit
def _table_scale(lightness, a, b, table, l_steps, hue_steps, safety):
    """min(1, C_max(L, hue) / C) from the bilinearly interpolated max-chroma table, as
    ``chromatize.color._table_scale`` computes it."""
    chroma = math.hypot(a, b)
    li = math.acos(min(1.0, max(-1.0, 1.0 - lightness / 50.0))) * (l_steps / math.pi)
    hue = math.atan2(b, a)
    if hue < 0.0:
        hue += 2.0 * math.pi
    hi = hue * (hue_steps / (2.0 * math.pi))
    l0 = min(max(math.floor(li), 0.0), l_steps - 1.0)
    h0 = min(max(math.floor(hi), 0.0), hue_steps - 1.0)
    wl = min(max(li - l0, 0.0), 1.0)
    wh = min(max(hi - h0, 0.0), 1.0)
    r, k = int(l0), int(h0)
    top = table[r, k] + wh * (table[r, k + 1] - table[r, k])
    bottom = table[r + 1, k] + wh * (table[r + 1, k + 1] - table[r + 1, k])
    cmax = top + wl * (bottom - top)
    return min(cmax * safety / max(chroma, 1e-12), 1.0)


@_jit
def _vertical(grid, ya, yb, wy, row):
    """Rows ya and yb of every channel of ``grid`` (C, h, w) mixed with weight wy."""
    for c in range(grid.shape[0]):
        for k in range(grid.shape[2]):
            row[c, k] = grid[c, ya, k] + wy * (grid[c, yb, k] - grid[c, ya, k])


@_jit
def _horizontal(row, c, xa, xb, wx):
    return row[c, xa] + wx * (row[c, xb] - row[c, xa])


@_jit
def _code(v, codes, table_size):
    """8-bit sRGB of linear ``v`` through the sqrt-indexed table."""
    v = min(max(v, 0.0), 1.0)
    return codes[int(math.sqrt(v) * (table_size - 1) + 0.5)]


@_jit
def _chroma_scale(lum, fy, y, a, b, table, matrix, scalars):
    """The factor that brings an out-of-gamut (L, a, b) inside: the table's, verified, else
    bisected between 0 and it."""
    delta, slope, offset = scalars[0], scalars[1], scalars[2]
    tolerance, bisections = scalars[7], int(scalars[8])
    scale = _table_scale(lum, a, b, table, scalars[3], scalars[4], scalars[5])
    if _linear_rgb(fy, y, a * scale, b * scale, matrix, delta, slope, offset, tolerance)[3]:
        return scale
    lo, hi = 0.0, scale
    for _ in range(bisections):
        mid = (lo + hi) * 0.5
        if _linear_rgb(fy, y, a * mid, b * mid, matrix, delta, slope, offset, tolerance)[3]:
            lo = mid
        else:
            hi = mid
    return lo


@_jit
def rows_uint8(lightness, coeff_a, coeff_b, use_a, first_row, y0, y1, wy, x0, x1, wx,
               table, codes, matrix, scalars, out):
    """out[first_row + i, :, :3] = 8-bit sRGB for every row i of ``lightness`` (rows, W):
    ab = bilinear(coeff_b) (+ bilinear(coeff_a) * L when ``use_a``: the guided filter's
    A and B), joined with L, gamut-mapped by chroma at constant L and hue."""
    delta, slope, offset, tolerance = scalars[0], scalars[1], scalars[2], scalars[7]
    table_size = scalars[6]
    height, width = lightness.shape
    row_b = np.empty((2, coeff_b.shape[2]))
    row_a = np.empty((2, coeff_a.shape[2]))
    for i in range(height):
        r = first_row + i
        _vertical(coeff_b, y0[r], y1[r], wy[r], row_b)
        if use_a:
            _vertical(coeff_a, y0[r], y1[r], wy[r], row_a)
        for j in range(width):
            xa, xb, wx_j = x0[j], x1[j], wx[j]
            own = np.float64(lightness[i, j])
            a = _horizontal(row_b, 0, xa, xb, wx_j)
            b = _horizontal(row_b, 1, xa, xb, wx_j)
            if use_a:
                a += _horizontal(row_a, 0, xa, xb, wx_j) * own
                b += _horizontal(row_a, 1, xa, xb, wx_j) * own
            lum = min(max(own, 0.0), 100.0)
            fy = (lum + 16.0) / 116.0
            y = _f_inv(fy, delta, slope, offset)
            red, green, blue, inside = _linear_rgb(fy, y, a, b, matrix, delta, slope, offset,
                                                   tolerance)
            if not inside:
                scale = _chroma_scale(lum, fy, y, a, b, table, matrix, scalars)
                red, green, blue, inside = _linear_rgb(fy, y, a * scale, b * scale, matrix,
                                                       delta, slope, offset, tolerance)
            out[r, j, 0] = _code(red, codes, table_size)
            out[r, j, 1] = _code(green, codes, table_size)
            out[r, j, 2] = _code(blue, codes, table_size)


def warm_up() -> None:
    """Compile (or load from numba's cache) :func:`rows_uint8` for the types it is called with."""
    grid = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), np.zeros(1)
    out = np.zeros((1, 1, 3), dtype=np.uint8)
    coeff = np.zeros((2, 1, 1), dtype=np.float32)
    scalars = np.array([6 / 29, 1.0, 4 / 29, 1, 1, 1.0, 2, 1e-6, 1.0])
    rows_uint8(np.zeros((1, 1), dtype=np.float32), coeff, coeff, True, 0, *grid, *grid,
               np.ones((2, 2)), np.zeros(2, dtype=np.uint8), np.eye(3), scalars, out)
