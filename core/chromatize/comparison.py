"""``chromatize eval --models``: several models scored on one folder, side by side in one table.

Each model is scored by :func:`chromatize.evaluation.evaluate_photos` exactly as ``chromatize eval
--model NAME`` scores it (its own default temperature and render size unless the options set
them), beside the grayscale baseline. Models whose weights are not here are listed with how to
get them instead of failing the run. With an :class:`~chromatize.semantic.ImageNetClassifier`
the table also has the ECCV 2016 semantic-interpretability test: the classifier's top-1 accuracy
on the colorized photos whose names give an ImageNet class, against the same photos in gray and
in their true colours. The contact sheet has one row per design (gray, each model, the
originals) and one column per photo.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chromatize.errors import ChromatizeError
from chromatize.evaluation import (
    TABLE_ROWS,
    evaluate_photos,
    format_cell,
    list_photos,
    write_contact_sheet,
)
from chromatize.failures import FrontEnd, describe_failure
from chromatize.models.contract import OUTPUT_BINS, output_kind
from chromatize.options import ColorizeOptions
from chromatize.registry import get_spec
from chromatize.semantic import ImageNetClassifier

#: ``--models all``: every registered model, the baselines first, then the product models.
ALL = "all"
#: Rows of the contact sheet are this tall (pixels).
SHEET_ROW_HEIGHT = 128


@dataclass
class ModelColumn:
    """One scored model: its metrics over the folder and the settings it was scored with."""

    name: str
    #: the annealed-mean temperature, or None for a model that predicts ab (no distribution)
    temperature: float | None
    summary: dict[str, float]
    top1: float | None = None


@dataclass
class ComparisonReport:
    folder: str
    count: int
    gray: dict[str, float]
    models: list[ModelColumn]
    #: (model, why it was not scored and how to make it available)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: photos with an ImageNet class (the semantic test), and top-1 (%) in gray and in colour
    #: the originals' colourfulness and mean chroma, what the models' columns compare with
    truth_colourfulness: float = 0.0
    truth_chroma: float = 0.0
    semantic_photos: int = 0
    top1_gray: float | None = None
    top1_originals: float | None = None

    def format_table(self) -> str:
        head = f"{self.count} photos from {self.folder}; each model at its own default settings"
        names = ["gray", *(m.name for m in self.models)]
        summaries = [self.gray, *(m.summary for m in self.models)]
        width = max(10, *(len(n) + 2 for n in names))
        lines = [head, f"{'metric':<{_LABEL}}" + "".join(f"{n:>{width}}" for n in names)]

        def row(label: str, cells: Sequence[str]) -> str:
            return f"{label:<{_LABEL}}" + "".join(f"{c:>{width}}" for c in cells)

        for label, key, fmt in TABLE_ROWS:
            lines.append(row(label, [format_cell(s, key, fmt) for s in summaries]))
            if key == "psnr":
                lines.append(row("PSNR vs gray (dB)", ["-"] + [
                    f"{s['psnr'] - self.gray['psnr']:+.2f}" for s in summaries[1:]]))
        lines.append(row("colourfulness of originals", [f"{self.truth_colourfulness:.1f}"]))
        lines.append(row("mean chroma |ab| of originals", [f"{self.truth_chroma:.2f}"]))
        lines.append(row("temperature", ["-"] + [
            "-" if m.temperature is None else f"{m.temperature:g}" for m in self.models]))
        if self.semantic_photos:
            lines.append(row(f"ImageNet top-1 (%), {self.semantic_photos} photos",
                             [f"{self.top1_gray:.1f}"] + [f"{m.top1:.1f}" for m in self.models]))
            lines.append(row("ImageNet top-1 of originals (%)", [f"{self.top1_originals:.1f}"]))
        for name, why in self.skipped:
            lines.append(f"not scored: {name}: {why}")
        return "\n".join(lines)


_LABEL = 38


def model_names(requested: Sequence[str]) -> list[str]:
    """The models ``--models`` names: ``all`` = every registered one (baselines first)."""
    from chromatize.registry import list_models

    if list(requested) == [ALL]:
        specs = list_models(baselines=True)
        return [s.name for s in specs if s.baseline] + [s.name for s in specs if not s.baseline]
    return [get_spec(name).name for name in requested]


def _unavailable(name: str, options: ColorizeOptions, front_end: FrontEnd) -> str | None:
    """Why model ``name`` cannot be scored here (with the way to fix it), or None."""
    from chromatize.errors import ModelUnavailableError
    from chromatize.weights import resolve_weights

    try:
        resolve_weights(get_spec(name), options.weights if options.model == name else None,
                        allow_download=options.allow_download)
    except ModelUnavailableError as exc:
        return describe_failure(exc, front_end).message
    return None


class _Semantic:
    """Top-1 counts per design over the photos whose names give an ImageNet class."""

    def __init__(self, classifier: ImageNetClassifier) -> None:
        self.classifier = classifier
        self.correct: dict[str, int] = {}
        self.photos: dict[str, int] = {}

    def add(self, design: str, path: Path, rgb: np.ndarray) -> None:
        truth = self.classifier.true_class(path)
        if truth is None:
            return
        self.photos[design] = self.photos.get(design, 0) + 1
        hit = int(self.classifier.top1(rgb) == truth)
        self.correct[design] = self.correct.get(design, 0) + hit

    def accuracy(self, design: str) -> float:
        return 100.0 * self.correct.get(design, 0) / max(self.photos.get(design, 0), 1)


def compare_models(
    folder: str | os.PathLike[str],
    models: Sequence[str],
    options: ColorizeOptions | None = None,
    *,
    limit: int | None = None,
    classifier: ImageNetClassifier | None = None,
    contact_sheet: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: Callable[[str, int, int, str], None] | None = None,
    front_end: FrontEnd = "python",
) -> ComparisonReport:
    """Score each of ``models`` (names, or ``["all"]``) on the photos of ``folder``.

    ``options`` give the settings every model is scored with; unset temperature and render size
    mean each model's own defaults. ``progress(model, done, total, photo)`` is called per photo;
    ``front_end`` words the reasons models were skipped.
    """
    options = options if options is not None else ColorizeOptions()
    names = model_names(models)
    files = list_photos(folder, limit)
    if contact_sheet is not None and Path(contact_sheet).exists() and not overwrite:
        from chromatize.errors import OutputError

        raise OutputError(f"{contact_sheet} already exists; not replacing it "
                          "(allow «overwrite=True»)")
    semantic = _Semantic(classifier) if classifier is not None else None
    report = ComparisonReport(str(folder), len(files), {}, [])
    sheet: dict[str, list[np.ndarray]] = {}
    for name in names:
        why = _unavailable(name, options, front_end)
        if why is not None:
            report.skipped.append((name, why))
            continue
        first = not report.models

        def seen(path: Path, images: tuple[np.ndarray, np.ndarray, np.ndarray],
                 name: str = name, first: bool = first) -> None:
            gray, out, original = images
            if contact_sheet is not None:
                if first:
                    sheet.setdefault("gray", []).append(gray)
                    sheet.setdefault("original", []).append(original)
                sheet.setdefault(name, []).append(out)
            if semantic is not None:
                if first:
                    semantic.add("gray", path, gray)
                    semantic.add("original", path, original)
                semantic.add(name, path, out)

        scored = evaluate_photos(
            files, options.replace(model=name, weights=options.weights if options.model == name
                                   else None),
            source=str(folder), on_photo=seen,
            progress=(None if progress is None else
                      lambda done, total, photo, name=name: progress(name, done, total, photo)))
        if first:
            report.gray = scored.gray
            report.truth_colourfulness = scored.truth_colourfulness
            report.truth_chroma = scored.truth_chroma
        distribution = output_kind(get_spec(name).model_type()) == OUTPUT_BINS
        report.models.append(ModelColumn(name, scored.temperature if distribution else None,
                                         scored.model,
                                         semantic.accuracy(name) if semantic else None))
    if not report.models:
        raise ChromatizeError("none of the models could be scored:\n" + "\n".join(
            f"  {name}: {why}" for name, why in report.skipped))
    if semantic is not None and semantic.photos.get("original"):
        report.semantic_photos = semantic.photos["original"]
        report.top1_gray = semantic.accuracy("gray")
        report.top1_originals = semantic.accuracy("original")
    if contact_sheet is not None:
        order = ["gray", *(m.name for m in report.models), "original"]
        write_contact_sheet(contact_sheet, [sheet[k] for k in order], SHEET_ROW_HEIGHT,
                            overwrite=overwrite, labels=order)
    return report
