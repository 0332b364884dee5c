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
    return 116.0 * _f(_as_float(y)) - 16.0


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


def _linear_rgb_from_fab(
    fy: torch.Tensor, a: torch.Tensor, b: torch.Tensor, y: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = WHITE_XYZ[0] * _f_inv(fy + a / 500.0)
    z = WHITE_XYZ[2] * _f_inv(fy - b / 200.0)
    if y is None:
        y = _f_inv(fy)
    return _mix(RGB_FROM_XYZ, x, y, z)


def lab_to_linear_rgb(lab: torch.Tensor) -> torch.Tensor:
    """L*a*b* (..., 3, H, W) -> linear sRGB, unclipped (may leave [0, 1] when out of gamut)."""
    _check_channels(lab, 3, "Lab")
    lightness, a, b = _split(_as_float(lab))
    return torch.stack(_linear_rgb_from_fab((lightness + 16.0) / 116.0, a, b), dim=-3)


def gamut_map_chroma(
    lab: torch.Tensor, iterations: int = 14, tolerance: float = 1e-6
) -> torch.Tensor:
    """Bring L*a*b* colours into the sRGB gamut by scaling (a, b) towards 0 at constant L and hue.

    For each pixel the largest factor s in [0, 1] with linear sRGB of (L, s*a, s*b) inside
    [0, 1] (up to ``tolerance``) is found by bisection (``iterations`` steps, precision 2**-14 of
    the chroma by default). Pixels already in gamut are returned unchanged; s = 0 (gray of the
    same L) is always in gamut, so the result always is. L is clamped to [0, 100] first; it is
    otherwise left exactly as given. Returns a new tensor.
    """
    _check_channels(lab, 3, "Lab")
    lab = _as_float(lab)
    lightness = lab.select(-3, 0).clamp(0.0, 100.0)
    a = lab.select(-3, 1).clone()
    b = lab.select(-3, 2).clone()
    fy = (lightness + 16.0) / 116.0
    y = _f_inv(fy)
    lo_bound, hi_bound = -tolerance, 1.0 + tolerance

    def inside(fy_: torch.Tensor, a_: torch.Tensor, b_: torch.Tensor, y_: torch.Tensor):
        r, g, bl = _linear_rgb_from_fab(fy_, a_, b_, y_)
        return (
            (r >= lo_bound) & (r <= hi_bound) & (g >= lo_bound) & (g <= hi_bound)
            & (bl >= lo_bound) & (bl <= hi_bound)
        )  # fmt: skip

    outside = ~inside(fy, a, b, y)
    if bool(outside.any()):
        sel_fy, sel_y = fy[outside], y[outside]
        sel_a, sel_b = a[outside], b[outside]
        lo = torch.zeros_like(sel_a)
        hi = torch.ones_like(sel_a)
        for _ in range(iterations):
            mid = (lo + hi) * 0.5
            ok = inside(sel_fy, sel_a * mid, sel_b * mid, sel_y)
            lo = torch.where(ok, mid, lo)
            hi = torch.where(ok, hi, mid)
        a[outside] = sel_a * lo
        b[outside] = sel_b * lo
    return torch.stack((lightness, a, b), dim=-3)


def lab_to_rgb(lab: torch.Tensor, gamut: GamutMode = "chroma") -> torch.Tensor:
    """L*a*b* (..., 3, H, W) -> sRGB (..., 3, H, W) in [0, 1], float32.

    ``gamut``: ``"chroma"`` (default) reduces chroma at constant L and hue until the colour fits
    (:func:`gamut_map_chroma`), then clips the remaining rounding-level excursions; ``"clip"``
    clips each channel (what scikit-image does; shifts lightness and hue of out-of-gamut colours);
    ``"none"`` returns the unclipped values.
    """
    if gamut not in GAMUT_MODES:
        raise ValueError(f"unknown gamut mode {gamut!r}; choose one of {', '.join(GAMUT_MODES)}")
    if gamut == "chroma":
        lab = gamut_map_chroma(lab)
    linear = lab_to_linear_rgb(lab)
    if gamut == "none":
        return linear_to_srgb(linear)
    return linear_to_srgb(linear.clamp_(0.0, 1.0))
