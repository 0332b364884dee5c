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
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chromatize.atomic import replacing
from chromatize.bins import NUM_BINS, nearest_bins
from chromatize.options import ColorizeOptions

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


# --------------------------------------------------------------------------------------------
# Folder evaluation
# --------------------------------------------------------------------------------------------

#: Pixels per chunk when finding the true colour classes of a large image (bounds memory).
_CLASS_CHUNK = 1 << 16
#: Height of one row of the contact sheet, in pixels.
CONTACT_ROW_HEIGHT = 192


@dataclass
class ImageResult:
    name: str
    model: dict[str, float]
    gray: dict[str, float]
    truth_colourfulness: float


@dataclass
class EvaluationReport:
    """Metrics of a model and of the grayscale baseline (ab = 0) over a folder of photos."""

    folder: str
    model_name: str
    temperature: float
    saturation: float
    count: int
    model: dict[str, float]
    gray: dict[str, float]
    truth_colourfulness: float
    images: list[ImageResult]

    def format_table(self) -> str:
        """A plain-text table: metric | model | grayscale baseline."""
        rows = [
            ("AuC raw (%)", "auc_raw", "{:.2f}"),
            ("AuC class-rebalanced (%)", "auc_rebalanced", "{:.2f}"),
            ("PSNR RGB (dB)", "psnr", "{:.2f}"),
            ("colourfulness", "colourfulness", "{:.1f}"),
        ]
        head = (f"{self.count} photos from {self.folder}; model {self.model_name}, "
                f"T={self.temperature:g}, saturation={self.saturation:g}")
        lines = [head, f"{'metric':<26}{'model':>10}{'gray':>10}"]
        for label, key, fmt in rows:
            lines.append(f"{label:<26}{fmt.format(self.model[key]):>10}"
                         f"{fmt.format(self.gray[key]):>10}")
        lines.append(f"{'colourfulness of originals':<26}{self.truth_colourfulness:>10.1f}")
        return "\n".join(lines)


def true_classes_chunked(true_ab: torch.Tensor) -> torch.Tensor:
    """:func:`true_classes` in chunks of pixels (large images would need GBs at once)."""
    flat = true_ab.reshape(2, -1)
    parts = [
        nearest_bins(flat[:, i : i + _CLASS_CHUNK][:, None, :, None].permute(1, 0, 2, 3), 1)[0]
        .flatten()
        for i in range(0, flat.shape[1], _CLASS_CHUNK)
    ]
    return torch.cat(parts)


def list_photos(folder: str | os.PathLike[str], limit: int | None = None) -> list[Path]:
    """The readable image files directly in ``folder``, sorted by name."""
    from chromatize.errors import InputImageError
    from chromatize.imageio import READABLE_EXTENSIONS

    root = Path(folder)
    if not root.is_dir():
        raise InputImageError(f"{root} is not a folder; pass a folder of colour photos")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in READABLE_EXTENSIONS)
    if not files:
        raise InputImageError(f"{root} holds no images chromatize can read")
    return files[:limit] if limit else files


def _thumb(rgb: np.ndarray, height: int) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    img = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    return np.asarray(img.resize((max(1, round(w * height / h)), height), Image.LANCZOS))


def write_contact_sheet(
    path: str | os.PathLike[str],
    rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    row_height: int = CONTACT_ROW_HEIGHT,
    overwrite: bool = False,
) -> None:
    """PNG with one row per photo: gray | ours | original (sRGB floats in [0, 1])."""
    from PIL import Image

    from chromatize.errors import OutputError

    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists; not replacing it (allow «overwrite=True»)")
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {path.parent} does not exist")
    gap = 4
    strips = []
    for triple in rows:
        thumbs = [_thumb(x, row_height) for x in triple]
        pad = np.full((row_height, gap, 3), 255, np.uint8)
        strips.append(np.concatenate([thumbs[0], pad, thumbs[1], pad, thumbs[2]], axis=1))
    width = max(s.shape[1] for s in strips)
    sheet = np.full((len(strips) * (row_height + gap) - gap, width, 3), 255, np.uint8)
    for i, s in enumerate(strips):
        y = i * (row_height + gap)
        sheet[y : y + row_height, : s.shape[1]] = s
    try:
        with replacing(path, ".png.tmp") as tmp:
            Image.fromarray(sheet).save(tmp, format="PNG")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc}") from None


