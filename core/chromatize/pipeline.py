"""The colorization pipeline: any user image in, a colorized image with the same lightness out.

:class:`Colorizer` runs three public stages, and ``colorize()`` is their composition:

- :meth:`Colorizer.prepare` (image -> :class:`Prepared`): full-resolution lightness, alpha,
  layout and the render shape: the expensive per-image work, done once;
- :meth:`Colorizer.predict` (:class:`Prepared` [+ hints] -> :class:`Prediction`): the model's
  low-resolution bin logits and their decoded ab;
- :meth:`Colorizer.finish` (:class:`Prepared` + :class:`Prediction` -> image): full-resolution
  colour joined with the original lightness, in the caller's dtype.

Later work plugs in between them (hints enter ``predict``, temporal consistency works on
``Prediction``s, batch back ends ship ``Prepared`` and options across processes: both pickle).
Settings come as one :class:`chromatize.options.ColorizeOptions`.

Steps inside the stages (for one image of H x W pixels):

1. **Lightness.** L of the input at full resolution (float32, computed in row strips).
2. **Render.** L is resized (antialiased) to the *render size*: about ``render_size`` squared
   pixels (default: the model's ``default_input_size``, the scale it was trained at) with the
   image's aspect ratio (capped at :data:`MAX_RENDER_ASPECT`), both sides rounded to multiples of
   the model's ``stride``; e.g. 312x208 for a 3:2 photo and ECCV16. Keeping the aspect ratio
   measurably helped a trained model (+0.3 AuC in the team's pilot run) compared with squashing to
   a square as the original demo does, and keeping the area keeps the model's cost and the scale
   of objects close to what it was trained on.
3. **Model.** Bin logits at 1/4 of the render size, under ``torch.inference_mode`` (float16
   autocast on CUDA), decoded with :func:`chromatize.bins.decode` (annealed mean at the model's
   temperature by default) and scaled by ``saturation``.
4. **Upsampling.** ab is brought to full size guided by the full-resolution L
   (:mod:`chromatize.upsample`, fast guided filter by default, bilinear for comparison).
5. **Recombination.** The *original* full-resolution L is joined with the upsampled ab, the
   optional mask blends with the input's own ab, out-of-gamut colours are reduced in chroma at
   constant L (:func:`chromatize.color.gamut_map_chroma`), and the result is written in the
   caller's dtype; alpha is copied untouched.

Stages 1, 4 and 5 run in row strips of about :data:`STRIP_PIXELS` pixels, several strips at a time
on a small thread pool with single-threaded torch ops (see :func:`_run_strips` for why).

Memory: besides the caller's input and the returned output, a job holds L at full resolution
(4 bytes per pixel) plus scratch for the strips in flight (about 80 MB each). Measured peak RSS with
ECCV16 on CPU, including ~350 MB for Python, torch and the network: 817 MB for a 24-megapixel
8-bit photo, 1.7 GB for 100 megapixels (``benchmarks/RESULTS.md``). Images above
:data:`MAX_PIXELS` (160 megapixels) are refused with :class:`~chromatize.errors.InputImageError`;
the limit can be changed per :class:`Colorizer`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from chromatize import bins, color, finish_kernel, imagearray
from chromatize.device import resolve_device
from chromatize.engine import OnnxEngine, hint_engine, select_engine
from chromatize.errors import ChromatizeError, InputImageError
from chromatize.hint_propagation import hint_pull
from chromatize.hints import ColourSuggestion, Hints, refuse_hints, suggest_colours
from chromatize.imagearray import ImageLayout
from chromatize.models.contract import (
    OUTPUT_AB,
    check_hints,
    check_model,
    decode_log_prior,
    output_kind,
)
from chromatize.options import DEFAULT_MODEL, MAX_RENDER_SIZE, ColorizeOptions, setting_token
from chromatize.progress import CancelCallback, Progress, ProgressCallback
from chromatize.upsample import ABUpsampler, GuideStatistics, guide_key, guide_statistics

__all__ = [
    "DEFAULT_MODEL", "MAX_PIXELS", "Colorizer", "Prediction", "Prepared", "clear_model_cache",
    "colorize", "render_shape",
]

#: Images with more pixels than this are refused (override with ``Colorizer(max_pixels=...)``).
MAX_PIXELS = 160_000_000
#: Pixels per strip in the full-resolution stages (bounds scratch memory, ~100 MB per strip).
STRIP_PIXELS = 1 << 20
#: The render's long side is at most this many times its short side (extreme panoramas are
#: squeezed rather than rendered huge).
MAX_RENDER_ASPECT = 4.0
#: At most this many strips are processed at once (one per intra-op thread torch would use).
MAX_STRIP_WORKERS = 8

#: Settings a colorize call may override by keyword (the rest choose the Colorizer).
CALL_SETTINGS = ("temperature", "saturation", "render_size", "upsample", "decode", "batch_size")

# Progress budget of the stages of one image (fractions of its share).
_P_LIGHTNESS = 0.1
_P_MODEL = 0.3

_HINT_RUNNER_LOCK = threading.Lock()

_MODEL_CACHE: dict[tuple[str, str | None, str], nn.Module] = {}
_MODEL_CACHE_LOCK = threading.Lock()


def _cached_model(
    name: str, weights: str | os.PathLike[str] | None, device: torch.device, allow_download: bool
) -> nn.Module:
    """One loaded model per (name, weights file, device) per process."""
    from chromatize.weights import load_model

    weights_key = None if weights is None else str(Path(weights).expanduser().resolve())
    key = (name, weights_key, str(device))
    with _MODEL_CACHE_LOCK:
        model = _MODEL_CACHE.get(key)
        if model is None:
            model = load_model(
                name, weights=weights_key, device=device, allow_download=allow_download
            )
            model.eval()
            _MODEL_CACHE[key] = model
        return model


def clear_model_cache() -> None:
    """Forget all cached models (frees their memory once no Colorizer holds them)."""
    with _MODEL_CACHE_LOCK:
        _MODEL_CACHE.clear()


def render_shape(
    height: int, width: int, render_size: int, stride: int, max_aspect: float = MAX_RENDER_ASPECT
) -> tuple[int, int]:
    """Model input size (h, w) for an H x W image: about ``render_size**2`` pixels with the image's
    aspect ratio (capped at ``max_aspect``), both sides multiples of ``stride`` (rounded to the
    nearest, at least one stride)."""

    def snap(v: float) -> int:
        return max(stride, int(round(v / stride)) * stride)

    short, long = min(height, width), max(height, width)
    aspect = min(long / short, max_aspect)
    s, lg = snap(render_size / math.sqrt(aspect)), snap(render_size * math.sqrt(aspect))
    return (s, lg) if height <= width else (lg, s)


@dataclass
class Prepared:
    """One image after :meth:`Colorizer.prepare`: everything at full resolution that does not
    depend on the model's answer, computed once and reusable (e.g. while only hints change).

    Picklable (numpy arrays and CPU tensors), so batch back ends can ship it to another process.
    """

    #: the caller's array, unchanged (alpha and, with a mask, the input's own colour come from it)
    image: np.ndarray
    layout: ImageLayout
    #: L at full resolution, (H, W) float32 on the CPU
    lightness: torch.Tensor
    #: the model's input size (h, w) for this image
    render: tuple[int, int]
    #: (H, W) float32 in [0, 1] or None: 1 = colorize, 0 = keep the input as it is
    mask: np.ndarray | None = None
    #: the guided filter's statistics of L (:class:`chromatize.upsample.GuideStatistics`) by
    #: (:func:`~chromatize.upsample.guide_key`, device): made by the first ``finish`` and
    #: reused by later ones (they depend on L alone); not pickled
    guides: dict[tuple[Any, ...], GuideStatistics] = field(
        default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["guides"] = {}  # a cache: cheap to rebuild, and it may live on a GPU
        return state

    def guide(self, ab_shape: tuple[int, int], device: torch.device) -> GuideStatistics:
        """The guided filter's statistics of this image's L for ab of ``ab_shape`` on
        ``device`` (computed on first use, then reused)."""
        key = (*guide_key(ab_shape, tuple(self.lightness.shape)), str(device))
        stats = self.guides.get(key)
        if stats is None:
            stats = guide_statistics(self.lightness.to(device), key[:3])
            self.guides[key] = stats
        return stats


@dataclass
class Prediction:
    """The model's answer for one :class:`Prepared` image, at 1/4 of the render size."""

    #: raw bin logits (313, h/4, w/4), float32; multiply by ``logit_scale`` for log-probabilities;
    #: None for a model that predicts ab directly (``output_kind`` "ab": the baselines)
    logits: torch.Tensor | None
    logit_scale: float
    #: decoded ab (2, h/4, w/4) after the temperature, decoding and saturation of the options
    ab: torch.Tensor
    #: the model's decoding log prior (313,), or None (see :func:`chromatize.bins.probabilities`)
    log_prior: torch.Tensor | None = None
    #: what the hints added to the decoded ab around them (2, h/4, w/4; already in ``ab``), or
    #: None without hints (:mod:`chromatize.hint_propagation`)
    hint_pull: torch.Tensor | None = None

    def probabilities(self, temperature: float = 1.0) -> torch.Tensor:
        """The 313-bin distribution (313, h/4, w/4) at ``temperature`` (1 = the model's own;
        annealed as the decoding is, relative to :attr:`log_prior`)."""
        if self.logits is None:
            raise ChromatizeError(
                "this model predicts one colour per pixel, not a distribution of colours, so it "
                "has no colour suggestions or temporal consistency; choose a model such as mobile")
        return bins.probabilities(self.logits[None], temperature, self.logit_scale,
                                  self.log_prior)[0]


