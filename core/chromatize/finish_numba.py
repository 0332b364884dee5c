"""The compiled loop of :mod:`chromatize.finish_kernel` (numba; imported only when used).

Every constant arrives as an argument (``matrix``, ``scalars``): numba's on-disk cache is keyed
on this file, so nothing from another module may be compiled in.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# fastmath: the inputs are finite by construction (L clamped, ab from the model), and it lets the
# row passes vectorize; error_model "numpy": no Python-style checks in the arithmetic.
_jit = numba.njit(nogil=True, cache=True, fastmath=True, error_model="numpy")


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
def _upsampled_row(lightness_row, row_a, row_b, x0, x1, wx, lum, a, b):
    """L, a and b of one output row: the guided filter's A * L + B, bilinear in x."""
    for j in range(lightness_row.shape[0]):
        xa, xb, w = x0[j], x1[j], wx[j]
        own = np.float64(lightness_row[j])
        lum[j] = own
        a[j] = _horizontal(row_b, 0, xa, xb, w) + _horizontal(row_a, 0, xa, xb, w) * own
        b[j] = _horizontal(row_b, 1, xa, xb, w) + _horizontal(row_a, 1, xa, xb, w) * own


@_jit
def _linear_row(lum, a, b, matrix, scalars, rgb):
    """Linear sRGB of one row of (L, a, b) into ``rgb`` (3, W), and how many lie outside the
    gamut. Branch-free, so that the compiler vectorizes it."""
    delta, slope, offset, tolerance = scalars[0], scalars[1], scalars[2], scalars[7]
    outside = 0
    for j in range(lum.shape[0]):
        fy = (min(max(lum[j], 0.0), 100.0) + 16.0) / 116.0
        fx = fy + a[j] * (1.0 / 500.0)
        fz = fy - b[j] * (1.0 / 200.0)
        x = _f_inv(fx, delta, slope, offset)
        y = _f_inv(fy, delta, slope, offset)
        z = _f_inv(fz, delta, slope, offset)
        red = matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2] * z
        green = matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2] * z
        blue = matrix[2, 0] * x + matrix[2, 1] * y + matrix[2, 2] * z
        rgb[0, j], rgb[1, j], rgb[2, j] = red, green, blue
        low, high = min(red, min(green, blue)), max(red, max(green, blue))
        outside += (low < -tolerance) | (high > 1.0 + tolerance)
    return outside


@_jit
def _map_outside_row(lum, a, b, table, matrix, scalars, rgb):
    """Bring the row's out-of-gamut pixels inside by chroma at constant L and hue."""
    delta, slope, offset, tolerance = scalars[0], scalars[1], scalars[2], scalars[7]
    for j in range(lum.shape[0]):
        red, green, blue = rgb[0, j], rgb[1, j], rgb[2, j]
        if min(red, green, blue) >= -tolerance and max(red, green, blue) <= 1.0 + tolerance:
            continue
        clamped = min(max(lum[j], 0.0), 100.0)
        fy = (clamped + 16.0) / 116.0
        y = _f_inv(fy, delta, slope, offset)
        scale = _chroma_scale(clamped, fy, y, a[j], b[j], table, matrix, scalars)
        red, green, blue, _ = _linear_rgb(fy, y, a[j] * scale, b[j] * scale, matrix,
                                          delta, slope, offset, tolerance)
        rgb[0, j], rgb[1, j], rgb[2, j] = red, green, blue


@_jit
def _encode_row(rgb, codes, table_size, index, out_row):
    """8-bit sRGB of linear ``rgb`` (3, W) into ``out_row`` (W, C) through the sqrt-indexed
    table: the index first (vectorized), then the look-up."""
    top = table_size - 1.0
    for c in range(3):
        for j in range(index.shape[0]):
            index[j] = int(math.sqrt(min(max(rgb[c, j], 0.0), 1.0)) * top + 0.5)
        for j in range(index.shape[0]):
            out_row[j, c] = codes[index[j]]


