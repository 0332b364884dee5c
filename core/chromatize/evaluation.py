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
- **harm**: the share of all pixels (pooled over the photos) whose output ab is at least
  :data:`HARM_MARGIN` (10) units farther from the truth than gray's (ab = 0) would be,
  ``|ab_out - ab_true| - |ab_true| >= 10``; **worse than gray**: the photos whose mean |Δab|
  exceeds gray's (the photo's mean |ab_true|). Gray itself scores 0 and 0.
- the regression papers' measures (Deep Koalarization, DenseNet colorization): the **mean L2 ab
  distance** (mean over pixels of |Δab|) and the share of pixels **within** 2, 5 and 10 ab units
  (:data:`WITHIN_THRESHOLDS`); and the output's **mean chroma** (mean |ab_out|).
- with hints (Zhang et al. 2017, "Real-Time User-Guided Image Colorization"): every metric with N
  hint patches of 5x5 pixels at seeded random positions, each with its patch's mean true colour
  (:func:`chromatize.hints.sample_hints`), and **hint obedience**: the median over all hint pixels
  of |Δab| between the hint's colour and the output there.

:func:`evaluate_folder` turns colour photos into gray, colorizes them with
:class:`chromatize.pipeline.Colorizer` (hints through ``Colorizer.colorize(..., hints=...)``, the
path users take) and always reports the grayscale baseline (ab = 0) beside the model.
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
#: A pixel is harmed when the output is at least this many ab units farther from the truth than
#: gray (ab = 0) would be.
HARM_MARGIN = 10.0
#: "Share of pixels within t ab units of the truth" is reported for these t.
WITHIN_THRESHOLDS = (2, 5, 10)
#: Side in pixels of the hint patches of the hint protocol (Zhang et al. 2017).
HINT_PATCH_SIZE = 5


