"""The work of one "Colorize" run, free of Qt so it can run (and be tested) on any thread.

The widget's values are one :class:`chromatize.options.ColorizeOptions` (defaults and checks live
there, not here). :class:`ColorizerCache` keeps one loaded :class:`chromatize.pipeline.Colorizer`
per session and reloads only when what the loaded model depends on changes
(:data:`chromatize.options.LOADER_SETTINGS`: model, weights file, device, download permission,
...); :func:`preload` loads (and warms up) it ahead of the first run. :class:`PreparedCache` keeps
the last layer's :class:`chromatize.pipeline.Prepared` planes, so a repeat run that only changes
temperature or saturation skips :meth:`~chromatize.pipeline.Colorizer.prepare`.
:func:`colorize_snapshot` colorizes every plane of a layer snapshot into a new array through the
public stages (``prepare`` -> ``predict`` -> ``finish``, exactly what ``Colorizer.colorize``
does), reporting progress (through :class:`chromatize.progress.Progress`, so it never goes back)
and honouring a cancel flag between and within planes; with ``temporal=True`` the planes of a
stack go instead through one :class:`chromatize.sequence.SequenceColorizer` per sequence, so that
colour follows motion from plane to plane (:func:`sequence_groups`). :func:`run_job` is a whole
run for a
worker thread; failures come back as messages from :func:`chromatize.failures.describe_failure`,
in the widget's words.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import chromatize
from chromatize.errors import Cancelled, ChromatizeError
from chromatize.failures import describe_failure, is_out_of_memory
from chromatize.options import LOADER_SETTINGS, ColorizeOptions
from chromatize.progress import Progress, ProgressCallback
from chromatize_napari.hint_points import HINTS_LABEL, HintPoints
from chromatize_napari.layer_data import (
    LayerSnapshot,
    iter_plane_indices,
    map_plane,
)

if TYPE_CHECKING:
    from chromatize.hints import Hints
    from chromatize.pipeline import Colorizer, Prediction, Prepared

CancelCheck = Callable[[], bool]
#: The values of :data:`chromatize.options.LOADER_SETTINGS`, weights file and device resolved
LoaderKey = tuple[Any, ...]
#: Prepared planes kept for repeat runs, at most this many bytes (lightness + plane as given).
PREPARED_CACHE_BYTES = 512 * 2**20
#: Progress shares of one plane's stages (as in Colorizer.colorize: L, model, the rest).
_P_PREPARE = 0.1
_P_MODEL = 0.3


def resolved_weights(options: ColorizeOptions) -> str | None:
    """The weights file ``options`` name, as an absolute path (None: the model's own)."""
    return str(Path(options.weights).expanduser().resolve()) if options.weights else None


def loader_key(options: ColorizeOptions) -> LoaderKey:
    """What a loaded Colorizer for ``options`` depends on (every setting in
    :data:`~chromatize.options.LOADER_SETTINGS`, in that order); a change of it reloads.

    The weights path and the device are resolved ("auto" -> "cpu" on a CPU-only machine), so
    switching between names of the same file or device keeps the loaded model. Raises
    :class:`chromatize.errors.DeviceUnavailableError` for a device this machine does not have.
    """
    from chromatize.device import resolve_device

    resolved = {"weights": resolved_weights(options),
                "device": str(resolve_device(options.device))}
    return tuple(resolved.get(name, getattr(options, name)) for name in LOADER_SETTINGS)


def _loader_options(options: ColorizeOptions, key: LoaderKey) -> ColorizeOptions:
    """``options`` with the resolved weights file and device of ``key``."""
    values = dict(zip(LOADER_SETTINGS, key, strict=True))
    return options.replace(weights=values["weights"], device=values["device"])


class ColorizerCache:
    """One loaded Colorizer, reused across runs until :func:`loader_key` of the options changes.

    Thread-safe: :meth:`get` may be called from worker threads; loading happens under a lock so
    two runs never load the same model twice.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: LoaderKey | None = None
        self._colorizer: Colorizer | None = None
        self.loads = 0  # how many times a model was actually loaded (for users and tests)

    def get(self, options: ColorizeOptions, *, warm: bool = False) -> Colorizer:
        """The Colorizer for ``options``, loading it (in the caller's thread) if needed.

        A run calling this while another thread (the widget's preload) is loading the same
        model waits for that load and reuses it: loading happens under a lock, once per key.
        ``warm=True`` also runs a model this call loaded once on a small blank image at the
        options' render size, under the same lock: the first forward pass of a network
        allocates and plans (torch's and ONNX Runtime's kernel choices, the strip pool), and a
        run started meanwhile waits for a ready model rather than racing the warm-up for the CPU.

        Raises the loader's :class:`chromatize.errors.ChromatizeError` subclasses unchanged
        (e.g. ``ModelUnavailableError`` when weights are missing and download is not allowed).
        """
        from chromatize.pipeline import Colorizer, clear_model_cache

        key = loader_key(options)
        with self._lock:
            if self._colorizer is None or self._key != key:
                # Free the old model (also from the pipeline's process-wide cache) first, so
                # switching models never holds two in memory and a change really reloads.
                self._colorizer = None
                self._key = None
                clear_model_cache()
                colorizer = Colorizer.from_options(_loader_options(options, key))
                self._colorizer, self._key = colorizer, key
                self.loads += 1
                if warm:
                    size = colorizer.render_size(options)
                    colorizer.colorize(np.zeros((size, size), np.uint8), options)
            return self._colorizer

    def loaded(self, options: ColorizeOptions) -> bool:
        """Whether the Colorizer for ``options`` is loaded (a run would not load it)."""
        try:
            key = loader_key(options)
        except ChromatizeError:
            return False
        return self._colorizer is not None and self._key == key

    def clear(self) -> None:
        """Forget the loaded model (the next run loads it again)."""
        from chromatize.pipeline import clear_model_cache

        with self._lock:
            self._colorizer = None
            self._key = None
            clear_model_cache()


def preload(options: ColorizeOptions, cache: ColorizerCache) -> str | None:
    """Load (and warm up) the model ``options`` choose into ``cache``, for a background thread.

    Returns None when the model is ready, else why it is not, in the widget's words
    (:func:`chromatize.failures.describe_failure`). Never raises and never downloads: the
    widget shows the reason quietly and the user hears about it, as a notification, only when
    pressing Colorize (the run loads again and fails with the same message, or downloads when
    allowed: a download is only started by pressing Colorize).
    """
    from chromatize.weights import model_status

    try:
        if options.allow_download and options.weights is None \
                and model_status(options.model) == "downloadable":
            return "its weights will be downloaded when you press Colorize"
        cache.get(options, warm=True)
    except Exception as exc:  # a preload must never raise into napari's worker machinery
        return describe_failure(exc, "napari").message
    return None


class PreparedCache:
    """The :class:`~chromatize.pipeline.Prepared` planes of the last layer colorized, so that a
    repeat run with other temperature, saturation or model output skips ``prepare``.

    Keyed by :func:`plane_key`: the layer, the plane's index, a digest of the plane's values,
    the contrast limits and what the render shape depends on (render size, model stride), so a
    hit is exactly what a fresh ``prepare`` would compute. Bounded: only one layer's planes are
    kept (a plane of another layer drops the others), at most ``max_bytes`` of them (planes that
    do not fit are not kept; for a stack larger than that, the first planes are). The widget
    also calls :meth:`forget` when the layer's data or contrast limits change or it is removed,
    so stale planes do not hold memory. Thread-safe.
    """

    def __init__(self, max_bytes: int = PREPARED_CACHE_BYTES) -> None:
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._entries: dict[tuple[Any, ...], Prepared] = {}
        self._sizes: dict[tuple[Any, ...], int] = {}
        self._source: Any = None
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        return sum(self._sizes.values())

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[Any, ...]) -> Prepared | None:
        with self._lock:
            prepared = self._entries.get(key)
            if prepared is None:
                self.misses += 1
            else:
                self.hits += 1
            return prepared

    def put(self, key: tuple[Any, ...], prepared: Prepared) -> None:
        size = prepared.lightness.element_size() * prepared.lightness.numel() \
            + int(prepared.image.nbytes)
        with self._lock:
            if key[0] != self._source:
                self._entries.clear()
                self._sizes.clear()
                self._source = key[0]
            if key in self._entries or sum(self._sizes.values()) + size > self.max_bytes:
                return
            self._entries[key] = prepared
            self._sizes[key] = size

    def forget(self, source: Any = None) -> None:
        """Drop everything (``source`` None) or the planes of ``source`` (a layer's token)."""
        with self._lock:
            if source is None or source == self._source:
                self._entries.clear()
                self._sizes.clear()
                self._source = None


def plane_digest(plane: np.ndarray) -> str:
    """A digest of a plane's values (sha1 of its bytes, ~0.6 ms per MB), so that values changed
    in place, which napari announces with no event, never reuse a stale Prepared."""
    contiguous = np.ascontiguousarray(plane)
    return hashlib.sha1(contiguous.view(np.uint8).reshape(-1), usedforsecurity=False).hexdigest()


def plane_key(snapshot: LayerSnapshot, index: tuple[int, ...], plane: np.ndarray,
              colorizer: Colorizer, options: ColorizeOptions) -> tuple[Any, ...]:
    """What a plane's Prepared depends on; the layer's token comes first (see PreparedCache)."""
    return (snapshot.source, index, plane.shape, plane.dtype.str, plane_digest(plane),
            snapshot.rgb, tuple(snapshot.contrast_limits), colorizer.render_size(options),
            colorizer.stride)


def run_record(options: ColorizeOptions, snapshot: LayerSnapshot,
               colorizer: Colorizer, temporal: bool = False) -> dict[str, Any]:
    """The metadata stored with the output layer: the options (model, weights file, device and
    temperature as the run used them), whether colour followed motion between planes
    (``temporal``: "on" or "off"), the source layer and its contrast limits."""
    record = options.as_mapping()
    record.update(
        temporal="on" if temporal else "off",
        model=str(colorizer.model_name),
        device=str(colorizer.device),
        engine=colorizer.engine,
        weights=resolved_weights(options),
        temperature=colorizer.temperature(options),
        source_layer=snapshot.name,
        contrast_limits=list(snapshot.contrast_limits),
        chromatize_version=chromatize.__version__,
    )
    return record


def _check_plane(colored: np.ndarray, snapshot: LayerSnapshot) -> None:
    expected = (*snapshot.plane_shape, snapshot.output_channels)
    if colored.shape != expected or colored.dtype != snapshot.output_dtype:
        raise ChromatizeError(
            f"the colorizer returned {colored.shape} {colored.dtype} for a plane of "
            f"{expected} {snapshot.output_dtype}; this is a bug in chromatize, please report it"
        )


class _Laps:
    """Adds the seconds since the previous lap to ``totals[name]``."""

    def __init__(self, totals: dict[str, float]) -> None:
        self.totals, self.last = totals, time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.totals[name] = self.totals.get(name, 0.0) + now - self.last
        self.last = now


@dataclass
class PlaneResult:
    """One colorized plane and the stages' results it came from (for suggestions)."""

    image: np.ndarray
    prepared: Prepared
    prediction: Prediction


def colorize_plane(
    snapshot: LayerSnapshot,
    index: tuple[int, ...],
    options: ColorizeOptions,
    colorizer: Colorizer,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    prepared_cache: PreparedCache | None = None,
    timings: dict[str, float] | None = None,
    hints: Hints | None = None,
) -> PlaneResult:
    """Colorize the plane at ``index`` of ``snapshot``: ``prepare`` (skipped when
    ``prepared_cache`` holds it), ``predict`` and ``finish`` with ``hints`` (that plane's, image
    pixel coordinates; None: none), exactly as ``colorizer.colorize(plane, hints=hints)``.

    ``progress`` gets the fraction of this plane done; ``cancel()`` is checked between the
    stages and the strips (:class:`chromatize.errors.Cancelled`); ``timings`` receives "read",
    "prepare", "model" and "finish" seconds (added to what it holds)."""
    tracker = Progress(progress, cancel)
    spent = timings if timings is not None else {}
    laps = _Laps(spent)
    plane = np.asarray(snapshot.data[index])
    key = None if prepared_cache is None else plane_key(snapshot, index, plane, colorizer,
                                                        options)
    prepared = None if key is None else prepared_cache.get(key)  # type: ignore[union-attr]
    if prepared is None:
        image = map_plane(snapshot, plane)
        laps.lap("read")
        prepared = colorizer.prepare(image, options, cancel=cancel,
                                     progress=tracker.span(0.0, _P_PREPARE))
        if key is not None:
            prepared_cache.put(key, prepared)  # type: ignore[union-attr]
        laps.lap("prepare")
    else:
        laps.lap("read")
    tracker.report(_P_PREPARE)
    tracker.check()
    prediction = colorizer.predict(prepared, options, hints=hints)
    laps.lap("model")
    tracker.report(_P_PREPARE + _P_MODEL)
    tracker.check()
    colored = colorizer.finish(prepared, prediction, options, hints=hints, cancel=cancel,
                               progress=tracker.span(_P_PREPARE + _P_MODEL, 1.0))
    laps.lap("finish")
    _check_plane(colored, snapshot)
    tracker.report(1.0)
    return PlaneResult(colored, prepared, prediction)  # type: ignore[arg-type]


def colorize_snapshot(
    snapshot: LayerSnapshot,
    options: ColorizeOptions,
    colorizer: Colorizer,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    prepared_cache: PreparedCache | None = None,
    timings: dict[str, float] | None = None,
    temporal: bool = False,
    hints: HintPoints | None = None,
) -> np.ndarray:
    """Colorize every plane of ``snapshot`` into a new array of ``snapshot.output_shape``.

    Each plane goes through ``colorizer.prepare`` (skipped when ``prepared_cache`` holds it),
    ``predict`` and ``finish``: the same computation as ``colorizer.colorize``, so the result is
    identical to it. ``progress(fraction)`` is called with the overall fraction done (0..1,
    never decreasing); ``cancel()`` is checked before each plane and stage and passed to the
    colorizer, which checks it between its strips. When it returns True,
    :class:`chromatize.errors.Cancelled` is raised and the partial result is dropped. The
    snapshot's data is only read. A single 2D plane is returned as the colorizer made it (no
    extra copy); stacks are filled plane by plane. ``timings``, if given, receives the seconds
    spent in "read" (plane access, digest, contrast mapping), "prepare", "model" and "finish".

    ``temporal=True`` (a stack only; a single plane ignores it) colorizes the planes with
    :func:`colorize_sequence_snapshot` instead: colour follows motion between planes.

    ``hints`` (read from a Points layer, :mod:`chromatize_napari.hint_points`) guide the planes
    their points are on; a model without hint inputs refuses them
    (:class:`~chromatize.models.contract.HintsNotSupportedError`, before any work).
    """
    if hints is not None:
        hints.check(snapshot.plane_shape, snapshot.stack_shape, snapshot.name)
        if not len(hints):
            hints = None
        else:
            refuse_unless_accepted(colorizer, hints)
    if temporal and snapshot.stack_shape:
        return colorize_sequence_snapshot(snapshot, options, colorizer, progress=progress,
                                          cancel=cancel, timings=timings, hints=hints)
    n_planes = max(snapshot.n_planes, 1)
    tracker = Progress(progress, cancel)
    spent = timings if timings is not None else {}
    stack: np.ndarray | None = None
    if snapshot.stack_shape:
        stack = np.empty(snapshot.output_shape, dtype=snapshot.output_dtype)

    colored: np.ndarray | None = None
    for done, index in enumerate(iter_plane_indices(snapshot)):
        tracker.check()
        base, share = done / n_planes, 1.0 / n_planes
        plane_hints = None if hints is None else hints.for_plane(index)
        colored = colorize_plane(snapshot, index, options, colorizer,
                                 progress=tracker.span(base, base + share), cancel=cancel,
                                 prepared_cache=prepared_cache, timings=spent,
                                 hints=plane_hints).image
        if stack is not None:
            stack[index] = colored
        tracker.report(base + share)
    assert colored is not None  # every snapshot has at least one plane
    return stack if stack is not None else colored


def temporal_available() -> bool:
    """Whether colour can follow motion here (:mod:`chromatize.flow` needs OpenCV, which comes
    with chromatize's video extra, not with its napari extra)."""
    return importlib.util.find_spec("cv2") is not None


def sequence_groups(snapshot: LayerSnapshot) -> Iterator[list[tuple[int, ...]]]:
    """The plane indices of ``snapshot``, grouped into sequences, each in plane order.

    The last leading axis is the sequence (time) axis: (T, Y, X) is one sequence of T planes;
    (A, T, Y, X) gives one sequence of T planes per index of A, in A's order (each starts afresh).
    """
    *outer, length = snapshot.stack_shape
    for head in np.ndindex(*outer):
        yield [(*head, t) for t in range(length)]


def colorize_sequence_snapshot(
    snapshot: LayerSnapshot,
    options: ColorizeOptions,
    colorizer: Colorizer,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    timings: dict[str, float] | None = None,
    hints: HintPoints | None = None,
) -> np.ndarray:
    """Colorize a stack's planes so that colour follows motion: each of
    :func:`sequence_groups` goes, in plane order, through one
    :class:`chromatize.sequence.SequenceColorizer` (reset between sequences).

    Progress is reported after each plane and ``cancel()`` checked before each one and between
    (and inside) each plane's stages: :class:`chromatize.errors.Cancelled` then drops the
    partial result. ``timings`` receives "read" (plane access and contrast
    mapping) and "sequence" (flow, model, blending and finishing). ``hints`` guide the planes
    their points are on and, carried along the motion, the planes after them until a cut.
    """
    from chromatize.sequence import SequenceColorizer

    tracker = Progress(progress, cancel)
    spent = timings if timings is not None else {}
    n_planes = max(snapshot.n_planes, 1)
    stack = np.empty(snapshot.output_shape, dtype=snapshot.output_dtype)
    runner = SequenceColorizer(colorizer, options, temporal="on")
    done = 0
    for group in sequence_groups(snapshot):
        runner.reset()
        for index in group:
            tracker.check()
            laps = _Laps(spent)
            image = map_plane(snapshot, np.asarray(snapshot.data[index]))
            laps.lap("read")
            plane_hints = None if hints is None else hints.for_plane(index)
            colored = runner.process(image, plane_hints, cancel=cancel).image
            laps.lap("sequence")
            _check_plane(colored, snapshot)
            stack[index] = colored
            done += 1
            tracker.report(done / n_planes)
    return stack


def hint_models() -> list[str]:
    """The registered models that accept colour hints."""
    from chromatize.registry import list_models

    names = []
    for spec in list_models():
        try:
            if spec.accepts_hints:
                names.append(spec.name)
        except ChromatizeError:
            continue
    return names


def refuse_unless_accepted(colorizer: Colorizer, hints: HintPoints) -> None:
    """Raise :class:`~chromatize.models.contract.HintsNotSupportedError`, in the widget's
    words, when ``colorizer``'s model has no hint inputs."""
    from chromatize.models.contract import HintsNotSupportedError

    if colorizer.accepts_hints:
        return
    others = ", ".join(hint_models()) or "none is installed"
    raise HintsNotSupportedError(
        f"the '{colorizer.model_name}' model has no hint inputs, so the points of "
        f"'{hints.layer_name}' cannot guide it; set '{HINTS_LABEL}' to none, or choose a model "
        f"that accepts hints ({others})"
    )


@dataclass
class JobOutcome:
    """What a run produced: the colorized array and its record, or why there is none."""

    data: np.ndarray | None = None
    record: dict[str, Any] | None = None
    cancelled: bool = False
    error: str | None = None
    #: seconds per part of the run: "load" (waiting for or loading the model), then those of
    #: :func:`colorize_snapshot`
    timings: dict[str, float] = field(default_factory=dict)


def run_job(
    snapshot: LayerSnapshot,
    options: ColorizeOptions,
    cache: ColorizerCache,
    progress: Progress,
    cancel: CancelCheck,
    prepared_cache: PreparedCache | None = None,
    temporal: bool = False,
    hints: HintPoints | None = None,
) -> JobOutcome:
    """One whole run, meant for a worker thread: load (or reuse) the model, colorize, record.

    ``progress`` receives the fraction done; the GUI thread polls its ``last`` (a float written
    atomically), so the worker never touches a Qt object. Expected failures
    (:class:`chromatize.errors.ChromatizeError`, running out of memory) and cancellation come back
    as a :class:`JobOutcome` whose message names the widget's controls
    (:func:`chromatize.failures.describe_failure`), so the GUI shows a notification instead of a
    traceback. Anything else is a bug and propagates. ``prepared_cache`` (see
    :class:`PreparedCache`) lets planes prepared by an earlier run be reused (not with
    ``temporal``: the sequence prepares each plane itself). ``temporal`` makes colour follow
    motion between the planes of a stack (:func:`colorize_sequence_snapshot`). ``hints``: the
    hints layer's points (:func:`chromatize_napari.hint_points.read_hint_points`), or None.
    """
    timings: dict[str, float] = {}
    try:
        started = time.perf_counter()
        colorizer = cache.get(options)  # waits for a preload of the same model in progress
        timings["load"] = time.perf_counter() - started
        data = colorize_snapshot(
            snapshot, options, colorizer, progress=progress.report, cancel=cancel,
            prepared_cache=prepared_cache, timings=timings, temporal=temporal, hints=hints,
        )
        used = temporal and bool(snapshot.stack_shape)
        record = run_record(options, snapshot, colorizer, used)
        record["hints"] = 0 if hints is None else len(hints)
        if hints is not None and len(hints):
            record["hints_layer"] = hints.layer_name
        return JobOutcome(data=data, record=record, timings=timings)
    except Cancelled:
        return JobOutcome(cancelled=True)
    except Exception as exc:
        if not (isinstance(exc, ChromatizeError) or is_out_of_memory(exc)):
            raise
        return JobOutcome(error=describe_failure(exc, "napari").message)