class Colorizer:
    """Colorize images with one model on one device (model loaded once, reused for every call).

    ``model`` is a registered name (``"mobile"``, ``"eccv16"``) or an ``nn.Module`` following
    :mod:`chromatize.models.contract`. A module passed in is used as is: it is put in eval mode and,
    if ``device`` is not ``"auto"``, moved there (in place). ``weights`` is an explicit weights
    file for a named model; ``allow_download`` lets a named model whose weights are missing be
    downloaded. ``options`` are the settings calls use unless they pass their own; its model,
    weights, device and download permission are ignored here (use :meth:`from_options`).
    """

    def __init__(
        self,
        model: str | nn.Module = DEFAULT_MODEL,
        device: str | torch.device = "auto",
        weights: str | os.PathLike[str] | None = None,
        allow_download: bool = False,
        *,
        max_pixels: int = MAX_PIXELS,
        options: ColorizeOptions | None = None,
        engine: str = "auto",
    ) -> None:
        registered = isinstance(model, str)
        if isinstance(model, nn.Module):
            self._use_module(model, device, weights)
        elif isinstance(model, str):
            from chromatize.registry import get_spec

            spec = get_spec(model)
            self.device = resolve_device(device)
            self.model = _cached_model(spec.name, weights, self.device, allow_download)
            self.model_name = spec.name
        else:
            raise ChromatizeError(
                f"model must be a model name or an nn.Module, got {type(model).__name__}"
            )
        check_model(self.model, f"model {self.model_name!r}")
        self.logit_scale = float(self.model.logit_scale)
        self.stride = int(self.model.stride)
        self.default_input_size = int(self.model.default_input_size)
        self.default_temperature = float(self.model.default_temperature)
        self.accepts_hints = bool(self.model.accepts_hints)
        #: what the temperature anneals relative to (None: the paper's plain annealing)
        self.decode_log_prior = decode_log_prior(self.model)
        #: "bins" (313-bin logits) or "ab" (a baseline predicting colour directly)
        self.output_kind = output_kind(self.model)
        self.max_pixels = int(max_pixels)
        self.options = options if options is not None else ColorizeOptions()
        #: Finish 8-bit images on the CPU with the compiled kernel (:mod:`chromatize.finish_kernel`)
        #: when numba is installed; False forces the torch path (comparisons, benchmarks; the
        #: environment variable CHROMATIZE_FAST_FINISH=0 sets False for a whole process).
        self.fast_finish = os.environ.get("CHROMATIZE_FAST_FINISH", "1") != "0"
        if self.fast_finish and self.device.type == "cpu":
            finish_kernel.build_in_background()  # compiled while the engine loads
        #: The ONNX Runtime engine the forward pass runs on, or None for torch
        #: (:mod:`chromatize.engine`; ``engine`` is "auto", "torch" or "onnx").
        self.runner = select_engine(engine, self.model, self.device, self.model_name,
                                    registered=registered)
        #: What runs the network: "torch" or "onnx" (recorded by batch manifests and front ends).
        self.engine = "torch" if self.runner is None else self.runner.name
        self._hint_engine: OnnxEngine | None = None  # the runner's hint graph, made on first use
        self._hint_engine_tried = False
        #: Seconds spent per stage in the last colorize/colorize_batch call ("lightness", "model",
        #: "upsample", "recombine"); for benchmarks and diagnostics.
        self.last_timings: dict[str, float] = {}

    def _use_module(self, model: nn.Module, device: str | torch.device,
                    weights: str | os.PathLike[str] | None) -> None:
        if weights is not None:
            raise ChromatizeError(
                f"{setting_token('weights')} applies to a named model, not to a module instance"
            )
        if device == "auto":
            param = next(model.parameters(), None)
            self.device = param.device if param is not None else torch.device("cpu")
        else:
            self.device = resolve_device(device)
            model.to(self.device)
        self.model = model.eval()
        self.model_name = str(getattr(model, "name", type(model).__name__))

    @classmethod
    def from_options(cls, options: ColorizeOptions, *, max_pixels: int = MAX_PIXELS
                     ) -> Colorizer:
        """The Colorizer ``options`` choose (model, weights, device, download permission), with
        ``options`` as the settings of its calls."""
        return cls(options.model, device=options.device, weights=options.weights,
                   allow_download=options.allow_download, max_pixels=max_pixels, options=options,
                   engine=options.engine)

    def __repr__(self) -> str:
        return (f"Colorizer(model={self.model_name!r}, device={str(self.device)!r}, "
                f"engine={self.engine!r})")

    # ------------------------------------------------------------------ settings

    def call_options(self, options: ColorizeOptions | None = None, **overrides: Any
                     ) -> ColorizeOptions:
        """The settings of one call: ``options`` (default: this Colorizer's), with keyword
        overrides of the per-call settings (``temperature``, ``saturation``, ``render_size``,
        ``upsample``, ``decode``, ``batch_size``) applied and checked."""
        unknown = sorted(set(overrides) - set(CALL_SETTINGS))
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
        base = options if options is not None else self.options
        if not isinstance(base, ColorizeOptions):
            raise ChromatizeError(
                f"options must be a ColorizeOptions, got {type(base).__name__}"
            )
        return base.replace(**overrides) if overrides else base

    def temperature(self, options: ColorizeOptions) -> float:
        """The annealed-mean temperature ``options`` mean for this model."""
        if options.temperature is None:
            return self.default_temperature
        return float(options.temperature)

    def render_size(self, options: ColorizeOptions) -> int:
        """The render size ``options`` mean for this model (checked against its stride)."""
        if options.render_size is None:
            return self.default_input_size
        if not self.stride <= options.render_size <= MAX_RENDER_SIZE:
            raise ChromatizeError(
                f"{setting_token('render_size')} must be between {self.stride} (the model's "
                f"stride) and {MAX_RENDER_SIZE} pixels, got {options.render_size}"
            )
        return int(options.render_size)

    # ------------------------------------------------------------------ whole images

    def colorize(
        self,
        image: np.ndarray,
        options: ColorizeOptions | None = None,
        *,
        mask: np.ndarray | None = None,
        hints: Hints | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCallback | None = None,
        **overrides: Any,
    ) -> np.ndarray:
        """Colorize one image; returns a new (H, W, 3|4) array of the input's dtype.

        ``options`` (default: this Colorizer's) may be adjusted by keyword, e.g.
        ``colorize(image, temperature=0.38)``. ``mask`` (H, W) in [0, 1] blends the colorized
        result (1) with the input (0). ``progress(fraction)`` is called as work advances;
        ``cancel()`` is polled between stages and strips and raises
        :class:`~chromatize.errors.Cancelled` when it returns True. ``hints``
        (:class:`~chromatize.hints.Hints`, image pixel coordinates) guide the model and are
        obeyed at full resolution (see :meth:`finish`); models without hint inputs refuse them
        with :class:`~chromatize.models.contract.HintsNotSupportedError`.
        """
        overrides["batch_size"] = 1
        if hints is not None:
            return self._colorize_with_hints(image, hints, options, mask, progress, cancel,
                                             overrides)
        return self.colorize_batch(
            [image], options, mask=None if mask is None else [mask], progress=progress,
            cancel=cancel, **overrides,
        )[0]

    def colorize_batch(
        self,
        images: Sequence[np.ndarray],
        options: ColorizeOptions | None = None,
        *,
        mask: Sequence[np.ndarray | None] | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCallback | None = None,
        **overrides: Any,
    ) -> list[np.ndarray]:
        """Colorize several images; the model runs on up to ``batch_size`` images at once
        (images whose render sizes match). ``mask`` is None or one mask (or None) per image.
        Results are in input order and equal what :meth:`colorize` gives for each image."""
        images = list(images)
        masks = [None] * len(images) if mask is None else list(mask)
        if len(masks) != len(images):
            raise ChromatizeError(f"got {len(masks)} masks for {len(images)} images")
        if "batch_size" not in overrides and options is None:
            overrides["batch_size"] = 4
        opts = self.call_options(options, **overrides)
        shapes = self._checked_shapes(images, masks, opts)
        tracker = Progress(progress, cancel)
        tracker.check()
        self.last_timings = dict.fromkeys(("lightness", "model", "upsample", "recombine"), 0.0)
        results: list[np.ndarray] = [None] * len(images)  # type: ignore[list-item]
        # Everything but the network runs with single-threaded torch ops (see _run_strips).
        with _intra_op_threads(1) as threads:
            workers = max(1, min(MAX_STRIP_WORKERS, threads))
            done = 0
            for chunk in _chunks_by_shape(shapes, opts.batch_size):
                self._colorize_chunk(images, masks, chunk, opts, _Share(tracker, done,
                                     len(images)), workers, threads, results)  # fmt: skip
                done += len(chunk)
        tracker.report(1.0)
        return results

    def _colorize_with_hints(self, image: np.ndarray, hints: Hints,
                             options: ColorizeOptions | None, mask: np.ndarray | None,
                             progress: ProgressCallback | None, cancel: CancelCallback | None,
                             overrides: dict[str, Any]) -> np.ndarray:
        """:meth:`colorize` with hints: the three public stages, hints checked before any work."""
        self.refuse_hints_unless_accepted()
        opts = self.call_options(options, **overrides)
        hints = self._checked_hints(hints, self._inspect(image, "image"))
        tracker = Progress(progress, cancel)

        def part(start: float, end: float) -> ProgressCallback:
            return lambda done: tracker.report(start + (end - start) * done)

        self.last_timings = dict.fromkeys(("lightness", "model", "upsample", "recombine"), 0.0)
        prepared = self.prepare(image, opts, mask=mask, progress=part(0.0, _P_LIGHTNESS),
                                cancel=cancel)
        prediction = self.predict(prepared, opts, hints=hints)
        out = self.finish(prepared, prediction, opts, hints=hints,
                          progress=part(_P_LIGHTNESS + _P_MODEL, 1.0), cancel=cancel)
        tracker.report(1.0)
        return out

    def refuse_hints_unless_accepted(self) -> None:
        """Raise :class:`~chromatize.models.contract.HintsNotSupportedError` if this model has
        no hint inputs (front ends grey out their hint controls when :attr:`accepts_hints` is
        False)."""
        if not self.accepts_hints:
            refuse_hints(self.model_name)

    @staticmethod
    def _checked_hints(hints: object, layout: ImageLayout) -> Hints:
        if not isinstance(hints, Hints):
            raise ChromatizeError(
                f"hints must be a chromatize.hints.Hints, got {type(hints).__name__}"
            )
        return hints.validate(layout)

    def suggest_colours(self, prepared: Prepared, prediction: Prediction, x: int, y: int,
                        k: int = 5, *, temperature: float = 1.0) -> list[ColourSuggestion]:
        """The model's ``k`` most probable distinct colours at image pixel (x, y), most
        probable first (:func:`chromatize.hints.suggest_colours`)."""
        return suggest_colours(prediction, prepared, x, y, k, temperature=temperature)

    def _checked_shapes(self, images: list[np.ndarray], masks: list[np.ndarray | None],
                        options: ColorizeOptions) -> list[tuple[int, int]]:
        """Check every image and mask first (nothing runs on bad input); their render shapes."""
        size = self.render_size(options)
        self.temperature(options)
        several = len(images) > 1
        shapes = []
        for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
            layout = self._inspect(image, f"image {i}" if several else "image")
            if mask is not None:
                _check_mask(mask, layout, f"mask {i}" if several else "mask")
            shapes.append(render_shape(layout.height, layout.width, size, self.stride))
        return shapes

    def _colorize_chunk(self, images: list[np.ndarray], masks: list[np.ndarray | None],
                        chunk: list[int], options: ColorizeOptions, share: _Share, workers: int,
                        threads: int, results: list[np.ndarray]) -> None:
        """Prepare, predict and finish the images ``chunk`` indexes (one render shape), so that
        only ``batch_size`` full-resolution L planes are alive at once."""
        prepared = [
            self._prepare(images[i], masks[i], options, share.image(n, 0.0, _P_LIGHTNESS),
                          share.tracker, workers)
            for n, i in enumerate(chunk)
        ]
        share.tracker.check()
        with _intra_op_threads(threads):
            predictions = self._predict(prepared, options, None)
        for n, (i, one, answer) in enumerate(zip(chunk, prepared, predictions, strict=True)):
            base = _P_LIGHTNESS + _P_MODEL
            share.image(n, base, base)(0.0)
            results[i] = self._finish(one, answer, options, share.image(n, base, 1.0),
                                      share.tracker, workers)

    # ------------------------------------------------------------------ the public stages

    def prepare(
        self,
        image: np.ndarray,
        options: ColorizeOptions | None = None,
        *,
        mask: np.ndarray | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCallback | None = None,
    ) -> Prepared:
        """Stage 1: check ``image`` (and ``mask``) and compute its full-resolution lightness and
        render shape (which depends on ``options.render_size``)."""
        opts = self.call_options(options)
        layout = self._inspect(image, "image")
        checked = None if mask is None else _check_mask(mask, layout, "mask")
        tracker = Progress(progress, cancel)
        tracker.check()
        with _intra_op_threads(1) as threads:
            prepared = self._prepare(image, checked, opts, tracker.report, tracker,
                                     max(1, min(MAX_STRIP_WORKERS, threads)))
        tracker.report(1.0)
        return prepared

    def predict(
        self,
        prepared: Prepared | Sequence[Prepared],
        options: ColorizeOptions | None = None,
        *,
        hints: Hints | Sequence[Hints | None] | torch.Tensor | None = None,
    ) -> Prediction | list[Prediction]:
        """Stage 2: run the model. ``prepared`` is one :class:`Prepared` (returns one
        :class:`Prediction`) or several of the same render shape (one model call; returns a
        list). ``hints`` is None, :class:`~chromatize.hints.Hints` (one image), one ``Hints`` or
        None per image, or the contract's (N, 3, h, w) hint tensor at the render shape
        (:mod:`chromatize.models.contract`); models without hint inputs refuse them."""
        several = not isinstance(prepared, Prepared)
        items = list(prepared) if several else [prepared]  # type: ignore[arg-type]
        if not items or len({p.render for p in items}) != 1:
            raise ChromatizeError("predict takes one or more prepared images of one render shape")
        if hints is not None and not isinstance(hints, torch.Tensor):
            self.refuse_hints_unless_accepted()
            given = [hints] if isinstance(hints, Hints) else list(hints)
            if len(given) != len(items):
                raise ChromatizeError(f"got hints for {len(given)} images, {len(items)} images")
            hints = torch.cat([
                torch.zeros(1, 3, *one.render) if h is None
                else self._checked_hints(h, one.layout).to_tensor(one)
                for one, h in zip(items, given, strict=True)
            ])
            counts: list[int | None] | None = [0 if h is None else len(h) for h in given]
        else:
            counts = None
        predictions = self._predict(items, self.call_options(options), hints, counts)
        return predictions if several else predictions[0]

    def finish(
        self,
        prepared: Prepared,
        prediction: Prediction,
        options: ColorizeOptions | None = None,
        *,
        hints: Hints | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCallback | None = None,
    ) -> np.ndarray:
        """Stage 3: bring ``prediction``'s colour to full size, join it with the original
        lightness, and return the image in the caller's dtype and layout.

        With ``hints`` (:class:`~chromatize.hints.Hints`) the pixels they cover get the hint's
        ab exactly, with the image's own lightness (then gamut-mapped as every pixel is): a hint
        is obeyed at full resolution however closely the model followed it."""
        opts = self.call_options(options)
        pinned = None
        if hints is not None:
            layout = prepared.layout
            pinned = self._checked_hints(hints, layout).full_resolution(layout.width,
                                                                         layout.height)
        tracker = Progress(progress, cancel)
        tracker.check()
        with _intra_op_threads(1) as threads:
            out = self._finish(prepared, prediction, opts, tracker.report, tracker,
                               max(1, min(MAX_STRIP_WORKERS, threads)), pinned)
        tracker.report(1.0)
        return out

    # ------------------------------------------------------------------ stage internals

    def _inspect(self, image: object, name: str) -> ImageLayout:
        layout = imagearray.inspect_image(image, name)
        if layout.pixels > self.max_pixels:
            raise InputImageError(
                f"{name}: {layout.width}x{layout.height} is {layout.pixels / 1e6:.0f} megapixels; "
                f"chromatize colorizes at most {self.max_pixels / 1e6:.0f} megapixels per image "
                "(memory bound); downscale it first or raise «max_pixels»"
            )
        return layout

    def _timed(self, stage: str, started: float) -> float:
        now = time.perf_counter()
        self.last_timings[stage] = self.last_timings.get(stage, 0.0) + now - started
        return now

    def _prepare(self, image: np.ndarray, mask: np.ndarray | None, options: ColorizeOptions,
                 on_progress: ProgressCallback, tracker: Progress, workers: int) -> Prepared:
        """Full-resolution L, strip by strip."""
        started = time.perf_counter()
        layout = imagearray.inspect_image(image, "image")
        full = torch.empty((layout.height, layout.width), dtype=torch.float32)

        def work(rows: slice) -> dict[str, float]:
            full[rows] = imagearray.lightness(image, layout, rows)
            return {}

        _run_strips(layout.height, layout.width, work, tracker, workers, on_progress)
        self._timed("lightness", started)
        shape = render_shape(layout.height, layout.width, self.render_size(options), self.stride)
        return Prepared(image, layout, full, shape, mask)

    def _predict(self, prepared: list[Prepared], options: ColorizeOptions,
                 hints: torch.Tensor | None, hint_counts: Sequence[int | None] | None = None
                 ) -> list[Prediction]:
        """Resize the images' L (all to the same render shape), run the model, decode ab, and
        carry the hints' colours around them (``hint_counts``: hints per image, when known)."""
        started = time.perf_counter()
        temperature = self.temperature(options)
        h, w = prepared[0].render
        planes = []
        for one in prepared:
            plane = one.lightness.to(self.device)[None, None]
            antialias = plane.shape[-2] > h or plane.shape[-1] > w
            planes.append(F.interpolate(plane, size=(h, w), mode="bilinear", align_corners=False,
                                        antialias=antialias).clamp_(0.0, 100.0))  # fmt: skip
        batch = torch.cat(planes)
        with torch.inference_mode():
            out = self._forward(batch, hints).float()
            if self.output_kind == OUTPUT_AB:
                logits: list[torch.Tensor | None] = [None] * len(prepared)
                ab = out
            else:
                logits = list(out)
                ab = bins.decode(out, options.decode, temperature, logit_scale=self.logit_scale,
                                 log_prior=self.decode_log_prior)
            ab = bins.apply_saturation(ab, options.saturation)
            pulls = self._hint_pulls(ab, batch, hints, hint_counts)
        self._timed("model", started)
        return [Prediction(one_logits, self.logit_scale, one_ab + pull if pull is not None
                           else one_ab, self.decode_log_prior, pull)
                for one_logits, one_ab, pull in zip(logits, ab, pulls, strict=True)]

    @staticmethod
    def _hint_pulls(ab: torch.Tensor, lightness: torch.Tensor, hints: torch.Tensor | None,
                    counts: Sequence[int | None] | None) -> list[torch.Tensor | None]:
        """Per image, how far the hints move its decoded ``ab`` around them
        (:func:`~chromatize.hint_propagation.hint_pull`; None where it has none)."""
        if hints is None:
            return [None] * len(ab)
        counts = list(counts) if counts is not None else [None] * len(ab)
        return [hint_pull(one_ab, plane[0], one_hints, count)
                for one_ab, plane, one_hints, count in zip(ab, lightness, hints, counts,
                                                           strict=True)]

    def _forward(self, batch: torch.Tensor, hints: torch.Tensor | None) -> torch.Tensor:
        if hints is not None:
            self.refuse_hints_unless_accepted()
            check_hints(hints, batch)
            hints = hints.to(self.device, torch.float32)
        if hints is None and self.runner is not None:
            return self.runner(batch)
        if hints is not None and self.runner is not None:
            runner = self._hint_runner()
            if runner is not None:
                return runner(batch, hints)
        arguments = (batch,) if hints is None else (batch, hints)
        if self.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                return self.model(*arguments)
        return self.model(*arguments)

    def _hint_runner(self) -> OnnxEngine | None:
        """ONNX Runtime's hint graph beside :attr:`runner` (made at the first call with hints),
        or None: hints then run in torch."""
        with _HINT_RUNNER_LOCK:
            if not self._hint_engine_tried:
                self._hint_engine = hint_engine(self.runner, self.model, self.model_name)
                self._hint_engine_tried = True
            return self._hint_engine

    def _finish(self, prepared: Prepared, prediction: Prediction, options: ColorizeOptions,
                on_progress: ProgressCallback, tracker: Progress, workers: int,
                pinned: tuple[np.ndarray, torch.Tensor] | None = None) -> np.ndarray:
        """Upsample ab, join it with the original L, gamut-map, blend, write the caller's dtype;
        ``pinned``: (sorted flat pixel indices, their ab (2, n)) set exactly (hints)."""
        started = time.perf_counter()
        ab = prediction.ab.to(self.device)
        guide = (prepared.guide(tuple(ab.shape[-2:]), self.device)
                 if options.upsample == "guided" else None)
        out = imagearray.allocate_output(prepared.layout)
        compiled = self._compiled_finish_applies(prepared, out)
        upsampler = ABUpsampler(ab, prepared.lightness.to(self.device), options.upsample,
                                guide=guide, fit=finish_kernel.guided_fit if compiled else None)
        fast = finish_kernel.FastFinish(upsampler) if compiled else None
        started = self._timed("upsample", started)
        spent = _run_strips(
            prepared.layout.height,
            prepared.layout.width,
            lambda rows: (self._fast_finish_rows(prepared, fast, out, rows, pinned) if fast
                          else self._finish_rows(prepared, upsampler, out, rows, pinned)),
            tracker,
            workers,
            on_progress,
        )
        # strips run in parallel: split the stage's wall time by the work each part did
        wall = time.perf_counter() - started
        busy = sum(spent.values()) or 1.0
        for stage in ("upsample", "recombine"):
            self.last_timings[stage] = (self.last_timings.get(stage, 0.0)
                                        + wall * spent.get(stage, 0.0) / busy)
        return out

    def _compiled_finish_applies(self, prepared: Prepared, out: np.ndarray) -> bool:
        """Whether the compiled finish (:mod:`chromatize.finish_kernel`) serves ``out``: 8-bit,
        16-bit and float output on the CPU without a mask, with numba installed (else the torch
        path)."""
        return (self.device.type == "cpu" and out.dtype in finish_kernel.DTYPES
                and prepared.mask is None and self.fast_finish
                and finish_kernel.available(out.dtype))

    def _fast_finish_rows(
        self, prepared: Prepared, fast: finish_kernel.FastFinish, out: np.ndarray, rows: slice,
        pinned: tuple[np.ndarray, torch.Tensor] | None = None,
    ) -> dict[str, float]:
        """One strip of :meth:`_finish` by the compiled kernel; pinned (hint) pixels are then
        recomputed exactly as the torch path does."""
        t0 = time.perf_counter()
        layout, image = prepared.layout, prepared.image
        lightness = prepared.lightness[rows]
        fast.rows(rows, lightness, out)
        if pinned is not None:
            _write_pinned(out, rows, lightness, *pinned)
        alpha = imagearray.alpha(image, layout, rows)
        if alpha is not None:
            out[rows, :, 3] = alpha
        return {"recombine": time.perf_counter() - t0}

    def _finish_rows(
        self, prepared: Prepared, upsampler: ABUpsampler, out: np.ndarray, rows: slice,
        pinned: tuple[np.ndarray, torch.Tensor] | None = None,
    ) -> dict[str, float]:
        """One strip of :meth:`_finish`; returns seconds spent upsampling and recombining."""
        t0 = time.perf_counter()
        layout, image, mask = prepared.layout, prepared.image, prepared.mask
        lightness = prepared.lightness[rows].to(self.device)
        ab = upsampler.rows(rows, lightness)
        if pinned is not None:
            ab = _pin(ab, rows, layout.width, *pinned)
        t1 = time.perf_counter()
        keep = None
        if mask is not None:
            m = imagearray.as_tensor(mask[rows], np.float32)
            m = m.to(self.device)
            if not layout.is_gray:  # blend towards the input's own colour
                own = color.rgb_to_lab(imagearray.color_float(image, layout, rows).to(self.device))
                ab = torch.lerp(own[1:], ab, m[None])
            else:
                ab = ab * m[None]
            keep = (m == 0).cpu().numpy()
        linear = color.lightness_ab_to_linear_rgb(lightness, ab)
        imagearray.write_linear_rgb(out, rows, linear, imagearray.alpha(image, layout, rows))
        if keep is not None and keep.any():  # unselected pixels stay exactly as given
            original = imagearray.color_values(image, layout, rows)
            out[rows, :, :3][keep] = original[keep]
        return {"upsample": t1 - t0, "recombine": time.perf_counter() - t1}