def _as_ab_tensor(ab: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(ab, dtype=torch.float32)
    if t.ndim != 3 or t.shape[0] != 2:
        raise ValueError(f"expected ab of shape (2, H, W), got {tuple(t.shape)}")
    return t


ArrayLike = np.ndarray | torch.Tensor


def _zeros_per_bin() -> torch.Tensor:
    return torch.zeros(NUM_BINS, dtype=torch.float64)


def ab_distance(pred_ab: ArrayLike, true_ab: ArrayLike) -> torch.Tensor:
    """Per-pixel L2 distance (H*W,) between predicted and true ab, both (2, H, W)."""
    p, t = _as_ab_tensor(pred_ab), _as_ab_tensor(true_ab)
    if p.shape != t.shape:
        raise ValueError(f"prediction {tuple(p.shape)} and truth {tuple(t.shape)} differ in shape")
    return (p - t).square().sum(0).sqrt().flatten()


def auc_scores(pred_ab: ArrayLike, true_ab: ArrayLike) -> torch.Tensor:
    """Per-pixel contribution (H*W,) to the AuC over thresholds 0..150 (1 = exact, 0 = >150 off)."""
    return _auc_of_distance(ab_distance(pred_ab, true_ab))


def _auc_of_distance(d: torch.Tensor) -> torch.Tensor:
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
        self.add_distances(ab_distance(pred_ab, true_ab), true_ab, classes)

    def add_distances(self, distance: torch.Tensor, true_ab: np.ndarray | torch.Tensor,
                      classes: torch.Tensor | None = None) -> None:
        """:meth:`add` of one image given its per-pixel :func:`ab_distance` (H*W,)."""
        scores = _auc_of_distance(distance).double()
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


def _zeros_per_threshold() -> dict[int, int]:
    return dict.fromkeys(WITHIN_THRESHOLDS, 0)


@dataclass
class ErrorTotals:
    """Streams the per-pixel ab error measures besides AuC over many images (pooled over pixels):
    harm, photos worse than gray, mean L2 ab distance, shares within :data:`WITHIN_THRESHOLDS`,
    and the output's mean chroma."""

    pixels: int = 0
    harmed: int = 0
    distance_sum: float = 0.0
    chroma_sum: float = 0.0
    within: dict[int, int] = field(default_factory=_zeros_per_threshold)
    photos: int = 0
    worse_photos: int = 0

    def add_distances(self, distance: torch.Tensor, pred_ab: ArrayLike, true_ab: ArrayLike
                      ) -> None:
        """Add one image: its per-pixel :func:`ab_distance` (H*W,) and both ab (2, H, W)."""
        gray_distance = _as_ab_tensor(true_ab).square().sum(0).sqrt().flatten()
        chroma = _as_ab_tensor(pred_ab).square().sum(0).sqrt()
        d = distance.double()
        self.pixels += d.numel()
        self.harmed += int((d - gray_distance.double() >= HARM_MARGIN).sum())
        self.distance_sum += float(d.sum())
        self.chroma_sum += float(chroma.double().sum())
        for t in WITHIN_THRESHOLDS:
            self.within[t] += int((d <= t).sum())
        self.photos += 1
        self.worse_photos += int(float(d.mean()) > float(gray_distance.double().mean()))

    def summary(self) -> dict[str, float]:
        n = max(self.pixels, 1)
        out = {
            "harm": 100.0 * self.harmed / n,
            "worse_than_gray": float(self.worse_photos),
            "photos": float(self.photos),
            "l2_ab": self.distance_sum / n,
        }
        out.update({f"within_{t}": 100.0 * self.within[t] / n for t in WITHIN_THRESHOLDS})
        out["chroma"] = self.chroma_sum / n
        return out


@dataclass
class MetricTotals:
    """Accumulates every metric for one method (the model, or the grayscale baseline)."""

    auc: AucAccumulator = field(default_factory=AucAccumulator)
    psnrs: list[float] = field(default_factory=list)
    colourfulness: list[float] = field(default_factory=list)
    errors: ErrorTotals = field(default_factory=ErrorTotals)

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
        distance = ab_distance(pred_ab, true_ab)
        self.auc.add_distances(distance, true_ab, classes)
        self.errors.add_distances(distance, pred_ab, true_ab)
        self.psnrs.append(psnr(pred_rgb, true_rgb))
        self.colourfulness.append(colourfulness(pred_rgb))

    def summary(self) -> dict[str, float]:
        """Every metric: ``auc_raw``, ``auc_rebalanced``, ``psnr`` (dB, mean over photos),
        ``colourfulness`` (mean over photos), then :meth:`ErrorTotals.summary`: ``harm`` (% of
        pixels), ``worse_than_gray`` (photos) of ``photos``, ``l2_ab``, ``within_2``/``_5``/``_10``
        (% of pixels) and ``chroma`` (mean output |ab|)."""
        finite = [p for p in self.psnrs if math.isfinite(p)]
        return {
            "auc_raw": self.auc.raw,
            "auc_rebalanced": self.auc.rebalanced,
            "psnr": float(np.mean(finite)) if finite else math.inf,
            "colourfulness": float(np.mean(self.colourfulness)) if self.colourfulness else 0.0,
            **self.errors.summary(),
        }


@dataclass
class HintedTotals(MetricTotals):
    """:class:`MetricTotals` of a run with hints, plus the |Δab| between each hint pixel's hint
    colour and the output there (``hint_obedience`` in the summary: their median)."""

    hint_errors: list[np.ndarray] = field(default_factory=list)

    def add_hint_errors(self, errors: np.ndarray) -> None:
        self.hint_errors.append(np.asarray(errors, np.float64).reshape(-1))

    def summary(self) -> dict[str, float]:
        errors = np.concatenate(self.hint_errors) if self.hint_errors else np.zeros(0)
        return {
            **super().summary(),
            "hint_obedience": float(np.median(errors)) if errors.size else math.nan,
            "hint_pixels": float(errors.size),
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
    """One photo's metrics: the model (0 hints), gray, and per hint count (keys ``"10"``, ...)."""

    name: str
    model: dict[str, float]
    gray: dict[str, float]
    truth_colourfulness: float
    truth_chroma: float = 0.0
    hinted: dict[str, dict[str, float]] = field(default_factory=dict)


#: Rows of :meth:`EvaluationReport.format_table`: label, summary key, format.
TABLE_ROWS = (
    ("AuC raw (%)", "auc_raw", "{:.2f}"),
    ("AuC class-rebalanced (%)", "auc_rebalanced", "{:.2f}"),
    ("PSNR RGB (dB)", "psnr", "{:.2f}"),
    ("colourfulness", "colourfulness", "{:.1f}"),
    ("harm: pixels >=10 worse than gray (%)", "harm", "{:.1f}"),
    ("photos worse than gray", "worse_than_gray", None),
    ("mean L2 ab distance", "l2_ab", "{:.2f}"),
    *((f"pixels within {t} ab (%)", f"within_{t}", "{:.1f}") for t in WITHIN_THRESHOLDS),
    ("mean chroma |ab|", "chroma", "{:.2f}"),
)
_LABEL_WIDTH = 38
_COLUMN_WIDTH = 10


@dataclass
class EvaluationReport:
    """Metrics of a model and of the grayscale baseline (ab = 0) over a folder of photos, and of
    the model given N sampled hints for each N of ``hint_counts`` (``hinted``, keys ``"N"``)."""

    folder: str
    model_name: str
    temperature: float
    saturation: float
    count: int
    model: dict[str, float]
    gray: dict[str, float]
    truth_colourfulness: float
    images: list[ImageResult]
    truth_chroma: float = 0.0
    hint_counts: list[int] = field(default_factory=list)
    seed: int = 0
    hinted: dict[str, dict[str, float]] = field(default_factory=dict)

    def columns(self) -> list[tuple[str, dict[str, float]]]:
        """(header, summary) of each column of the table: gray, the model, each hint count."""
        cols = [("gray", self.gray), ("model", self.model)]
        cols += [(f"{n} hint{'s' if n != 1 else ''}", self.hinted[str(n)])
                 for n in self.hint_counts]
        return cols

    def format_table(self) -> str:
        """A plain-text table: one row per metric, one column per method (gray, the model with 0
        hints, the model with each hint count)."""
        head = (f"{self.count} photos from {self.folder}; model {self.model_name}, "
                f"T={self.temperature:g}, saturation={self.saturation:g}")
        if self.hint_counts:
            head += (f"; hints: {HINT_PATCH_SIZE}x{HINT_PATCH_SIZE} px patches of the true mean "
                     f"colour at random positions (seed {self.seed})")
        cols = self.columns()
        lines = [head, f"{'metric':<{_LABEL_WIDTH}}"
                 + "".join(f"{name:>{_COLUMN_WIDTH}}" for name, _ in cols)]
        for label, key, fmt in TABLE_ROWS:
            cells = [format_cell(summary, key, fmt) for _, summary in cols]
            lines.append(_row(label, cells))
            if key == "psnr":
                lines.append(_row("PSNR vs gray (dB)", ["-"] + [
                    f"{summary['psnr'] - self.gray['psnr']:+.2f}" for _, summary in cols[1:]]))
                if self.hint_counts:
                    lines.append(_row("PSNR vs 0 hints (dB)", ["-", "-"] + [
                        f"{summary['psnr'] - self.model['psnr']:+.2f}"
                        for _, summary in cols[2:]]))
        if self.hint_counts:
            lines.append(_row("hint obedience: median |Δab|", ["-", "-"] + [
                f"{summary['hint_obedience']:.2f}" for _, summary in cols[2:]]))
        lines.append(_row("colourfulness of originals", [f"{self.truth_colourfulness:.1f}"]))
        lines.append(_row("mean chroma |ab| of originals", [f"{self.truth_chroma:.2f}"]))
        return "\n".join(lines)


def format_cell(summary: dict[str, float], key: str, fmt: str | None) -> str:
    """One table cell: ``fmt`` of ``summary[key]``, or "n/photos" for a count (``fmt`` None)."""
    if fmt is None:  # a count of photos
        return f"{int(summary[key])}/{int(summary['photos'])}"
    return fmt.format(summary[key])


def _row(label: str, cells: Sequence[str]) -> str:
    return f"{label:<{_LABEL_WIDTH}}" + "".join(f"{c:>{_COLUMN_WIDTH}}" for c in cells)


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


def thumbnail(rgb: np.ndarray, height: int) -> np.ndarray:
    """uint8 (height, w, 3) of sRGB floats (H, W, 3) in [0, 1], aspect kept."""
    from PIL import Image

    h, w = rgb.shape[:2]
    img = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    return np.asarray(img.resize((max(1, round(w * height / h)), height), Image.LANCZOS))


#: Width of the label column of a contact sheet with row labels.
LABEL_WIDTH = 110


def write_contact_sheet(
    path: str | os.PathLike[str],
    rows: Sequence[Sequence[np.ndarray]],
    row_height: int = CONTACT_ROW_HEIGHT,
    overwrite: bool = False,
    labels: Sequence[str] | None = None,
) -> None:
    """A PNG (or, for a ``.jpg`` path, a JPEG) with one row of images per entry of ``rows`` (sRGB
    floats in [0, 1]), e.g. gray | ours | original per photo; ``labels`` are written at the left
    of the rows."""
    from PIL import Image, ImageDraw

    from chromatize.errors import OutputError

    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists; not replacing it (allow «overwrite=True»)")
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {path.parent} does not exist")
    gap = 4
    margin = LABEL_WIDTH if labels else 0
    strips = []
    for images in rows:
        pad = np.full((row_height, gap, 3), 255, np.uint8)
        parts: list[np.ndarray] = []
        for image in images:
            parts += ([pad] if parts else []) + [thumbnail(image, row_height)]
        strips.append(np.concatenate(parts, axis=1))
    width = margin + max(s.shape[1] for s in strips)
    sheet = np.full((len(strips) * (row_height + gap) - gap, width, 3), 255, np.uint8)
    for i, s in enumerate(strips):
        y = i * (row_height + gap)
        sheet[y : y + row_height, margin : margin + s.shape[1]] = s
    picture = Image.fromarray(sheet)
    if labels:
        draw = ImageDraw.Draw(picture)
        for i, label in enumerate(labels):
            draw.text((6, i * (row_height + gap) + row_height // 2 - 6), label, fill=(0, 0, 0))
    jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    try:
        with replacing(path, ".sheet.tmp") as tmp:
            picture.save(tmp, format="JPEG" if jpeg else "PNG", **({"quality": 88} if jpeg else {}))
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc}") from None


def hint_seed(seed: int, index: int) -> int:
    """The seed of the hint positions of the ``index``-th photo (by name) of a run with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def hint_errors(hints: Any, pred_ab: torch.Tensor) -> np.ndarray:
    """|Δab| (n,) between the hints' colours and the output ab (2, H, W) at each pixel they cover
    (the last hint where patches overlap, as the pipeline paints them)."""
    height, width = pred_ab.shape[-2:]
    indices, ab = hints.full_resolution(int(width), int(height))
    got = pred_ab.reshape(2, -1)[:, torch.from_numpy(indices)]
    return (got - ab).square().sum(0).sqrt().numpy()


def _checked_hint_counts(hints: Sequence[int]) -> list[int]:
    from chromatize.errors import ChromatizeError

    counts: list[int] = []
    for n in hints:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ChromatizeError(f"«hints»: hint counts are whole numbers >= 1, got {n!r}")
        if int(n) not in counts:
            counts.append(int(n))
    return counts


def refuse_hints_unless_accepted(options: ColorizeOptions, model: torch.nn.Module | None) -> None:
    """Raise :class:`~chromatize.models.contract.HintsNotSupportedError` when the model to score
    (``model``, or the one ``options`` name, read from its class: nothing is loaded) has no hint
    inputs."""
    from chromatize.models.contract import HintsNotSupportedError
    from chromatize.registry import get_spec

    if model is not None:
        accepts, name = bool(getattr(model, "accepts_hints", False)), str(
            getattr(model, "name", type(model).__name__))
    else:
        spec = get_spec(options.model)
        accepts, name = bool(spec.accepts_hints), spec.name
    if not accepts:
        raise HintsNotSupportedError(
            f"the {name} model does not accept colour hints, so it cannot be scored with "
            "«hints»; score it without «hints», or choose a model that accepts them with «model» "
            "(e.g. mobile)")


def evaluate_folder(
    folder: str | os.PathLike[str],
    options: ColorizeOptions | None = None,
    *,
    model: torch.nn.Module | None = None,
    limit: int | None = None,
    contact_sheet: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
    hints: Sequence[int] = (),
    seed: int = 0,
) -> EvaluationReport:
    """Turn each colour photo of ``folder`` to gray, colorize it, compare with the original.

    ``options`` choose the model and every setting, as for users; ``model`` is a network to
    score instead of ``options.model`` (e.g. a training checkpoint; it follows the model
    contract). The gray input is the photo's own CIE L rendered as sRGB gray (float, no
    rounding), so the output has exactly the original's lightness and only colour is judged. The
    grayscale baseline (ab = 0) is scored beside the model. ``progress(done, total, name)`` is
    called per photo.

    ``hints``: hint counts N (>= 1); for each, every photo is colorized again with N hint patches
    of :data:`HINT_PATCH_SIZE` pixels (:func:`chromatize.hints.sample_hints`, positions seeded by
    :func:`hint_seed` of ``seed`` and the photo's index) through ``Colorizer.colorize(...,
    hints=...)``. A model without hint inputs is refused before any photo is read.
    """
    files = list_photos(folder, limit)
    return evaluate_photos(files, options, model=model, source=str(folder),
                           contact_sheet=contact_sheet, overwrite=overwrite, progress=progress,
                           hints=hints, seed=seed)


def evaluate_photos(
    files: Sequence[str | os.PathLike[str]],
    options: ColorizeOptions | None = None,
    *,
    model: torch.nn.Module | None = None,
    source: str = "",
    contact_sheet: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
    hints: Sequence[int] = (),
    seed: int = 0,
    on_photo: Callable[[Path, tuple[np.ndarray, np.ndarray, np.ndarray]], None] | None = None,
) -> EvaluationReport:
    """:func:`evaluate_folder` over a list of photo files (``source`` names them in the report);
    training uses it to score its choices on the held-out split. ``on_photo(path, (gray, output,
    original))`` sees each photo's images (sRGB float (H, W, 3) in [0, 1])."""
    from chromatize.pipeline import Colorizer

    files = [Path(f) for f in files]
    options = options if options is not None else ColorizeOptions()
    counts = _checked_hint_counts(hints)
    if counts:
        refuse_hints_unless_accepted(options, model)
    if model is not None:
        colorizer = Colorizer(model, device=options.device, options=options)
    else:
        colorizer = Colorizer.from_options(options)
    if counts:
        colorizer.refuse_hints_unless_accepted()
    totals = _FolderTotals(counts)
    results: list[ImageResult] = []
    sheet_rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for i, f in enumerate(files):
        result, row = _score_photo(f, colorizer, options, totals, hint_seed(seed, i))
        results.append(result)
        if contact_sheet is not None:
            sheet_rows.append(row)
        if on_photo is not None:
            on_photo(f, row)
        if progress is not None:
            progress(i + 1, len(files), f.name)
    if contact_sheet is not None:
        write_contact_sheet(contact_sheet, sheet_rows, overwrite=overwrite)
    return EvaluationReport(
        folder=source,
        model_name=colorizer.model_name,
        temperature=colorizer.temperature(options),
        saturation=options.saturation,
        count=len(files),
        model=totals.ours.summary(),
        gray=totals.gray.summary(),
        truth_colourfulness=float(np.mean([r.truth_colourfulness for r in results])),
        images=results,
        truth_chroma=totals.truth_chroma_sum / max(totals.truth_pixels, 1),
        hint_counts=counts,
        seed=int(seed),
        hinted={str(n): t.summary() for n, t in totals.hinted.items()},
    )


@dataclass
class _FolderTotals:
    """What :func:`evaluate_folder` accumulates: per method, and the originals' chroma."""

    counts: list[int]
    ours: MetricTotals = field(default_factory=MetricTotals)
    gray: MetricTotals = field(default_factory=MetricTotals)
    hinted: dict[int, HintedTotals] = field(default_factory=dict)
    truth_chroma_sum: float = 0.0
    truth_pixels: int = 0

    def __post_init__(self) -> None:
        self.hinted = {n: HintedTotals() for n in self.counts}


@dataclass
class _Truth:
    """One photo as evaluation needs it: the original, its true ab and classes, the gray input."""

    rgb: np.ndarray  # (H, W, 3) float32 sRGB in [0, 1]
    ab: torch.Tensor  # (2, H, W)
    classes: torch.Tensor  # (H*W,)
    gray: np.ndarray  # (H, W) float32 sRGB gray with the original's lightness

    def add(self, totals: Sequence[MetricTotals], out: np.ndarray,
            pred_ab: torch.Tensor) -> None:
        for acc in totals:
            acc.add(out, pred_ab, self.rgb, self.ab, self.classes)


def _read_truth(path: Path) -> _Truth:
    from chromatize.color import lightness_to_gray, rgb_to_lab
    from chromatize.imagearray import color_float, inspect_image
    from chromatize.imageio import read_image

    pixels = read_image(path).pixels
    layout = inspect_image(pixels, str(path))
    rgb_t = color_float(pixels, layout).contiguous()  # (3, H, W) float32 sRGB in [0, 1]
    lab = rgb_to_lab(rgb_t)
    true_ab = lab[1:]
    gray_in = lightness_to_gray(lab[0]).clamp(0, 1).numpy().astype(np.float32)
    return _Truth(rgb_t.permute(1, 2, 0).numpy(), true_ab, true_classes_chunked(true_ab), gray_in)


def _colorized(colorizer: Any, truth: _Truth, options: ColorizeOptions,
               hints: Any = None) -> tuple[np.ndarray, torch.Tensor]:
    """The colorized gray input (H, W, 3) float32 and its ab (2, H, W)."""
    from chromatize.color import rgb_to_lab

    out = np.asarray(colorizer.colorize(truth.gray, options, hints=hints), np.float32)[..., :3]
    return out, rgb_to_lab(torch.from_numpy(out).permute(2, 0, 1))[1:]


def _score_photo(path: Path, colorizer: Any, options: ColorizeOptions, totals: _FolderTotals,
                 seed: int) -> tuple[ImageResult, tuple[np.ndarray, ...]]:
    """Score one photo (adding to the running totals); its result and contact-sheet row."""
    from chromatize.hints import sample_hints

    truth = _read_truth(path)
    out, pred_ab = _colorized(colorizer, truth, options)
    gray3 = np.repeat(truth.gray[..., None], 3, axis=2)
    one_ours, one_gray = MetricTotals(), MetricTotals()
    truth.add((totals.ours, one_ours), out, pred_ab)
    truth.add((totals.gray, one_gray), gray3, torch.zeros_like(truth.ab))
    hinted: dict[str, dict[str, float]] = {}
    for n, running in totals.hinted.items():
        hints = sample_hints(truth.rgb, n, seed, size=HINT_PATCH_SIZE)
        hinted_out, hinted_ab = _colorized(colorizer, truth, options, hints)
        one = HintedTotals()
        truth.add((running, one), hinted_out, hinted_ab)
        errors = hint_errors(hints, hinted_ab)
        for acc in (running, one):
            acc.add_hint_errors(errors)
        hinted[str(n)] = one.summary()
    chroma = truth.ab.square().sum(0).sqrt()
    totals.truth_chroma_sum += float(chroma.double().sum())
    totals.truth_pixels += chroma.numel()
    result = ImageResult(path.name, one_ours.summary(), one_gray.summary(),
                         colourfulness(truth.rgb), float(chroma.double().mean()), hinted)
    return result, (gray3, out, truth.rgb)
