"""sRGB <-> CIE L*a*b* (D65, 2° observer) in torch.

Conventions: the channel axis is -3, i.e. tensors are ``(..., 3, H, W)`` (or ``(..., 1, H, W)`` for
lightness alone); sRGB values are float in [0, 1]; L is in [0, 100]; everything is computed in
float32 on whatever device the input lives on, fully vectorised.

The constants follow scikit-image (the sRGB matrix of IEC 61966-2-1 and the CIE L*a*b* definition),
with one deliberate difference: the reference white is the XYZ of sRGB white under that matrix
(its row sums, 0.950456 / 1 / 1.088754) instead of the rounded CIE table value (0.95047 / 1 /
1.08883). That makes the neutral axis exact (a = b = 0 <=> R = G = B), so a saturation of 0 gives a
truly gray image; the difference from scikit-image is below 0.005 ΔE.

Out-of-gamut colours (the model predicts ab freely) are mapped back by reducing chroma at constant
L and hue (:func:`gamut_map_chroma`), never by clipping channels independently, which would change
lightness and hue.
"""

from __future__ import annotations

from typing import Literal

import torch

#: Linear sRGB -> XYZ (D65), as in scikit-image / the sRGB specification.
XYZ_FROM_RGB: tuple[tuple[float, float, float], ...] = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)


def _invert3(m: tuple[tuple[float, float, float], ...]) -> tuple[tuple[float, float, float], ...]:
    inv = torch.linalg.inv(torch.tensor(m, dtype=torch.float64))
    return tuple(tuple(float(v) for v in row) for row in inv)  # type: ignore[return-value]


#: XYZ -> linear sRGB.
RGB_FROM_XYZ = _invert3(XYZ_FROM_RGB)
#: Reference white: XYZ of linear sRGB (1, 1, 1); Y is exactly 1.
WHITE_XYZ: tuple[float, float, float] = tuple(sum(row) for row in XYZ_FROM_RGB)  # type: ignore[assignment]

# CIE L*a*b* constants (exact rational forms of scikit-image's 0.008856 / 7.787 / 0.2068966).
_DELTA = 6.0 / 29.0
_EPSILON = _DELTA**3  # 0.008856...
_SLOPE = 1.0 / (3.0 * _DELTA**2)  # 7.787...
_OFFSET = 4.0 / 29.0  # 16 / 116

GamutMode = Literal["chroma", "clip", "none"]
GAMUT_MODES: tuple[str, ...] = ("chroma", "clip", "none")


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


def _check_channels(x: torch.Tensor, n: int, what: str) -> None:
    if x.ndim < 3 or x.shape[-3] != n:
        raise ValueError(f"expected {what} of shape (..., {n}, H, W), got {tuple(x.shape)}")


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float32 else x.float()


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """Undo the sRGB transfer curve (elementwise, float32)."""
    x = _as_float(x)
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp_min(0.04045) + 0.055) / 1.055).pow(2.4))


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Apply the sRGB transfer curve (elementwise, float32; negative input stays negative)."""
    x = _as_float(x)
    return torch.where(
        x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(0.0031308).pow(1.0 / 2.4) - 0.055
    )


def _f(t: torch.Tensor) -> torch.Tensor:
    """CIE L*a*b* companding of a relative tristimulus value."""
    return torch.where(t > _EPSILON, t.clamp_min(_EPSILON).pow(1.0 / 3.0), t * _SLOPE + _OFFSET)


def _f_inv(f: torch.Tensor) -> torch.Tensor:
    return torch.where(f > _DELTA, f * f * f, (f - _OFFSET) / _SLOPE)


def _f_inv_(f: torch.Tensor) -> torch.Tensor:
    """:func:`_f_inv` reusing ``f``'s memory (``f`` is overwritten)."""
    linear = (f - _OFFSET).mul_(1.0 / _SLOPE)
    above = f > _DELTA
    return torch.where(above, f.pow_(3), linear)


