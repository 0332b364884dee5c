"""Bringing the model's low-resolution chroma (ab) up to the full image size.

Two methods, both evaluated strip by strip (a range of output rows at a time) so that a large image
never needs more than a few full-width float rows of scratch memory:

- ``"bilinear"``: plain bilinear interpolation of ab (identical to ``F.interpolate(...,
  mode="bilinear", align_corners=False)``); colour bleeds across edges by the size of a low-res
  pixel.
- ``"guided"``: the fast guided filter (He & Sun, 2015, "Fast Guided Filter", arXiv:1505.00996),
  using the full-resolution lightness as the guide. The local linear model ab ≈ A·L + B is fitted
  at an intermediate resolution (``intermediate_scale`` times the ab resolution, at most the full
  size) from ab upsampled bilinearly and L box-downsampled to it; A and B are box-averaged,
  upsampled bilinearly to full size and applied to the full-resolution L. Colour edges snap to
  lightness edges; flat areas get the plain upsampled colour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from chromatize.options import UPSAMPLE_CHOICES, UpsampleMethod

UPSAMPLE_METHODS: tuple[str, ...] = UPSAMPLE_CHOICES

#: Defaults of the guided filter. The radius is in low-res (ab) pixels: the model's colour
#: transitions span 2-3 of them, and the window must cover a transition to snap it to the L edge.
#: eps is for L scaled to [0, 1] (sqrt(eps) ~ 3 L units: weaker L texture does not tint ab);
#: compared on Kodak24 in benchmarks/RESULTS.md.
GUIDED_RADIUS = 3.0
GUIDED_EPS = 1e-3
GUIDED_INTERMEDIATE_SCALE = 4


def _source_index(out_size: int, in_size: int, start: int, stop: int, device: torch.device):
    """Neighbour indices and weights of output positions start..stop-1 (align_corners=False)."""
    scale = in_size / out_size
    pos = (torch.arange(start, stop, device=device, dtype=torch.float64) + 0.5) * scale - 0.5
    pos = pos.clamp_min(0.0)
    i0 = pos.floor().long().clamp_max(in_size - 1)
    i1 = (i0 + 1).clamp_max(in_size - 1)
    w1 = (pos - i0.double()).clamp(0.0, 1.0).float()
    return i0, i1, w1


def resize_bilinear_rows(
    src: torch.Tensor, out_height: int, out_width: int, rows: slice | None = None
) -> torch.Tensor:
    """Rows ``rows`` of a bilinear resize of ``src`` (C, h, w) to (C, out_height, out_width).

    Matches ``F.interpolate(src[None], (out_height, out_width), mode="bilinear",
    align_corners=False)[0][:, rows]`` but only computes the requested rows (separably: rows
    first, then columns).
    """
    start, stop, step = (rows or slice(None)).indices(out_height)
    if step != 1:
        raise ValueError("rows must be a contiguous slice")
    _, in_h, in_w = src.shape
    y0, y1, wy = _source_index(out_height, in_h, start, stop, src.device)
    wy = wy.to(src.dtype)[None, :, None]
    # Only the source rows we need, interpolated to the strip height.
    lo = int(y0.min()) if len(y0) else 0
    hi = int(y1.max()) + 1 if len(y1) else 0
    part = src[:, lo:hi]
    vertical = torch.lerp(part[:, y0 - lo], part[:, y1 - lo], wy)  # (C, strip, in_w)
    if in_w == out_width:
        return vertical
    # Columns: the optimised kernel (the row count is unchanged, so rows map onto themselves).
    return F.interpolate(
        vertical[None], size=(vertical.shape[1], out_width), mode="bilinear", align_corners=False
    )[0]


def _window_sums(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Sums over windows [i - radius, i + radius] along ``dim``, truncated at the borders, in
    float64 from a running sum (cost independent of the radius)."""
    dim %= x.ndim
    n = x.shape[dim]
    running = torch.cumsum(x, dim=dim, dtype=torch.float64)

    def repeated(block: torch.Tensor, count: int) -> torch.Tensor:
        return block.expand(*[count if d == dim else s for d, s in enumerate(block.shape)])

    # padded[k] = C[clamp(k - radius, 0, n)] where C = (0, running...): then the window sum at i
    # is C[min(i + radius + 1, n)] - C[max(i - radius, 0)] = padded[i + 2r + 1] - padded[i]
    padded = torch.cat((repeated(torch.zeros_like(running.narrow(dim, 0, 1)), radius + 1),
                        running, repeated(running.narrow(dim, n - 1, 1), radius)), dim=dim)
    return padded.narrow(dim, 2 * radius + 1, n) - padded.narrow(dim, 0, n)


def _window_counts(n: int, radius: int) -> torch.Tensor:
    i = torch.arange(n)
    return ((i + radius).clamp_max(n - 1) - (i - radius).clamp_min(0) + 1).double()