@_jit
def _transfer_row(rgb, transfer, steps, scale, out_row):
    """sRGB-encoded linear ``rgb`` (3, W) into ``out_row`` (W, C): integer levels rounded at
    ``scale`` (65535 for 16-bit), or with ``scale`` 0 floats in [0, 1]. The transfer curve comes
    from ``transfer``, the curve at (k / steps)^2 for k = 0..steps+1, interpolated linearly in
    sqrt(x) (error below 1e-9 at steps = 65536: see finish_kernel._transfer_table). ``rgb``
    is overwritten (it holds the encoded values afterwards)."""
    width = out_row.shape[0]
    for c in range(3):
        for j in range(width):
            t = math.sqrt(min(max(rgb[c, j], 0.0), 1.0)) * steps
            k = int(t)
            v = transfer[k] + (t - k) * (transfer[k + 1] - transfer[k])
            rgb[c, j] = min(max(v, 0.0), 1.0)
        if scale > 0.0:
            for j in range(width):
                out_row[j, c] = math.floor(rgb[c, j] * scale + 0.5)
        else:
            for j in range(width):
                out_row[j, c] = rgb[c, j]


@_jit
def _linear_rgb_row(lightness_row, r, coeff_a, coeff_b, use_a, y0, y1, wy, x0, x1, wx, table,
                    matrix, scalars, row_a, row_b, lum, a, b, rgb):
    """Linear sRGB of output row ``r`` into ``rgb`` (3, W): ab = bilinear(coeff_b)
    (+ bilinear(coeff_a) * L when ``use_a``: the guided filter's A and B), joined with L,
    gamut-mapped by chroma at constant L and hue."""
    _vertical(coeff_b, y0[r], y1[r], wy[r], row_b)
    if use_a:
        _vertical(coeff_a, y0[r], y1[r], wy[r], row_a)
    _upsampled_row(lightness_row, row_a, row_b, x0, x1, wx, lum, a, b)
    if _linear_row(lum, a, b, matrix, scalars, rgb):
        _map_outside_row(lum, a, b, table, matrix, scalars, rgb)


@_jit
def rows_uint8(lightness, coeff_a, coeff_b, use_a, first_row, y0, y1, wy, x0, x1, wx,
               table, codes, matrix, scalars, out):
    """out[first_row + i, :, :3] = 8-bit sRGB for every row i of ``lightness`` (rows, W)
    (:func:`_linear_rgb_row`, then the sqrt-indexed 8-bit table). Row by row, in passes over
    row buffers, so that the arithmetic vectorizes."""
    height, width = lightness.shape
    row_b = np.empty((2, coeff_b.shape[2]))
    row_a = np.zeros((2, coeff_b.shape[2]))  # stays zero without A (not guided)
    lum, a, b = np.empty(width), np.empty(width), np.empty(width)
    rgb = np.empty((3, width))
    index = np.empty(width, dtype=np.int64)
    for i in range(height):
        r = first_row + i
        _linear_rgb_row(lightness[i], r, coeff_a, coeff_b, use_a, y0, y1, wy, x0, x1, wx,
                        table, matrix, scalars, row_a, row_b, lum, a, b, rgb)
        _encode_row(rgb, codes, scalars[6], index, out[r])


@_jit
def rows_transfer(lightness, coeff_a, coeff_b, use_a, first_row, y0, y1, wy, x0, x1, wx,
                  table, transfer, steps, scale, matrix, scalars, out):
    """As :func:`rows_uint8` for 16-bit (``scale`` 65535) and float (``scale`` 0) output:
    the sRGB curve from the ``transfer`` table (:func:`_transfer_row`)."""
    height, width = lightness.shape
    row_b = np.empty((2, coeff_b.shape[2]))
    row_a = np.zeros((2, coeff_b.shape[2]))
    lum, a, b = np.empty(width), np.empty(width), np.empty(width)
    rgb = np.empty((3, width))
    for i in range(height):
        r = first_row + i
        _linear_rgb_row(lightness[i], r, coeff_a, coeff_b, use_a, y0, y1, wy, x0, x1, wx,
                        table, matrix, scalars, row_a, row_b, lum, a, b, rgb)
        _transfer_row(rgb, transfer, steps, scale, out[r])