def evaluate_folder(
    folder: str | os.PathLike[str],
    options: ColorizeOptions | None = None,
    *,
    model: torch.nn.Module | None = None,
    limit: int | None = None,
    contact_sheet: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> EvaluationReport:
    """Turn each colour photo of ``folder`` to gray, colorize it, compare with the original.

    ``options`` choose the model and every setting, as for users; ``model`` is a network to
    score instead of ``options.model`` (e.g. a training checkpoint; it follows the model
    contract). The gray input is the photo's own CIE L rendered as sRGB gray (float, no
    rounding), so the output has exactly the original's lightness and only colour is judged. The
    grayscale baseline (ab = 0) is scored beside the model. ``progress(done, total, name)`` is
    called per photo.
    """
    from chromatize.pipeline import Colorizer

    options = options if options is not None else ColorizeOptions()
    if model is not None:
        colorizer = Colorizer(model, device=options.device, options=options)
    else:
        colorizer = Colorizer.from_options(options)
    files = list_photos(folder, limit)
    ours, gray = MetricTotals(), MetricTotals()
    results: list[ImageResult] = []
    sheet_rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for i, f in enumerate(files):
        result, row = _score_photo(f, colorizer, options, ours, gray)
        results.append(result)
        if contact_sheet is not None:
            sheet_rows.append(row)
        if progress is not None:
            progress(i + 1, len(files), f.name)
    if contact_sheet is not None:
        write_contact_sheet(contact_sheet, sheet_rows, overwrite=overwrite)
    return EvaluationReport(
        folder=str(folder),
        model_name=colorizer.model_name,
        temperature=colorizer.temperature(options),
        saturation=options.saturation,
        count=len(files),
        model=ours.summary(),
        gray=gray.summary(),
        truth_colourfulness=float(np.mean([r.truth_colourfulness for r in results])),
        images=results,
    )


def _score_photo(path: Path, colorizer: Any, options: ColorizeOptions, ours: MetricTotals,
                 gray: MetricTotals) -> tuple[ImageResult, tuple[np.ndarray, ...]]:
    """Score one photo (adding to the running totals); its result and contact-sheet row."""
    from chromatize.color import lightness_to_gray, rgb_to_lab
    from chromatize.imagearray import color_float, inspect_image
    from chromatize.imageio import read_image

    pixels = read_image(path).pixels
    layout = inspect_image(pixels, str(path))
    rgb_t = color_float(pixels, layout).contiguous()  # (3, H, W) float32 sRGB in [0, 1]
    lab = rgb_to_lab(rgb_t)
    true_ab = lab[1:]
    rgb = rgb_t.permute(1, 2, 0).numpy()
    gray_in = lightness_to_gray(lab[0]).clamp(0, 1).numpy().astype(np.float32)
    out = np.asarray(colorizer.colorize(gray_in, options), np.float32)[..., :3]
    pred_ab = rgb_to_lab(torch.from_numpy(out).permute(2, 0, 1))[1:]
    classes = true_classes_chunked(true_ab)
    gray3 = np.repeat(gray_in[..., None], 3, axis=2)
    one_ours, one_gray = MetricTotals(), MetricTotals()
    for acc in (ours, one_ours):
        acc.add(out, pred_ab, rgb, true_ab, classes)
    for acc in (gray, one_gray):
        acc.add(gray3, torch.zeros_like(true_ab), rgb, true_ab, classes)
    result = ImageResult(path.name, one_ours.summary(), one_gray.summary(), colourfulness(rgb))
    return result, (gray3, out, rgb)
