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


def _box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window, windows truncated at the borders. x: (C, h, w).

    Done separably (a row pass, then a column pass), so the cost is linear in the radius."""
    if radius <= 0:
        return x
    k = 2 * radius + 1
    x = F.avg_pool2d(x[None], (1, k), stride=1, padding=(0, radius), count_include_pad=False)
    return F.avg_pool2d(x, (k, 1), stride=1, padding=(radius, 0), count_include_pad=False)[0]


class ABUpsampler:
    """Prepared upsampling of one image's low-res ab (2, h, w) to (2, H, W), queried by strips.

    ``lightness_full`` (H, W) is the guide (only used to build the coefficients here; the strip
    call takes the matching rows of L again so the caller can stream them).
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
            self._a, self._b = self._coefficients(
                self.ab_low, lightness_full, radius, eps, intermediate_scale
            )

    def _coefficients(
        self, ab: torch.Tensor, lightness_full: torch.Tensor, radius: float, eps: float, scale: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = ab.shape[-2:]
        mid_h = min(self.height, max(h, h * scale))
        mid_w = min(self.width, max(w, w * scale))
        radius = max(1, round(radius * max(mid_h / h, mid_w / w)))  # in intermediate pixels
        guide = lightness_full.to(ab.device, torch.float32)[None, None]
        guide = F.interpolate(guide, size=(mid_h, mid_w), mode="area")[0] / 100.0  # (1, mh, mw)
        p = resize_bilinear_rows(ab, mid_h, mid_w)  # (2, mh, mw)
        mean_i = _box_mean(guide, radius)
        mean_p = _box_mean(p, radius)
        cov_ip = _box_mean(guide * p, radius) - mean_i * mean_p
        var_i = _box_mean(guide * guide, radius) - mean_i * mean_i
        a = cov_ip / (var_i.clamp_min(0.0) + eps)
        b = mean_p - a * mean_i
        # L is divided by 100 at apply time via the scale folded into A.
        return _box_mean(a, radius) / 100.0, _box_mean(b, radius)

    def rows(self, rows: slice, lightness_rows: torch.Tensor | None = None) -> torch.Tensor:
        """ab (2, h, W) for the output rows ``rows``; ``lightness_rows`` (h, W) is L of those
        rows (required for ``"guided"``)."""
        if self.method == "bilinear":
            return resize_bilinear_rows(self.ab_low, self.height, self.width, rows)
        if lightness_rows is None:
            raise ValueError("guided upsampling needs the lightness of the requested rows")
        a = resize_bilinear_rows(self._a, self.height, self.width, rows)
        out = resize_bilinear_rows(self._b, self.height, self.width, rows)
        return out.addcmul_(a, lightness_rows.to(a.device, torch.float32)[None])
