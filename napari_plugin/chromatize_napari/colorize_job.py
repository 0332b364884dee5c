"""The work of one "Colorize" run, free of Qt so it can run (and be tested) on any thread.

:class:`ColorizerCache` keeps one loaded :class:`chromatize.pipeline.Colorizer` per session and
reloads only when the model, device, weights file or download permission changes.
:func:`colorize_snapshot` colorizes every plane of a layer snapshot
into a new array, reporting progress and honouring a cancel flag between and within planes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import chromatize
from chromatize.errors import Cancelled, ChromatizeError
from chromatize_napari.layer_data import (
    LayerSnapshot,
    iter_plane_indices,
    map_plane,
)

ProgressCallback = Callable[[float], None]
CancelCheck = Callable[[], bool]


@dataclass(frozen=True)
class ColorizeSettings:
    """Everything the widget lets the user choose, as plain values."""

    model: str = "mobile"
    device: str = "auto"
    weights: str | None = None  # explicit weights file; None = registry resolution
    allow_download: bool = False
    temperature: float | None = None  # None = the model's default (registry)
    saturation: float = 1.0
    render_size: int | None = None  # None = the model's default input size

    def loader_key(self) -> tuple[str, str, str | None]:
        """What a loaded Colorizer depends on (model, device, weights); a change reloads.

        The device is resolved ("auto" -> "cpu" on a CPU-only machine), so switching between
        names of the same device keeps the loaded model. Raises ChromatizeError for a device
        this machine does not have.
        """
        from chromatize.device import resolve_device

        weights = str(Path(self.weights).expanduser().resolve()) if self.weights else None
        return (self.model, str(resolve_device(self.device)), weights)


class ColorizerCache:
    """One loaded Colorizer, reused across runs until the model, device or weights change.

    Thread-safe: :meth:`get` may be called from worker threads; loading happens under a lock so
    two runs never load the same model twice.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, str, str | None] | None = None
        self._colorizer: Any = None
        self.loads = 0  # how many times a model was actually loaded (for users and tests)

    def get(self, settings: ColorizeSettings) -> Any:
        """The Colorizer for ``settings``, loading it (in the caller's thread) if needed.

        Raises the loader's :class:`chromatize.errors.ChromatizeError` subclasses unchanged
        (e.g. ``ModelUnavailableError`` when weights are missing and download is not allowed).
        """
        from chromatize.pipeline import Colorizer, clear_model_cache

        key = settings.loader_key()
        with self._lock:
            if self._colorizer is None or self._key != key:
                # Free the old model (also from the pipeline's process-wide cache) first, so
                # switching models never holds two in memory and a change really reloads.
                self._colorizer = None
                self._key = None
                clear_model_cache()
                self._colorizer = Colorizer(
                    model=settings.model,
                    device=key[1],
                    weights=key[2],
                    allow_download=settings.allow_download,
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


def resolved_temperature(settings: ColorizeSettings) -> float:
    """The temperature a run uses: the chosen one, or the model's registry default."""
    if settings.temperature is not None:
        return float(settings.temperature)
    from chromatize.registry import get_spec

    return float(get_spec(settings.model).default_temperature)


def run_record(settings: ColorizeSettings, snapshot: LayerSnapshot, colorizer: Any) -> dict:
    """The metadata stored with the output layer: model, parameters and source."""
    record = asdict(settings)
    record.update(
        model=str(getattr(colorizer, "model_name", settings.model)),
        device=str(getattr(colorizer, "device", settings.device)),
        weights=str(Path(settings.weights).expanduser().resolve()) if settings.weights else None,
        temperature=resolved_temperature(settings),
        source_layer=snapshot.name,
        contrast_limits=list(snapshot.contrast_limits),
        chromatize_version=chromatize.__version__,
    )
    return record


def colorize_snapshot(
    snapshot: LayerSnapshot,
    settings: ColorizeSettings,
    colorizer: Any,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
) -> np.ndarray:
    """Colorize every plane of ``snapshot`` into a new array of ``snapshot.output_shape``.

    ``progress(fraction)`` is called with the overall fraction done (0..1); ``cancel()`` is
    checked before each plane and passed to the colorizer, which checks it between its stages and
    strips. When it returns True, :class:`chromatize.errors.Cancelled` is raised and the partial
    result is dropped. The snapshot's data is only read. A single 2D plane is returned as the
    colorizer made it (no extra copy); stacks are filled plane by plane.
    """
    n_planes = max(snapshot.n_planes, 1)
    out_dtype = snapshot.output_dtype
    stack: np.ndarray | None = None
    if snapshot.stack_shape:
        stack = np.empty(snapshot.output_shape, dtype=out_dtype)

    colored: np.ndarray | None = None
    for done, index in enumerate(iter_plane_indices(snapshot)):
        if cancel is not None and cancel():
            raise Cancelled("colorization was cancelled; no layer was added")

        def plane_progress(fraction: float, _done: int = done) -> None:
            if progress is not None:
                progress((_done + min(max(float(fraction), 0.0), 1.0)) / n_planes)

        colored = colorizer.colorize(
            map_plane(snapshot, snapshot.data[index]),
            temperature=settings.temperature,  # None lets the Colorizer use the model default
            saturation=settings.saturation,
            render_size=settings.render_size,
            progress=plane_progress,
            cancel=cancel,
        )
        expected = (*snapshot.plane_shape, snapshot.output_channels)
        if colored.shape != expected or colored.dtype != out_dtype:
            raise ChromatizeError(
                f"the colorizer returned {colored.shape} {colored.dtype} for a plane of "
                f"{expected} {out_dtype}; this is a bug in chromatize, please report it"
            )
        if stack is not None:
            stack[index] = colored
        if progress is not None:
            progress((done + 1) / n_planes)
    assert colored is not None  # every snapshot has at least one plane
    return stack if stack is not None else colored


class ProgressBox:
    """The latest progress fraction, written by the worker thread and read by the GUI thread.

    A float attribute write is atomic in CPython, so no lock is needed; the GUI polls it with a
    timer instead of touching Qt objects from the worker.
    """

    def __init__(self) -> None:
        self.fraction = 0.0

    def set(self, fraction: float) -> None:
        self.fraction = max(self.fraction, min(max(float(fraction), 0.0), 1.0))


@dataclass
class JobOutcome:
    """What a run produced: the colorized array and its record, or why there is none."""

    data: np.ndarray | None = None
    record: dict[str, Any] | None = None
    cancelled: bool = False
    error: str | None = None


def run_job(
    snapshot: LayerSnapshot,
    settings: ColorizeSettings,
    cache: ColorizerCache,
    progress_box: ProgressBox,
    cancel: CancelCheck,
) -> JobOutcome:
    """One whole run, meant for a worker thread: load (or reuse) the model, colorize, record.

    Expected failures (:class:`chromatize.errors.ChromatizeError`) and cancellation come back as a
    :class:`JobOutcome` with a user-facing message rather than as exceptions, so the GUI shows a
    notification instead of a traceback. Anything else is a bug and propagates.
    """
    try:
        colorizer = cache.get(settings)
        data = colorize_snapshot(
            snapshot, settings, colorizer, progress=progress_box.set, cancel=cancel
        )
        return JobOutcome(data=data, record=run_record(settings, snapshot, colorizer))
    except Cancelled:
        return JobOutcome(cancelled=True)
    except ChromatizeError as exc:
        return JobOutcome(error=str(exc))
    except MemoryError:
        return JobOutcome(
            error=f"not enough memory to colorize {snapshot.name!r} "
            f"({' x '.join(map(str, snapshot.shape))}); try a smaller render size or a crop"
        )
