"""Carrying the hints' colours into their surroundings after the network has answered.

The network moves the colours around a hint toward it, but not all the way: on held-out photos
its output at a hint's own pixels is a median ~3 ab off the hint, and the region around it
further. :func:`hint_pull` closes that gap on the prediction grid (1/4 of the render size),
before the guided upsampling carries the colours to full resolution along the photo's edges:

- every prediction cell a hint covers is a sample; its *residual* is the hint's ab minus the
  model's ab there;
- every cell gets the normalised-convolution mean of the residuals, weighted by distance in
  space (a Gaussian of :func:`spatial_sigma` cells: about the spacing between hints, so that few
  hints reach far and many hints stay local) and by difference in lightness (a Gaussian of
  :data:`LIGHTNESS_SIGMA` L units: colour follows surfaces of similar brightness);
- where the summed weight is below 1 (far from every hint, or across a change of lightness) the
  correction fades in proportion, so regions no hint speaks for keep the model's colours.

With no hints nothing changes. The pipeline still pins the hint pixels themselves exactly at full
resolution (:meth:`chromatize.pipeline.Colorizer.finish`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from chromatize.models.contract import HINT_AB_SCALE

#: Spatial spread: this many times the spacing between hints (sqrt(area / hints)), in cells.
#: SPACING_FACTOR and LIGHTNESS_SIGMA were chosen on 60 photos of mobile's selection sample
#: (shipped/MODEL_CARD.md, "Hint propagation"): 0.5-1.0 and 10-25 were all within 0.1 dB at 10
#: hints; at 100 hints the narrower settings led.
SPACING_FACTOR = 0.75
#: ... but at most this share of the grid's diagonal, so that a single hint stays a local edit
#: (moving it away restores the place it was; 0.25 reached across a 1-megapixel photo). On the
#: same 60 photos: 1 hint +0.17 dB (+0.25 at 0.25, +0.10 at 0.1), 10 hints +0.92 (+0.93, +0.80).
MAX_SPREAD = 0.15
#: Lightness spread (CIE L units).
LIGHTNESS_SIGMA = 10.0
#: Most hint samples the correction uses (cells, densest first); beyond it the weights would cost
#: more than the forward pass and the hints already cover the image.
MAX_SAMPLES = 4096
#: Samples whose weights are computed at once (memory: this many grids of float32).
SAMPLES_PER_CHUNK = 128


def spatial_sigma(height: int, width: int, hints: int) -> float:
    """The spatial Gaussian's sigma in cells of a ``height`` x ``width`` grid with ``hints``
    hints (see the module docstring)."""
    spacing = math.sqrt(height * width / max(hints, 1))
    return min(SPACING_FACTOR * spacing, MAX_SPREAD * math.hypot(height, width))


def hint_samples(hints: torch.Tensor, size: tuple[int, int]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The hint tensor (3, H, W) at render size (contract layout: ab / 110 and a mask) pooled to
    a ``size`` grid: the flat indices of the cells that hold hint pixels and their mean hint ab
    (n, 2)."""
    mask = hints[2:3].float()
    coverage = F.adaptive_avg_pool2d(mask[None], size)[0, 0]
    ab_sum = F.adaptive_avg_pool2d((hints[:2].float() * mask)[None], size)[0]
    cells = torch.nonzero(coverage.flatten() > 0).flatten()
    if cells.numel() > MAX_SAMPLES:
        cells = cells[coverage.flatten()[cells].argsort(descending=True)[:MAX_SAMPLES]]
    ab = ab_sum.flatten(1)[:, cells] / coverage.flatten()[cells]
    return cells, (ab * HINT_AB_SCALE).T.contiguous()


def propagate_hints(ab: torch.Tensor, lightness: torch.Tensor, hints: torch.Tensor,
                    count: int | None = None) -> torch.Tensor:
    """``ab`` (2, h, w), the model's decoded colours, moved toward the hints around them
    (:func:`hint_pull` added); ``ab`` itself when there are no hints."""
    pull = hint_pull(ab, lightness, hints, count)
    return ab if pull is None else ab + pull


def hint_pull(ab: torch.Tensor, lightness: torch.Tensor, hints: torch.Tensor,
              count: int | None = None) -> torch.Tensor | None:
    """How far the hints move ``ab`` (2, h, w), the model's decoded colours, around them:
    (2, h, w) in ab units, or None when there are no hints.

    ``lightness`` is the image's L (any size; pooled to h x w), ``hints`` the contract's hint
    tensor (3, H, W) at render size, ``count`` the number of hints (default: the number of cells
    they cover)."""
    h, w = ab.shape[-2:]
    device = ab.device  # everything on the prediction's device (the GPU when there is one)
    cells, hint_ab = hint_samples(hints.to(device), (h, w))
    if cells.numel() == 0:
        return None
    grid_l = F.adaptive_avg_pool2d(lightness.to(device).float()[None, None], (h, w))[0, 0]
    grid_l = grid_l.flatten()
    flat = ab.float().flatten(1)
    residual = hint_ab - flat[:, cells].T  # (n, 2)
    ys = torch.div(cells, w, rounding_mode="floor").float()
    xs = (cells % w).float()
    sigma = spatial_sigma(h, w, count if count is not None else int(cells.numel()))
    row = torch.arange(h, dtype=torch.float32, device=device)
    col = torch.arange(w, dtype=torch.float32, device=device)
    numerator = torch.zeros(2, h * w, device=device)
    denominator = torch.zeros(h * w, device=device)
    for start in range(0, int(cells.numel()), SAMPLES_PER_CHUNK):  # bounded memory
        part = slice(start, start + SAMPLES_PER_CHUNK)
        # separable spatial Gaussian per sample, (k, h, 1) * (k, 1, w), then lightness similarity
        wy = torch.exp(-(row[None] - ys[part, None]).square() / (2 * sigma**2))
        wx = torch.exp(-(col[None] - xs[part, None]).square() / (2 * sigma**2))
        lightness_gap = grid_l[None] - grid_l[cells[part]][:, None]  # (k, h*w)
        weight = (wy[:, :, None] * wx[:, None, :]).flatten(1)
        weight *= torch.exp(-lightness_gap.square() / (2 * LIGHTNESS_SIGMA**2))
        numerator += residual[part].T @ weight
        denominator += weight.sum(0)
    return (numerator / denominator.clamp_min(1.0)).view_as(ab).to(ab.dtype)