class _Share:
    """The part of a batch's progress that belongs to the images of one chunk."""

    def __init__(self, tracker: Progress, first: int, count: int) -> None:
        self.tracker, self.first, self.count = tracker, first, max(1, count)

    def image(self, n: int, start: float, end: float) -> ProgressCallback:
        """Callback mapping 0..1 onto ``start..end`` of chunk image ``n``'s share."""
        index = self.first + n
        return lambda done: self.tracker.report((index + start + (end - start) * done)
                                                / self.count)


def _chunks_by_shape(shapes: list[tuple[int, int]], size: int) -> Iterator[list[int]]:
    """Indexes grouped by render shape (input order kept within a group), ``size`` at a time."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, shape in enumerate(shapes):
        groups.setdefault(shape, []).append(i)
    for members in groups.values():
        for start in range(0, len(members), size):
            yield members[start : start + size]



def _pin(ab: torch.Tensor, rows: slice, width: int, indices: np.ndarray, values: torch.Tensor
         ) -> torch.Tensor:
    """``ab`` (2, rows, W) of the strip ``rows`` with the pinned pixels' ab set."""
    start, stop = np.searchsorted(indices, (rows.start * width, rows.stop * width))
    if start == stop:
        return ab
    ab = ab.clone()
    local = torch.from_numpy(indices[start:stop] - rows.start * width).to(ab.device)
    ab.view(2, -1)[:, local] = values[:, start:stop].to(ab.device, ab.dtype)
    return ab


