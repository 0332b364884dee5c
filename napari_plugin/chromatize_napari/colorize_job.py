"""The work of one "Colorize" run, free of Qt so it can run (and be tested) on any thread.

The widget's values are one :class:`chromatize.options.ColorizeOptions` (defaults and checks live
there, not here). :class:`ColorizerCache` keeps one loaded :class:`chromatize.pipeline.Colorizer`
per session and reloads only when what the loaded model depends on changes (model, weights file,
device, download permission). :func:`colorize_snapshot` colorizes every plane of a layer snapshot
into a new array, reporting progress (through :class:`chromatize.progress.Progress`, so it never
goes back) and honouring a cancel flag between and within planes. :func:`run_job` is a whole run
for a worker thread; failures come back as messages from
:func:`chromatize.failures.describe_failure`, in the widget's words.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import chromatize
from chromatize.errors import Cancelled, ChromatizeError
from chromatize.failures import describe_failure, is_out_of_memory
from chromatize.options import ColorizeOptions
from chromatize.progress import Progress, ProgressCallback
from chromatize_napari.layer_data import (
    LayerSnapshot,
    iter_plane_indices,
    map_plane,
)

if TYPE_CHECKING:
    from chromatize.pipeline import Colorizer

CancelCheck = Callable[[], bool]
#: (model, weights file resolved or None, device resolved, download permission)
LoaderKey = tuple[str, str | None, str, bool]


def resolved_weights(options: ColorizeOptions) -> str | None:
    """The weights file ``options`` name, as an absolute path (None: the model's own)."""
    return str(Path(options.weights).expanduser().resolve()) if options.weights else None


def loader_key(options: ColorizeOptions) -> LoaderKey:
    """What a loaded Colorizer for ``options`` depends on; a change of it reloads.

    The weights path and the device are resolved ("auto" -> "cpu" on a CPU-only machine), so
    switching between names of the same file or device keeps the loaded model. Raises
    :class:`chromatize.errors.DeviceUnavailableError` for a device this machine does not have.
    """
    from chromatize.device import resolve_device

    return (options.model, resolved_weights(options), str(resolve_device(options.device)),
            options.allow_download)


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

    def get(self, options: ColorizeOptions) -> Colorizer:
        """The Colorizer for ``options``, loading it (in the caller's thread) if needed.

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
                model, weights, device, _allow = key
                self._colorizer = Colorizer.from_options(
                    options.replace(model=model, weights=weights, device=device)
                )
                self._key = key
                self.loads += 1
            return self._colorizer

    def clear(self) -> None:
        """Forget the loaded model (the next run loads it again)."""
        from chromatize.pipeline import clear_model_cache

        with self._lock:
            self._colorizer = None
            self._key = None
            clear_model_cache()


def run_record(options: ColorizeOptions, snapshot: LayerSnapshot,
               colorizer: Colorizer) -> dict[str, Any]:
    """The metadata stored with the output layer: the options (model, weights file, device and
    temperature as the run used them), the source layer and its contrast limits."""
    record = options.as_mapping()
    record.update(
        model=str(colorizer.model_name),
        device=str(colorizer.device),
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


def colorize_snapshot(
    snapshot: LayerSnapshot,
    options: ColorizeOptions,
    colorizer: Colorizer,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
) -> np.ndarray:
    """Colorize every plane of ``snapshot`` into a new array of ``snapshot.output_shape``.

    ``progress(fraction)`` is called with the overall fraction done (0..1, never decreasing);
    ``cancel()`` is checked before each plane and passed to the colorizer, which checks it
    between its stages and strips. When it returns True, :class:`chromatize.errors.Cancelled` is
    raised and the partial result is dropped. The snapshot's data is only read. A single 2D plane
    is returned as the colorizer made it (no extra copy); stacks are filled plane by plane.
    """
    n_planes = max(snapshot.n_planes, 1)
    tracker = Progress(progress, cancel)
    stack: np.ndarray | None = None
    if snapshot.stack_shape:
        stack = np.empty(snapshot.output_shape, dtype=snapshot.output_dtype)

    colored: np.ndarray | None = None
    for done, index in enumerate(iter_plane_indices(snapshot)):
        tracker.check()
        colored = colorizer.colorize(
            map_plane(snapshot, snapshot.data[index]),
            options,
            progress=tracker.span(done / n_planes, (done + 1) / n_planes),
            cancel=cancel,
        )
        _check_plane(colored, snapshot)
        if stack is not None:
            stack[index] = colored
        tracker.report((done + 1) / n_planes)
    assert colored is not None  # every snapshot has at least one plane
    return stack if stack is not None else colored


@dataclass
class JobOutcome:
    """What a run produced: the colorized array and its record, or why there is none."""

    data: np.ndarray | None = None
    record: dict[str, Any] | None = None
    cancelled: bool = False
    error: str | None = None


def run_job(
    snapshot: LayerSnapshot,
    options: ColorizeOptions,
    cache: ColorizerCache,
    progress: Progress,
    cancel: CancelCheck,
) -> JobOutcome:
    """One whole run, meant for a worker thread: load (or reuse) the model, colorize, record.

    ``progress`` receives the fraction done; the GUI thread polls its ``last`` (a float written
    atomically), so the worker never touches a Qt object. Expected failures
    (:class:`chromatize.errors.ChromatizeError`, running out of memory) and cancellation come back
    as a :class:`JobOutcome` whose message names the widget's controls
    (:func:`chromatize.failures.describe_failure`), so the GUI shows a notification instead of a
    traceback. Anything else is a bug and propagates.
    """
    try:
        colorizer = cache.get(options)
        data = colorize_snapshot(
            snapshot, options, colorizer, progress=progress.report, cancel=cancel
        )
        return JobOutcome(data=data, record=run_record(options, snapshot, colorizer))
    except Cancelled:
        return JobOutcome(cancelled=True)
    except Exception as exc:
        if not (isinstance(exc, ChromatizeError) or is_out_of_memory(exc)):
            raise
        return JobOutcome(error=describe_failure(exc, "napari").message)