def _box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window, windows truncated at the borders. x: (C, h, w).

    Separable running sums in float64 (a row pass, then a column pass): the cost does not grow
    with the radius (the guided filter's radius is ~12 intermediate pixels), and the result
    equals ``avg_pool2d(..., count_include_pad=False)`` to float32 rounding."""
    if radius <= 0:
        return x
    h, w = x.shape[-2:]
    sums = _window_sums(_window_sums(x, radius, -1), radius, -2)
    counts = _window_counts(h, radius)[:, None] * _window_counts(w, radius)[None, :]
    return sums.div_(counts.to(sums.device)).to(x.dtype)


@dataclass(frozen=True)
class GuideStatistics:
    """What the guided filter needs from the guide (L) alone, at the intermediate resolution:
    computed once per image and reused while only the colour changes (hints, saturation)."""

    #: L / 100 box-downsampled to the intermediate size, (1, mh, mw)
    guide: torch.Tensor
    #: its box means and variances over the filter window, (1, mh, mw)
    mean: torch.Tensor
    variance: torch.Tensor
    #: the window radius in intermediate pixels
    radius: int

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.guide.shape[-2]), int(self.guide.shape[-1])


def guide_key(ab_shape: tuple[int, int], full_shape: tuple[int, int],
              radius: float = GUIDED_RADIUS, scale: int = GUIDED_INTERMEDIATE_SCALE
              ) -> tuple[int, int, int]:
    """(intermediate height, width, radius in intermediate pixels) for ab of ``ab_shape``
    upsampled to ``full_shape``: what :class:`GuideStatistics` depend on besides L."""
    h, w = ab_shape
    mid_h = min(full_shape[0], max(h, h * scale))
    mid_w = min(full_shape[1], max(w, w * scale))
    return mid_h, mid_w, max(1, round(radius * max(mid_h / h, mid_w / w)))


def guide_statistics(lightness_full: torch.Tensor, key: tuple[int, int, int]
                     ) -> GuideStatistics:
    """:class:`GuideStatistics` of ``lightness_full`` (H, W) for ``key`` (:func:`guide_key`)."""
    mid_h, mid_w, radius = key
    guide = lightness_full.to(torch.float32)[None, None]
    guide = F.interpolate(guide, size=(mid_h, mid_w), mode="area")[0] / 100.0  # (1, mh, mw)
    mean = _box_mean(guide, radius)
    variance = (_box_mean(guide * guide, radius) - mean * mean).clamp_min_(0.0)
    return GuideStatistics(guide, mean, variance, radius)


class ABUpsampler:
    """Prepared upsampling of one image's low-res ab (2, h, w) to (2, H, W), queried by strips.

    ``lightness_full`` (H, W) is the guide (only used to build the coefficients here; the strip
    call takes the matching rows of L again so the caller can stream them). ``guide``: the
    guide's :class:`GuideStatistics` when the caller keeps them (e.g. in
    :class:`chromatize.pipeline.Prepared`); they must match :func:`guide_key` of these sizes.
    ``fit``: computes the coefficients instead of :meth:`_fit`, with the same arguments and result
    (the compiled :func:`chromatize.finish_kernel.guided_fit`).
    """

    def __init__(
        self,
        ab_low: torch.Tensor,
        lightness_full: torch.Tensor,
        method: UpsampleMethod = "guided",
        *,
        radius: float = GUIDED_RADIUS,
        eps: float = GUIDED_EPS,
        intermediate_scale: int = GUIDED_INTERMEDIATE_SCALE,
        guide: GuideStatistics | None = None,
        fit: Callable[[torch.Tensor, GuideStatistics, float], torch.Tensor] | None = None,
    ) -> None:
        if method not in UPSAMPLE_METHODS:
            raise ValueError(
                f"unknown upsample method {method!r}; choose one of {', '.join(UPSAMPLE_METHODS)}"
            )
        if ab_low.ndim != 3 or ab_low.shape[0] != 2:
            raise ValueError(f"expected ab of shape (2, h, w), got {tuple(ab_low.shape)}")
        if lightness_full.ndim != 2:
            raise ValueError(f"expected L of shape (H, W), got {tuple(lightness_full.shape)}")
        self.method = method
        self.height, self.width = lightness_full.shape
        self.ab_low = ab_low.float()
        if method == "guided":
            key = guide_key(tuple(ab_low.shape[-2:]), (self.height, self.width), radius,
                            intermediate_scale)
            if guide is None:
                guide = guide_statistics(lightness_full.to(ab_low.device), key)
            elif (*guide.shape, guide.radius) != key:
                raise ValueError(f"guide statistics for {(*guide.shape, guide.radius)}, "
                                 f"this upsampling needs {key}")
            coefficients = (fit or self._fit)(self.ab_low, guide, eps)
            self._a, self._b = coefficients[:2], coefficients[2:]  # contiguous halves

    @staticmethod
    def _fit(ab: torch.Tensor, guide: GuideStatistics, eps: float) -> torch.Tensor:
        """A (2 channels) and B (2 channels) of the local linear model, box-averaged, stacked
        (4, mh, mw); A is divided by 100 so that it applies to L in [0, 100]."""
        radius = guide.radius
        p = resize_bilinear_rows(ab, *guide.shape)  # (2, mh, mw)
        mean_p = _box_mean(p, radius)
        cov_ip = _box_mean(guide.guide * p, radius) - guide.mean * mean_p
        a = cov_ip / (guide.variance + eps)
        b = mean_p - a * guide.mean
        return _box_mean(torch.cat((a, b)), radius).div_(
            torch.tensor([100.0, 100.0, 1.0, 1.0], device=a.device)[:, None, None])

    def rows(self, rows: slice, lightness_rows: torch.Tensor | None = None) -> torch.Tensor:
        """ab (2, h, W) for the output rows ``rows``; ``lightness_rows`` (h, W) is L of those
        rows (required for ``"guided"``)."""
        if self.method == "bilinear":
            return resize_bilinear_rows(self.ab_low, self.height, self.width, rows)
        if lightness_rows is None:
            raise ValueError("guided upsampling needs the lightness of the requested rows")
        # A and B resized apart: two 2-channel resizes are faster than one of 4 channels
        a = resize_bilinear_rows(self._a, self.height, self.width, rows)
        out = resize_bilinear_rows(self._b, self.height, self.width, rows)
        return out.addcmul_(a, lightness_rows.to(a.device, torch.float32)[None])