def _write_pinned(out: np.ndarray, rows: slice, lightness: torch.Tensor,
                  indices: np.ndarray, values: torch.Tensor) -> None:
    """sRGB of the pinned pixels of strip ``rows`` (their exact ab with the image's L,
    gamut-mapped, in ``out``'s dtype as the torch path writes it), written over ``out``."""
    width = out.shape[1]
    start, stop = np.searchsorted(indices, (rows.start * width, rows.stop * width))
    if start == stop:
        return
    local = indices[start:stop] - rows.start * width
    own_l = lightness.reshape(-1)[torch.from_numpy(local)][None]
    ab = values[:, start:stop].to("cpu", torch.float32)[:, None]
    encoded = imagearray.from_linear_rgb(color.lightness_ab_to_linear_rgb(own_l, ab), out.dtype)
    block = out[rows].reshape(-1, out.shape[2])
    block[local, :3] = encoded[0]


def _strip_rows(width: int) -> int:
    return max(1, STRIP_PIXELS // max(1, width))


# ------------------------------------------------------------------------------------------------
# Running strips in parallel
#
# Full-resolution stages are long chains of cheap elementwise torch ops. Letting every op split
# itself over the intra-op (OpenMP) threads costs a barrier per op, which on a busy machine (the
# 2 cores here are shared with a training job) made these stages several times slower than
# single-threaded. Instead, the pipeline runs its own ops single-threaded and processes whole
# strips in parallel on a small thread pool; only the network uses torch's intra-op threads.
# torch's thread count is per calling thread (OpenMP), so this does not affect other threads.
# ------------------------------------------------------------------------------------------------

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


@contextmanager
def _intra_op_threads(count: int) -> Iterator[int]:
    """Run the block with ``count`` intra-op torch threads; yields the previous count."""
    saved = torch.get_num_threads()
    if count != saved:
        torch.set_num_threads(count)
    try:
        yield saved
    finally:
        if torch.get_num_threads() != saved:
            torch.set_num_threads(saved)


def _single_threaded(work: Callable[[slice], dict[str, float]], rows: slice) -> dict[str, float]:
    if torch.get_num_threads() != 1:  # a pool thread: make its own ops single-threaded
        torch.set_num_threads(1)
    return work(rows)


def _strip_pool(workers: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE != workers:
            _POOL = ThreadPoolExecutor(workers, thread_name_prefix="chromatize-strips")
            _POOL_SIZE = workers
        return _POOL


def _run_strips(
    height: int,
    width: int,
    work: Callable[[slice], dict[str, float]],
    tracker: Progress,
    workers: int,
    on_progress: Callable[[float], None],
) -> dict[str, float]:
    """Call ``work(rows)`` for every strip of rows, in parallel where there are several cores.

    Cancellation and progress are handled on the calling thread between strips; on cancellation
    or an error, strips not started are dropped and running ones are waited for before raising.
    Returns the sums of the per-stage seconds the strips reported.
    """
    step = _strip_rows(width)
    ranges = [slice(y, min(height, y + step)) for y in range(0, height, step)]
    totals: dict[str, float] = {}

    def add(spent: dict[str, float]) -> None:
        for key, value in spent.items():
            totals[key] = totals.get(key, 0.0) + value

    workers = min(workers, len(ranges))
    if workers <= 1:
        for done, rows in enumerate(ranges, 1):
            tracker.check()
            add(work(rows))
            on_progress(done / len(ranges))
        return totals
    stop = threading.Event()

    def guarded(rows: slice) -> dict[str, float]:
        return {} if stop.is_set() else _single_threaded(work, rows)

    pool = _strip_pool(workers)
    tracker.check()
    futures = [pool.submit(guarded, rows) for rows in ranges]
    try:
        for done, future in enumerate(as_completed(futures), 1):
            add(future.result())
            on_progress(done / len(ranges))
            tracker.check()
    except BaseException:
        stop.set()
        for future in futures:
            future.cancel()
        wait(futures)
        raise
    return totals


def _check_mask(mask: object, layout: ImageLayout, name: str) -> np.ndarray:
    if not isinstance(mask, np.ndarray):
        raise InputImageError(f"{name}: expected a numpy array, got {type(mask).__name__}")
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.shape != (layout.height, layout.width):
        raise InputImageError(
            f"{name}: shape {mask.shape} does not match the image ({layout.height}, {layout.width})"
        )
    if mask.dtype == np.bool_:
        return mask.astype(np.float32)
    if mask.dtype.kind != "f":
        raise InputImageError(
            f"{name}: dtype {mask.dtype} is not supported; use float in [0, 1] or bool"
        )
    if not np.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
        raise InputImageError(f"{name}: values must be finite and lie in [0, 1]")
    return mask


def colorize(
    image: np.ndarray,
    model: str | nn.Module = DEFAULT_MODEL,
    device: str | torch.device = "auto",
    weights: str | os.PathLike[str] | None = None,
    allow_download: bool = False,
    options: ColorizeOptions | None = None,
    **overrides: Any,
) -> np.ndarray:
    """One-call colorization: ``Colorizer(model, device, weights, allow_download).colorize(...)``.

    Named models are loaded once per process and reused across calls. ``options`` and keyword
    overrides (``temperature=``, ``saturation=``, ...) are as for :meth:`Colorizer.colorize`, as
    are ``mask=``, ``progress=`` and ``cancel=``.
    """
    return Colorizer(model, device, weights, allow_download).colorize(image, options, **overrides)
