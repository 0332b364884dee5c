"""The colorization pipeline: any user image in, a colorized image with the same lightness out.

Stages (for one image of H x W pixels):

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from chromatize import bins, color, imagearray
from chromatize.device import resolve_device
from chromatize.errors import Cancelled, ChromatizeError, InputImageError
from chromatize.imagearray import ImageLayout
from chromatize.upsample import UPSAMPLE_METHODS, ABUpsampler, UpsampleMethod

#: Images with more pixels than this are refused (override with ``Colorizer(max_pixels=...)``).
MAX_PIXELS = 160_000_000
#: Pixels per strip in the full-resolution stages (bounds scratch memory, ~100 MB per strip).
STRIP_PIXELS = 1 << 20
#: The render's long side is at most this many times its short side (extreme panoramas are
#: squeezed rather than rendered huge).
MAX_RENDER_ASPECT = 4.0
#: At most this many strips are processed at once (one per intra-op thread torch would use).
MAX_STRIP_WORKERS = 8
#: Stride assumed for a model that does not declare ``stride`` (safe for both of ours).
FALLBACK_STRIDE = 32
DEFAULT_MODEL = "mobile"

ProgressCallback = Callable[[float], None]
CancelCallback = Callable[[], bool]

# Progress budget of the stages of one image (fractions of its share).
_P_LIGHTNESS = 0.1
_P_MODEL = 0.3

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
class _Job:
    """One image on its way through the pipeline."""

    image: np.ndarray
    layout: ImageLayout
    mask: np.ndarray | None
    lightness: torch.Tensor  # (H, W) float32, CPU
    render: tuple[int, int]
    ab_low: torch.Tensor | None = None  # (2, h/4, w/4) on the model device


class _Progress:
    """Maps per-stage progress of image ``index`` of ``count`` onto one 0..1 scale."""

    def __init__(
        self, callback: ProgressCallback | None, cancel: CancelCallback | None, count: int
    ):
        self.callback, self.cancel_cb, self.count = callback, cancel, max(1, count)
        self.last = 0.0

    def check(self) -> None:
        if self.cancel_cb is not None and self.cancel_cb():
            raise Cancelled("colorization was cancelled")

    def report(self, fraction: float) -> None:
        fraction = min(1.0, max(self.last, fraction))
        self.last = fraction
        if self.callback is not None:
            self.callback(fraction)

    def image(self, index: int, within: float) -> None:
        self.report((index + within) / self.count)


class Colorizer:
    """Colorize images with one model on one device (model loaded once, reused for every call).

    ``model`` is a registered name (``"mobile"``, ``"eccv16"``) or an ``nn.Module`` following the
    model contract (L in [0, 100] -> 313 bin logits at 1/4 size; attributes ``logit_scale``,
    ``default_input_size``, optionally ``stride`` and ``default_temperature``). A module passed in
    is used as is: it is put in eval mode and, if ``device`` is not ``"auto"``, moved there (in
    place). ``weights`` is an explicit weights file for a named model; ``allow_download`` lets a
    named model whose weights are missing be downloaded.
    """

    def __init__(
        self,
        model: str | nn.Module = DEFAULT_MODEL,
        device: str | torch.device = "auto",
        weights: str | os.PathLike[str] | None = None,
        allow_download: bool = False,
        *,
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        if isinstance(model, nn.Module):
            if weights is not None:
                raise ChromatizeError("weights= applies to a named model, not to a module instance")
            if device == "auto":
                param = next(model.parameters(), None)
                self.device = param.device if param is not None else torch.device("cpu")
            else:
                self.device = resolve_device(device)
                model.to(self.device)
            self.model = model.eval()
            self.model_name = str(getattr(model, "name", type(model).__name__))
            self.default_temperature = float(
                getattr(model, "default_temperature", bins.DEFAULT_TEMPERATURE)
            )
        elif isinstance(model, str):
            from chromatize.registry import get_spec

            spec = get_spec(model)
            self.device = resolve_device(device)
            self.model = _cached_model(spec.name, weights, self.device, allow_download)
            self.model_name = spec.name
            self.default_temperature = float(spec.default_temperature)
        else:
            raise ChromatizeError(
                f"model must be a model name or an nn.Module, got {type(model).__name__}"
            )
        self.logit_scale = float(getattr(self.model, "logit_scale", 1.0))
        self.stride = int(getattr(self.model, "stride", FALLBACK_STRIDE))
        self.default_input_size = int(getattr(self.model, "default_input_size", 256))
        self.max_pixels = int(max_pixels)
        #: Seconds spent per stage in the last colorize/colorize_batch call ("lightness", "model",
        #: "upsample", "recombine"); for benchmarks and diagnostics.
        self.last_timings: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"Colorizer(model={self.model_name!r}, device={str(self.device)!r})"

    # ------------------------------------------------------------------ public API

    def colorize(
        self,
        image: np.ndarray,
        *,
        temperature: float | None = None,
        saturation: float = 1.0,
        render_size: int | None = None,
        upsample: UpsampleMethod = "guided",
        decode: bins.DecodeMethod = "annealed_mean",
        mask: np.ndarray | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCallback | None = None,
    ) -> np.ndarray:
        """Colorize one image; returns a new (H, W, 3|4) array of the input's dtype.

        See the module docstring for the stages; ``mask`` (H, W) in [0, 1] blends the colorized
        result (1) with the input (0). ``progress(fraction)`` is called as work advances;
        ``cancel()`` is polled between stages and strips and raises
        :class:`~chromatize.errors.Cancelled` when it returns True.
        """
        return self.colorize_batch(
            [image],
            temperature=temperature,
            saturation=saturation,
            render_size=render_size,
            upsample=upsample,
            decode=decode,
            mask=None if mask is None else [mask],
            progress=progress,
            cancel=cancel,
            batch_size=1,
        )[0]

    def colorize_batch(
        self,
        images: Sequence[np.ndarray],
        *,
        temperature: float | None = None,
        saturation: float = 1.0,
        render_size: int | None = None,
        upsample: UpsampleMethod = "guided",
        decode: bins.DecodeMethod = "annealed_mean",
        mask: Sequence[np.ndarray | None] | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCallback | None = None,
        batch_size: int = 4,
    ) -> list[np.ndarray]:
        """Colorize several images; the model runs on up to ``batch_size`` images at once
        (images whose render sizes match). ``mask`` is None or one mask (or None) per image.
        Results are in input order and equal what :meth:`colorize` gives for each image."""
        images = list(images)
        masks = [None] * len(images) if mask is None else list(mask)
        if len(masks) != len(images):
            raise ChromatizeError(f"got {len(masks)} masks for {len(images)} images")
        if batch_size < 1:
            raise ChromatizeError(f"batch_size must be at least 1, got {batch_size}")
        temperature = self._check_options(temperature, saturation, upsample, decode)
        size = self._check_render_size(render_size)
        layouts = [self._inspect(img, f"image {i}" if len(images) > 1 else "image")
                   for i, img in enumerate(images)]  # fmt: skip
        checked_masks = [
            None if m is None else _check_mask(m, lay, f"mask {i}" if len(images) > 1 else "mask")
            for i, (m, lay) in enumerate(zip(masks, layouts, strict=True))
        ]
        tracker = _Progress(progress, cancel, len(images))
        tracker.check()
        self.last_timings = dict.fromkeys(("lightness", "model", "upsample", "recombine"), 0.0)

        # Group by render shape (input order kept within a group), run the model per chunk of
        # `batch_size`, and finish each image right after its chunk so that only `batch_size`
        # full-resolution L planes are alive at once.
        shapes = [render_shape(lay.height, lay.width, size, self.stride) for lay in layouts]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, shape in enumerate(shapes):
            groups.setdefault(shape, []).append(i)
        results: list[np.ndarray] = [None] * len(images)  # type: ignore[list-item]
        done = 0
        # Everything but the network runs with single-threaded torch ops (see _run_strips).
        with _intra_op_threads(1) as threads:
            workers = max(1, min(MAX_STRIP_WORKERS, threads))
            for shape, members in groups.items():
                for start in range(0, len(members), batch_size):
                    chunk = members[start : start + batch_size]
                    jobs = [
                        self._prepare(
                            images[i], layouts[i], checked_masks[i], shape, tracker, done + n,
                            workers,
                        )
                        for n, i in enumerate(chunk)
                    ]  # fmt: skip
                    tracker.check()
                    with _intra_op_threads(threads):
                        self._predict(jobs, temperature, decode, saturation)
                    for n, (i, job) in enumerate(zip(chunk, jobs, strict=True)):
                        tracker.image(done + n, _P_LIGHTNESS + _P_MODEL)
                        results[i] = self._finish(job, upsample, tracker, done + n, workers)
                        job.ab_low = None
                    done += len(chunk)
        tracker.report(1.0)
        return results

    # ------------------------------------------------------------------ stages

    def _check_options(
        self, temperature: float | None, saturation: float, upsample: str, decode: str
    ) -> float:
        if temperature is None:
            temperature = self.default_temperature
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
                and temperature > 0):  # fmt: skip
            raise ChromatizeError(f"temperature must be a number > 0, got {temperature!r}")
        if not (isinstance(saturation, (int, float)) and math.isfinite(saturation)
                and saturation >= 0):  # fmt: skip
            raise ChromatizeError(
                f"saturation must be a number >= 0 (0 = gray, 1 = model output), got {saturation!r}"
            )
        if upsample not in UPSAMPLE_METHODS:
            raise ChromatizeError(
                f"unknown upsample method {upsample!r}; choose one of {', '.join(UPSAMPLE_METHODS)}"
            )
        if decode not in bins.DECODE_METHODS:
            raise ChromatizeError(
                f"unknown decode method {decode!r}; choose one of {', '.join(bins.DECODE_METHODS)}"
            )
        return float(temperature)

    def _check_render_size(self, render_size: int | None) -> int:
        if render_size is None:
            return self.default_input_size
        if isinstance(render_size, bool) or not isinstance(render_size, (int, np.integer)):
            raise ChromatizeError(f"render_size must be an integer, got {render_size!r}")
        if not self.stride <= render_size <= 4096:
            raise ChromatizeError(
                f"render_size must be between {self.stride} (the model's stride) and 4096 pixels, "
                f"got {render_size}"
            )
        return int(render_size)

    def _inspect(self, image: object, name: str) -> ImageLayout:
        layout = imagearray.inspect_image(image, name)
        if layout.pixels > self.max_pixels:
            raise InputImageError(
                f"{name}: {layout.width}x{layout.height} is {layout.pixels / 1e6:.0f} megapixels; "
                f"chromatize colorizes at most {self.max_pixels / 1e6:.0f} megapixels per image "
                "(memory bound); downscale it first or raise Colorizer(max_pixels=...)"
            )
        return layout

    def _prepare(
        self,
        image: np.ndarray,
        layout: ImageLayout,
        mask: np.ndarray | None,
        shape: tuple[int, int],
        tracker: _Progress,
        index: int,
        workers: int,
    ) -> _Job:
        """Full-resolution L, strip by strip."""
        started = time.perf_counter()
        full = torch.empty((layout.height, layout.width), dtype=torch.float32)

        def work(rows: slice) -> dict[str, float]:
            full[rows] = imagearray.lightness(image, layout, rows)
            return {}

        _run_strips(layout.height, layout.width, work, tracker, workers,
                    lambda done: tracker.image(index, _P_LIGHTNESS * done))  # fmt: skip
        self._timed("lightness", started)
        return _Job(image, layout, mask, full, shape)

    def _timed(self, stage: str, started: float) -> float:
        now = time.perf_counter()
        self.last_timings[stage] = self.last_timings.get(stage, 0.0) + now - started
        return now

    def _predict(
        self, jobs: list[_Job], temperature: float, decode: str, saturation: float
    ) -> None:
        """Resize the jobs' L (all to the same render shape), run the model, store their ab."""
        started = time.perf_counter()
        h, w = jobs[0].render
        planes = []
        for job in jobs:
            plane = job.lightness.to(self.device)[None, None]
            antialias = plane.shape[-2] > h or plane.shape[-1] > w
            planes.append(F.interpolate(plane, size=(h, w), mode="bilinear", align_corners=False,
                                        antialias=antialias).clamp_(0.0, 100.0))  # fmt: skip
        batch = torch.cat(planes)
        with torch.inference_mode():
            if self.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.float16):
                    logits = self.model(batch)
            else:
                logits = self.model(batch)
            ab = bins.decode(logits.float(), decode, temperature, logit_scale=self.logit_scale)  # type: ignore[arg-type]
            ab = bins.apply_saturation(ab, saturation)
        for job, one in zip(jobs, ab, strict=True):
            job.ab_low = one
        self._timed("model", started)

    def _finish(
        self, job: _Job, upsample: str, tracker: _Progress, index: int, workers: int
    ) -> np.ndarray:
        """Upsample ab, join it with the original L, gamut-map, blend, write the caller's dtype."""
        assert job.ab_low is not None
        started = time.perf_counter()
        upsampler = ABUpsampler(job.ab_low, job.lightness.to(self.device), upsample)  # type: ignore[arg-type]
        started = self._timed("upsample", started)
        out = imagearray.allocate_output(job.layout)
        base = _P_LIGHTNESS + _P_MODEL
        spent = _run_strips(
            job.layout.height,
            job.layout.width,
            lambda rows: self._finish_rows(job, upsampler, out, rows),
            tracker,
            workers,
            lambda done: tracker.image(index, base + (1 - base) * done),
        )
        # strips run in parallel: split the stage's wall time by the work each part did
        wall = time.perf_counter() - started
        busy = sum(spent.values()) or 1.0
        for stage in ("upsample", "recombine"):
            self.last_timings[stage] += wall * spent.get(stage, 0.0) / busy
        return out

    def _finish_rows(
        self, job: _Job, upsampler: ABUpsampler, out: np.ndarray, rows: slice
    ) -> dict[str, float]:
        """One strip of :meth:`_finish`; returns seconds spent upsampling and recombining."""
        t0 = time.perf_counter()
        layout, image, mask = job.layout, job.image, job.mask
        lightness = job.lightness[rows].to(self.device)
        ab = upsampler.rows(rows, lightness)
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
        linear = color.lab_to_linear_rgb(torch.cat((lightness[None], ab)), gamut="chroma")
        imagearray.write_linear_rgb(out, rows, linear, imagearray.alpha(image, layout, rows))
        if keep is not None and keep.any():  # unselected pixels stay exactly as given
            original = imagearray.color_values(image, layout, rows)
            out[rows, :, :3][keep] = original[keep]
        return {"upsample": t1 - t0, "recombine": time.perf_counter() - t1}


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
    tracker: _Progress,
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
    **options: object,
) -> np.ndarray:
    """One-call colorization: ``Colorizer(model, device, weights, allow_download).colorize(...)``.

    Named models are loaded once per process and reused across calls.
    """
    return Colorizer(model, device, weights, allow_download).colorize(image, **options)  # type: ignore[arg-type]