@_jit
def _box_mean(x, radius, out):
    """Mean of ``x`` (C, h, w) over (2r+1)^2 windows truncated at the borders, into ``out``
    (float32): sliding sums in float64, a row pass then a column pass, as
    ``chromatize.upsample._box_mean`` computes it."""
    channels, h, w = x.shape
    rows = np.empty((h, w))
    for c in range(channels):
        for i in range(h):
            total = 0.0
            for j in range(min(radius, w - 1) + 1):
                total += x[c, i, j]
            for j in range(w):
                rows[i, j] = total
                if j + radius + 1 < w:
                    total += x[c, i, j + radius + 1]
                if j - radius >= 0:
                    total -= x[c, i, j - radius]
        column = np.zeros(w)
        for i in range(min(radius, h - 1) + 1):
            for j in range(w):
                column[j] += rows[i, j]
        for i in range(h):
            count_i = min(i + radius, h - 1) - max(i - radius, 0) + 1
            for j in range(w):
                count = count_i * (min(j + radius, w - 1) - max(j - radius, 0) + 1)
                out[c, i, j] = column[j] / count
            if i + radius + 1 < h:
                for j in range(w):
                    column[j] += rows[i + radius + 1, j]
            if i - radius >= 0:
                for j in range(w):
                    column[j] -= rows[i - radius, j]


@_jit
def guided_coefficients(p, guide, mean, variance, radius, eps, out):
    """The guided filter's A (/100, channels 0-1) and B (2-3), box-averaged, into ``out``
    (4, mh, mw) float32: ``chromatize.upsample.ABUpsampler._fit`` for ab ``p`` (2, mh, mw)
    resized to the guide's statistics (1, mh, mw), all float32 as there."""
    _, h, w = p.shape
    mean_p = np.empty((2, h, w), dtype=np.float32)
    _box_mean(p, radius, mean_p)
    product = np.empty((2, h, w), dtype=np.float32)
    for c in range(2):
        for i in range(h):
            for j in range(w):
                product[c, i, j] = guide[0, i, j] * p[c, i, j]
    mean_gp = np.empty((2, h, w), dtype=np.float32)
    _box_mean(product, radius, mean_gp)
    coefficients = np.empty((4, h, w), dtype=np.float32)
    for c in range(2):
        for i in range(h):
            for j in range(w):
                g = mean[0, i, j]
                a = np.float32(mean_gp[c, i, j] - g * mean_p[c, i, j]) / np.float32(
                    variance[0, i, j] + eps)
                coefficients[c, i, j] = a
                coefficients[c + 2, i, j] = mean_p[c, i, j] - a * g
    _box_mean(coefficients, radius, out)
    for c in range(2):
        for i in range(h):
            for j in range(w):
                out[c, i, j] = out[c, i, j] / np.float32(100.0)


def _tiny_arguments() -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """A 1x1 image's grid, coefficients and scalars: enough to compile a row kernel."""
    grid = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), np.zeros(1)
    coeff = np.zeros((2, 1, 1), dtype=np.float32)
    scalars = np.array([6 / 29, 1.0, 4 / 29, 1, 1, 1.0, 2, 1e-6, 1.0])
    return grid, coeff, scalars


def warm_up() -> None:
    """Compile (or load from numba's cache) :func:`rows_uint8` and :func:`guided_coefficients`
    for the types they are called with."""
    grid, coeff, scalars = _tiny_arguments()
    rows_uint8(np.zeros((1, 1), dtype=np.float32), coeff, coeff, True, 0, *grid, *grid,
               np.ones((2, 2)), np.zeros(2, dtype=np.uint8), np.eye(3), scalars,
               np.zeros((1, 1, 3), dtype=np.uint8))
    plane = np.zeros((1, 2, 2), dtype=np.float32)
    guided_coefficients(np.zeros((2, 2, 2), dtype=np.float32), plane, plane, plane, 1,
                        np.float32(1e-3), np.zeros((4, 2, 2), dtype=np.float32))


def warm_up_transfer(dtype: np.dtype) -> None:
    """Compile (or load from numba's cache) :func:`rows_transfer` for output of ``dtype``."""
    grid, coeff, scalars = _tiny_arguments()
    rows_transfer(np.zeros((1, 1), dtype=np.float32), coeff, coeff, True, 0, *grid, *grid,
                  np.ones((2, 2)), np.zeros(3), 1.0, 65535.0 if dtype == np.uint16 else 0.0,
                  np.eye(3), scalars, np.zeros((1, 1, 3), dtype=dtype))