def _mix(
    m: tuple[tuple[float, float, float], ...], c0: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """3x3 matrix times a vector of three same-shaped tensors (no channel copies)."""
    return (
        m[0][0] * c0 + m[0][1] * c1 + m[0][2] * c2,
        m[1][0] * c0 + m[1][1] * c1 + m[1][2] * c2,
        m[2][0] * c0 + m[2][1] * c1 + m[2][2] * c2,
    )


def _split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    c0, c1, c2 = x.unbind(-3)
    return c0, c1, c2


# --------------------------------------------------------------------------------------------
# Lightness only (fast path: needs Y alone)
# --------------------------------------------------------------------------------------------


def luminance_to_lightness(y: torch.Tensor) -> torch.Tensor:
    """Relative luminance Y in [0, 1] -> L in [0, 100] (elementwise)."""
    y = _as_float(y)
    # 116 f(Y) - 16, written with in-place steps (this runs on every pixel of every image)
    cube_root = y.clamp_min(_EPSILON).pow_(1.0 / 3.0).mul_(116.0).sub_(16.0)
    linear = y * (116.0 * _SLOPE)  # 116 * (Y * slope + 4/29) - 16 = 116 * slope * Y
    return torch.where(y > _EPSILON, cube_root, linear)


def lightness_to_luminance(lightness: torch.Tensor) -> torch.Tensor:
    """L in [0, 100] -> relative luminance Y (elementwise)."""
    return _f_inv((_as_float(lightness) + 16.0) / 116.0)


def linear_rgb_to_luminance(linear_rgb: torch.Tensor) -> torch.Tensor:
    """Linear sRGB (..., 3, H, W) -> Y (..., 1, H, W)."""
    _check_channels(linear_rgb, 3, "linear RGB")
    r, g, b = _split(_as_float(linear_rgb))
    m = XYZ_FROM_RGB[1]
    return (m[0] * r + m[1] * g + m[2] * b).unsqueeze(-3)


def rgb_to_lightness(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (..., 3, H, W) in [0, 1] -> L (..., 1, H, W), without computing a and b."""
    return luminance_to_lightness(linear_rgb_to_luminance(srgb_to_linear(rgb)))


def gray_to_lightness(gray: torch.Tensor) -> torch.Tensor:
    """Gray sRGB values (R = G = B) in [0, 1], any shape -> L of the same shape.

    Y of a neutral colour is its linear value (the Y row of the matrix sums to 1).
    """
    return luminance_to_lightness(srgb_to_linear(gray))


def lightness_to_gray(lightness: torch.Tensor) -> torch.Tensor:
    """L, any shape -> the sRGB gray value (R = G = B) in [0, 1] with that lightness."""
    return linear_to_srgb(lightness_to_luminance(lightness).clamp(0.0, 1.0))


# --------------------------------------------------------------------------------------------
# Full conversions
# --------------------------------------------------------------------------------------------


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (..., 3, H, W) in [0, 1] -> L*a*b* (..., 3, H, W), float32."""
    _check_channels(rgb, 3, "RGB")
    r, g, b = _split(srgb_to_linear(rgb))
    x, y, z = _mix(XYZ_FROM_RGB, r, g, b)
    fx, fy, fz = _f(x / WHITE_XYZ[0]), _f(y), _f(z / WHITE_XYZ[2])
    return torch.stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=-3)


#: XYZ/white -> linear sRGB: RGB_FROM_XYZ with the reference white folded in.
_RGB_FROM_XYZ_REL = tuple(tuple(row[k] * WHITE_XYZ[k] for k in range(3)) for row in RGB_FROM_XYZ)


def _linear_rgb_from_fab(
    fy: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    y: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Linear sRGB, channels first ``(3, *fy.shape)``, from f(Y) and a, b (the hot loop: few
    passes, written into ``out`` when given)."""
    x = _f_inv_(torch.add(fy, a, alpha=1.0 / 500.0))  # X / Xn
    z = _f_inv_(torch.add(fy, b, alpha=-1.0 / 200.0))  # Z / Zn
    if y is None:
        y = _f_inv(fy)
    if out is None:
        out = torch.empty((3, *x.shape), dtype=x.dtype, device=x.device)
    for channel, row in zip(out, _RGB_FROM_XYZ_REL, strict=True):
        torch.mul(x, row[0], out=channel)
        channel.add_(y, alpha=row[1]).add_(z, alpha=row[2])
    return out


def _lab_to_linear_raw(lab: torch.Tensor) -> torch.Tensor:
    _check_channels(lab, 3, "Lab")
    lightness, a, b = _split(_as_float(lab))
    return _linear_rgb_from_fab((lightness + 16.0) / 116.0, a, b).movedim(0, -3)


#: Resolution of the max-chroma table: hue in steps of 0.5 degrees; L in 400 steps spaced as
#: L = 50 - 50 cos(pi t), t uniform (0.4 units mid-range, ~0.01 near 0 and 100 where the
#: largest chroma changes fastest with L).
_LUT_L_STEPS = 400
_LUT_HUE_STEPS = 720
#: Table estimates are scaled by this before being verified (bilinear interpolation of the table
#: can slightly overshoot the true gamut boundary; this keeps overshoots rare).
_LUT_SAFETY = 0.998
_CHROMA_TABLES: dict[str, torch.Tensor] = {}


def _outside(linear: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Pixels of channels-first linear sRGB ``(3, ...)`` that leave [0, 1] by more than
    ``tolerance``."""
    # (amin and amax separately are several times faster than aminmax over the channel axis)
    return (linear.amin(0) < -tolerance) | (linear.amax(0) > 1.0 + tolerance)


def _bisect_scale(
    fy: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    iterations: int,
    tolerance: float,
) -> torch.Tensor:
    """Largest s in [lo, hi] with (L, s*a, s*b) in gamut, given lo inside and hi outside."""
    for _ in range(iterations):
        mid = (lo + hi) * 0.5
        ok = ~_outside(_linear_rgb_from_fab(fy, a * mid, b * mid, y), tolerance)
        lo = torch.where(ok, mid, lo)
        hi = torch.where(ok, hi, mid)
    return lo


def max_chroma_table(device: torch.device | str = "cpu") -> torch.Tensor:
    """Largest in-gamut chroma C*ab of sRGB for L = 50 - 50 cos(pi k / 400), k = 0..400 (rows)
    and hue = 0, 0.5, ..., 360 degrees (columns; the last equals the first). Computed once per
    device by bisection (to 1e-5 chroma units) and cached."""
    key = str(device)
    table = _CHROMA_TABLES.get(key)
    if table is None:
        t = torch.linspace(0.0, 1.0, _LUT_L_STEPS + 1, device=device, dtype=torch.float64)
        lightness = (50.0 - 50.0 * torch.cos(torch.pi * t)).float()
        hue = torch.linspace(0.0, 2 * torch.pi, _LUT_HUE_STEPS + 1, device=device)
        lightness, hue = torch.meshgrid(lightness, hue, indexing="ij")
        fy = (lightness + 16.0) / 116.0
        a, b = 200.0 * torch.cos(hue), 200.0 * torch.sin(hue)  # chroma 200: outside everywhere
        scale = _bisect_scale(
            fy, _f_inv(fy), a, b, torch.zeros_like(a), torch.ones_like(a), 24, 0.0
        )
        table = 200.0 * scale
        table[:, -1] = table[:, 0]
        _CHROMA_TABLES[key] = table
    return table


def _table_scale(lightness: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Chroma factor min(1, C_max(L, hue) / C) from the bilinearly interpolated table."""
    table = max_chroma_table(lightness.device)
    chroma = torch.hypot(a, b)
    li = torch.acos((1.0 - lightness / 50.0).clamp_(-1.0, 1.0)).mul_(_LUT_L_STEPS / torch.pi)
    hi = torch.atan2(b, a).remainder_(2 * torch.pi).mul_(_LUT_HUE_STEPS / (2 * torch.pi))
    l0 = li.floor().clamp_(0, _LUT_L_STEPS - 1)
    h0 = hi.floor().clamp_(0, _LUT_HUE_STEPS - 1)
    wl, wh = (li - l0).clamp_(0, 1), (hi - h0).clamp_(0, 1)
    flat = table.reshape(-1)
    idx = l0.long() * (_LUT_HUE_STEPS + 1) + h0.long()
    c00, c01 = flat[idx], flat[idx + 1]
    c10, c11 = flat[idx + _LUT_HUE_STEPS + 1], flat[idx + _LUT_HUE_STEPS + 2]
    cmax = torch.lerp(torch.lerp(c00, c01, wh), torch.lerp(c10, c11, wh), wl)
    return (cmax * _LUT_SAFETY / chroma.clamp_min(1e-12)).clamp_(max=1.0)


def _fit_into_gamut(
    lightness: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    linear: torch.Tensor,
    tolerance: float,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Reduce the chroma of the out-of-gamut pixels of ``linear`` (channels-first linear sRGB of
    (L, a, b), updated in place). Returns (flat indices of those pixels, their chroma factors),
    or None when everything was in gamut.

    The factor comes from the max-chroma table (times a safety margin) and is verified; the rare
    pixels where the interpolated table overshoots are bisected between 0 and that factor.
    """
    outside = _outside(linear, tolerance)
    idx = outside.reshape(-1).nonzero().squeeze(1)
    if idx.numel() == 0:
        return None

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1).index_select(0, idx)

    sel_l, sel_a, sel_b = pick(lightness), pick(a), pick(b)
    sel_fy = (sel_l + 16.0) / 116.0
    sel_y = _f_inv(sel_fy)
    scale = _table_scale(sel_l, sel_a, sel_b)
    rgb = _linear_rgb_from_fab(sel_fy, sel_a * scale, sel_b * scale, sel_y)
    failed = _outside(rgb, tolerance).nonzero().squeeze(1)
    if failed.numel():
        def bad(t: torch.Tensor) -> torch.Tensor:
            return t.index_select(0, failed)

        hi = bad(scale)
        scale.index_copy_(0, failed, _bisect_scale(
            bad(sel_fy), bad(sel_y), bad(sel_a), bad(sel_b), torch.zeros_like(hi), hi, 14,
            tolerance,
        ))  # fmt: skip
        _linear_rgb_from_fab(sel_fy, sel_a * scale, sel_b * scale, sel_y, out=rgb)
    for channel, values in zip(linear, rgb, strict=True):
        channel.reshape(-1).index_copy_(0, idx, values)  # channels of `linear` are contiguous
    return idx, scale


def _gamut_mapped(
    lab: torch.Tensor, tolerance: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple | None]:
    """(L clamped, a, b, channels-first linear sRGB fitted into the gamut, _fit_into_gamut's
    result) for Lab (..., 3, H, W)."""
    _check_channels(lab, 3, "Lab")
    lab = _as_float(lab)
    return _gamut_mapped_parts(lab.select(-3, 0), lab.select(-3, 1), lab.select(-3, 2),
                               tolerance)


def _gamut_mapped_parts(
    lightness: torch.Tensor, a: torch.Tensor, b: torch.Tensor, tolerance: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple | None]:
    """:func:`_gamut_mapped` of L, a and b given apart (same shapes)."""
    lightness = _as_float(lightness).clamp(0.0, 100.0)
    a, b = _as_float(a), _as_float(b)
    linear = _linear_rgb_from_fab((lightness + 16.0) / 116.0, a, b)
    return lightness, a, b, linear, _fit_into_gamut(lightness, a, b, linear, tolerance)


def lightness_ab_to_linear_rgb(lightness: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """:func:`lab_to_linear_rgb` with ``gamut="chroma"`` of L (H, W) and ab (2, H, W) given
    apart: linear sRGB (3, H, W) in [0, 1], without joining them into one Lab tensor first."""
    if ab.ndim != lightness.ndim + 1 or ab.shape[0] != 2 or ab.shape[1:] != lightness.shape:
        raise ValueError(f"expected L (H, W) and ab (2, H, W), got {tuple(lightness.shape)} "
                         f"and {tuple(ab.shape)}")
    return _gamut_mapped_parts(lightness, ab[0], ab[1], 1e-6)[3].clamp_(0.0, 1.0)


def gamut_map_chroma(lab: torch.Tensor, tolerance: float = 1e-6) -> torch.Tensor:
    """Bring L*a*b* colours into the sRGB gamut by scaling (a, b) towards 0 at constant L and hue.

    Each out-of-gamut pixel keeps at least 99.8 % of the largest chroma that fits at its L and hue
    (from :func:`max_chroma_table`, verified per pixel; where the table overshoots, bisection
    finds the boundary to 2**-14). Linear sRGB of the result lies in [0, 1] up to ``tolerance``.
    Pixels already in gamut are returned unchanged; L is clamped to [0, 100] and otherwise left
    exactly as given (gray of the same L is always in gamut). Returns a new tensor.
    """
    lightness, a, b, _, fitted = _gamut_mapped(lab, tolerance)
    a = a.clone(memory_format=torch.contiguous_format)
    b = b.clone(memory_format=torch.contiguous_format)
    if fitted is not None:
        idx, scale = fitted
        for flat in (a.view(-1), b.view(-1)):
            flat.index_copy_(0, idx, flat.index_select(0, idx) * scale)
    return torch.stack((lightness, a, b), dim=-3)


def lab_to_linear_rgb(lab: torch.Tensor, gamut: GamutMode = "none") -> torch.Tensor:
    """L*a*b* (..., 3, H, W) -> linear sRGB (..., 3, H, W), float32.

    ``gamut``: ``"none"`` (default) returns the raw values, which leave [0, 1] for colours
    outside sRGB; ``"chroma"`` reduces chroma at constant L and hue until the colour fits
    (:func:`gamut_map_chroma`) and clips the remaining rounding-level excursions; ``"clip"``
    clips each channel (what scikit-image does; shifts lightness and hue of out-of-gamut colours).
    """
    if gamut not in GAMUT_MODES:
        raise ValueError(f"unknown gamut mode {gamut!r}; choose one of {', '.join(GAMUT_MODES)}")
    if gamut != "chroma":
        linear = _lab_to_linear_raw(lab)
        return linear if gamut == "none" else linear.clamp_(0.0, 1.0)
    linear = _gamut_mapped(lab, 1e-6)[3]
    return linear.clamp_(0.0, 1.0).movedim(0, -3)


def lab_to_rgb(lab: torch.Tensor, gamut: GamutMode = "chroma") -> torch.Tensor:
    """L*a*b* (..., 3, H, W) -> sRGB (..., 3, H, W), float32, in [0, 1] unless ``gamut="none"``.

    ``gamut`` as in :func:`lab_to_linear_rgb`, but defaulting to ``"chroma"``.
    """
    return linear_to_srgb(lab_to_linear_rgb(lab, gamut))


#: Entries of the linear -> 8-bit sRGB table, indexed by sqrt(linear) (fine steps in the darks).
_UINT8_TABLE_SIZE = 65536
_UINT8_TABLES: dict[str, torch.Tensor] = {}


def linear_to_srgb_uint8(linear: torch.Tensor) -> torch.Tensor:
    """Linear sRGB in [0, 1] -> 8-bit sRGB codes (uint8), through a 65536-entry table.

    Much cheaper than the transfer curve plus rounding. The table is indexed by sqrt(linear) in
    steps of 1/65535 (at most 0.0035 of an 8-bit level): a result differs from exact rounding, by
    one level, only for values that close to a rounding boundary (about 0.1 % of random values).
    """
    key = str(linear.device)
    table = _UINT8_TABLES.get(key)
    if table is None:
        roots = torch.arange(_UINT8_TABLE_SIZE, dtype=torch.float64) / (_UINT8_TABLE_SIZE - 1)
        srgb = linear_to_srgb(roots.square().float()).double()
        table = (srgb * 255.0).round_().clamp_(0, 255).to(torch.uint8).to(linear.device)
        _UINT8_TABLES[key] = table
    idx = linear.clamp(0.0, 1.0).sqrt_().mul_(_UINT8_TABLE_SIZE - 1).add_(0.5).int()
    return table.index_select(0, idx.view(-1)).view(idx.shape)  # int32 index_select: fastest
