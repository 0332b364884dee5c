"""Colorization metrics and folder evaluation.

Metrics (Zhang, Isola & Efros, ECCV 2016, section 3.1; Hasler & Süsstrunk 2003):

- **AuC of raw accuracy**: per-pixel L2 error between predicted and true ab; accuracy at threshold
  t = fraction of pixels with error <= t; AuC = mean accuracy over the integer thresholds 0..150,
  in percent. Because thresholds are integers, a pixel with error d contributes
  ``clip((151 - ceil(d)) / 151, 0, 1)``, which is what :class:`AucAccumulator` sums.
- **class-rebalanced AuC**: the same, re-weighting pixels inversely by the frequency of their
  true colour class (nearest of the 313 bins) over the evaluated set, i.e. the mean over the
  classes present of each class's AuC.
- **PSNR** on sRGB in [0, 1] (per image, averaged).
- **colourfulness** M = sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2) on 0..255 sRGB,
  with rg = R - G and yb = (R + G) / 2 - B.

:func:`evaluate_folder` turns colour photos into gray, colorizes them with
:class:`chromatize.pipeline.Colorizer` and always reports the grayscale baseline (ab = 0) beside the
model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from chromatize.bins import NUM_BINS, nearest_bins

AUC_MAX_THRESHOLD = 150


def _as_ab_tensor(ab: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(ab, dtype=torch.float32)
    if t.ndim != 3 or t.shape[0] != 2:
        raise ValueError(f"expected ab of shape (2, H, W), got {tuple(t.shape)}")
    return t


ArrayLike = np.ndarray | torch.Tensor


def _zeros_per_bin() -> torch.Tensor:
    return torch.zeros(NUM_BINS, dtype=torch.float64)


def auc_scores(pred_ab: ArrayLike, true_ab: ArrayLike) -> torch.Tensor:
    """Per-pixel contribution (H*W,) to the AuC over thresholds 0..150 (1 = exact, 0 = >150 off)."""
    p, t = _as_ab_tensor(pred_ab), _as_ab_tensor(true_ab)
    if p.shape != t.shape:
        raise ValueError(f"prediction {tuple(p.shape)} and truth {tuple(t.shape)} differ in shape")
    d = (p - t).square().sum(0).sqrt().flatten()
    n_thr = AUC_MAX_THRESHOLD + 1
    return ((n_thr - torch.ceil(d)) / n_thr).clamp(0.0, 1.0)


def true_classes(true_ab: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Nearest of the 313 bins (H*W,) of every true ab pixel (its colour class)."""
    return nearest_bins(_as_ab_tensor(true_ab)[None], 1)[0].flatten()


@dataclass
class AucAccumulator:
    """Streams raw and class-rebalanced AuC over many images (exact, not averaged per image)."""

    total: float = 0.0
    pixels: int = 0
    class_sum: torch.Tensor = field(default_factory=_zeros_per_bin)
    class_count: torch.Tensor = field(default_factory=_zeros_per_bin)

    def add(
        self,
        pred_ab: np.ndarray | torch.Tensor,
        true_ab: np.ndarray | torch.Tensor,
        classes: torch.Tensor | None = None,
    ) -> None:
        """Add one image; ``classes`` (H*W,) may give :func:`true_classes` of ``true_ab``."""
        scores = auc_scores(pred_ab, true_ab).double()
        if classes is None:
            classes = true_classes(true_ab)
        self.total += float(scores.sum())
        self.pixels += scores.numel()
        self.class_sum += torch.bincount(classes, weights=scores, minlength=NUM_BINS)
        self.class_count += torch.bincount(classes, minlength=NUM_BINS).double()

    @property
    def raw(self) -> float:
        """AuC in percent, every pixel weighted equally."""
        return 100.0 * self.total / max(self.pixels, 1)

    @property
    def rebalanced(self) -> float:
        """AuC in percent, mean over the true colour classes present."""
        present = self.class_count > 0
        if not bool(present.any()):
            return 0.0
        return 100.0 * float((self.class_sum[present] / self.class_count[present]).mean())


def psnr(pred_rgb: np.ndarray, true_rgb: np.ndarray) -> float:
    """PSNR in dB of two sRGB images as floats in [0, 1] (any matching shape)."""
    a, b = np.asarray(pred_rgb, np.float64), np.asarray(true_rgb, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk (2003) colourfulness of an sRGB image (H, W, 3) as floats in [0, 1]."""
    x = np.asarray(rgb, np.float64) * 255.0
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3), got {x.shape}")
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


@dataclass
class MetricTotals:
    """Accumulates every metric for one method (the model, or the grayscale baseline)."""

    auc: AucAccumulator = field(default_factory=AucAccumulator)
    psnrs: list[float] = field(default_factory=list)
    colourfulness: list[float] = field(default_factory=list)

    def add(
        self,
        pred_rgb: np.ndarray,
        pred_ab: np.ndarray | torch.Tensor,
        true_rgb: np.ndarray,
        true_ab: np.ndarray | torch.Tensor,
        classes: torch.Tensor | None = None,
    ) -> None:
        """``*_rgb``: (H, W, 3) floats in [0, 1]; ``*_ab``: (2, H, W); ``classes``: see
        :meth:`AucAccumulator.add`."""
        self.auc.add(pred_ab, true_ab, classes)
        self.psnrs.append(psnr(pred_rgb, true_rgb))
        self.colourfulness.append(colourfulness(pred_rgb))

    def summary(self) -> dict[str, float]:
        finite = [p for p in self.psnrs if math.isfinite(p)]
        return {
            "auc_raw": self.auc.raw,
            "auc_rebalanced": self.auc.rebalanced,
            "psnr": float(np.mean(finite)) if finite else math.inf,
            "colourfulness": float(np.mean(self.colourfulness)) if self.colourfulness else 0.0,
        }
