"""Live colour hints: re-colorizing only what a hint change affects, off the GUI thread (Qt-free).

While **Live** is on, every change of the hints layer (a point added, moved, deleted, recoloured
or resized) re-colorizes the planes whose hints changed, in place in the output layer. What makes
that fast is the staged pipeline: each plane's :class:`chromatize.pipeline.Prepared` (its
full-resolution lightness) comes from the widget's
:class:`~chromatize_napari.colorize_job.PreparedCache`, so a change costs only ``predict`` and
``finish`` with the new hints.

:class:`LivePlanner` says which planes changed (per-plane digests of their hints, so events that
change nothing, such as selecting a point, start no run); :func:`run_live_job` colorizes those
planes for a worker thread; :func:`suggestion_job` lists the colour suggestions at one point.
The widget (:mod:`chromatize_napari.hint_controls`) debounces the events, drops stale runs and
writes the planes into the layer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from chromatize.errors import Cancelled, ChromatizeError
from chromatize.failures import describe_failure, is_out_of_memory
from chromatize.hints import Hints, suggest_colours
from chromatize.options import ColorizeOptions
from chromatize_napari.colorize_job import (
    CancelCheck,
    ColorizerCache,
    PreparedCache,
    colorize_plane,
    refuse_unless_accepted,
)
from chromatize_napari.hint_points import HintPoints
from chromatize_napari.layer_data import LayerSnapshot, iter_plane_indices

if TYPE_CHECKING:
    from chromatize.hints import ColourSuggestion

#: How many colour suggestions a selected point shows.
SUGGESTIONS = 5


class LivePlanner:
    """Which planes of the output need re-colorizing after the hints changed.

    Remembers the digest of each plane's hints as last written into the output layer
    (:meth:`written`); :meth:`changed` lists the planes whose hints differ from that now.
    """

    def __init__(self) -> None:
        self._written: dict[tuple[int, ...], str] = {}
        self._output: Any = None

    def reset(self, output: Any = None, hints: HintPoints | None = None,
              stack_shape: tuple[int, ...] = ()) -> None:
        """Start over for output ``output`` (a layer's token), written with ``hints``."""
        self._output = output
        self._written = {}
        if hints is not None:
            for index in iter_plane_indices_of(stack_shape):
                self._written[index] = hints.signature(index)

    @property
    def output(self) -> Any:
        return self._output

    def changed(self, hints: HintPoints, stack_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
        """The planes whose hints differ from those last written, in C order."""
        empty = _NO_POINTS.signature(())
        out = []
        for index in iter_plane_indices_of(stack_shape):
            if hints.signature(index) != self._written.get(index, empty):
                out.append(index)
        return out

    def written(self, hints: HintPoints, indices: list[tuple[int, ...]]) -> None:
        for index in indices:
            self._written[index] = hints.signature(index)


def iter_plane_indices_of(stack_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    return list(np.ndindex(*stack_shape))


_NO_POINTS = HintPoints("", np.zeros((0, 0), np.int64), np.zeros(0, bool), np.zeros(0, np.int64),
                        np.zeros(0, np.int64), np.zeros((0, 3), np.float32),
                        np.zeros(0, np.int64))


@dataclass
class LiveOutcome:
    """What one live run produced: new planes by index, or why there are none."""

    planes: dict[tuple[int, ...], np.ndarray] = field(default_factory=dict)
    cancelled: bool = False
    error: str | None = None
    #: seconds: "load", then "read", "prepare", "model", "finish" (see colorize_plane)
    timings: dict[str, float] = field(default_factory=dict)


def run_live_job(snapshot: LayerSnapshot, options: ColorizeOptions, cache: ColorizerCache,
                 prepared_cache: PreparedCache, hints: HintPoints,
                 indices: list[tuple[int, ...]], cancel: CancelCheck) -> LiveOutcome:
    """Re-colorize the planes ``indices`` of ``snapshot`` with ``hints``, for a worker thread.

    Each plane's prepared lightness is reused from ``prepared_cache`` (prepared once per image),
    so this costs ``predict`` + ``finish``. ``cancel()`` (a newer change arrived) stops it
    between stages and strips: the outcome is then ``cancelled`` and holds nothing. Expected
    failures come back as messages in the widget's words, as in
    :func:`chromatize_napari.colorize_job.run_job`.
    """
    timings: dict[str, float] = {}
    try:
        started = time.perf_counter()
        colorizer = cache.get(options)
        timings["load"] = time.perf_counter() - started
        hints.check(snapshot.plane_shape, snapshot.stack_shape, snapshot.name)
        if len(hints):
            refuse_unless_accepted(colorizer, hints)
        planes = {}
        for index in indices:
            if cancel():
                raise Cancelled("superseded by a newer hint change")
            planes[index] = colorize_plane(snapshot, index, options, colorizer, cancel=cancel,
                                           prepared_cache=prepared_cache, timings=timings,
                                           hints=hints.for_plane(index)).image
        return LiveOutcome(planes=planes, timings=timings)
    except Cancelled:
        return LiveOutcome(cancelled=True)
    except Exception as exc:
        if not (isinstance(exc, ChromatizeError) or is_out_of_memory(exc)):
            raise
        return LiveOutcome(error=describe_failure(exc, "napari").message)


@dataclass
class SuggestionOutcome:
    """The colour suggestions at one point (most probable first), or why there are none."""

    point: int
    swatches: list[ColourSuggestion] = field(default_factory=list)
    error: str | None = None


def suggestion_job(snapshot: LayerSnapshot, options: ColorizeOptions, cache: ColorizerCache,
                   prepared_cache: PreparedCache, hints: HintPoints, point: int,
                   k: int = SUGGESTIONS, shown: tuple[int, ...] | None = None
                   ) -> SuggestionOutcome:
    """The model's ``k`` most probable distinct colours at hint point ``point`` (an index into
    ``hints``), for a worker thread: the plane is predicted with every other hint of that plane
    but not this point's own (which the model would only echo), then
    :func:`chromatize.hints.suggest_colours` at the point's pixel. A point on every plane (a 2D
    Points layer over a stack) is looked at on plane ``shown`` (the one on screen; default the
    first)."""
    try:
        colorizer = cache.get(options)
        hints.check(snapshot.plane_shape, snapshot.stack_shape, snapshot.name)
        index = _plane_of(hints, point, snapshot, shown)
        others = _without(hints, index, point)
        if others is not None:
            refuse_unless_accepted(colorizer, hints)
        prepared, prediction = _predict_plane(snapshot, index, options, colorizer,
                                              prepared_cache, others)
        swatches = suggest_colours(prediction, prepared, int(hints.x[point]),
                                   int(hints.y[point]), k)
        return SuggestionOutcome(point, swatches)
    except Exception as exc:
        if not (isinstance(exc, ChromatizeError) or is_out_of_memory(exc)):
            raise
        return SuggestionOutcome(point, error=describe_failure(exc, "napari").message)


def _plane_of(hints: HintPoints, point: int, snapshot: LayerSnapshot,
              shown: tuple[int, ...] | None) -> tuple[int, ...]:
    """The plane point ``point`` is on (``shown`` or the first for a point on every plane)."""
    if not snapshot.stack_shape:
        return ()
    if hints.every_plane[point]:
        if shown is not None and len(shown) == len(snapshot.stack_shape) and all(
                0 <= i < n for i, n in zip(shown, snapshot.stack_shape, strict=True)):
            return tuple(shown)
        return next(iter(iter_plane_indices(snapshot)))
    return tuple(int(v) for v in hints.planes[point])


def _without(hints: HintPoints, index: tuple[int, ...], point: int) -> Hints | None:
    """The hints of plane ``index`` except point ``point``'s, None if no other."""
    keep = hints.on_plane(index)
    keep[point] = False
    which = np.nonzero(keep)[0]
    if not len(which):
        return None
    return Hints(hints.x[which], hints.y[which], hints.rgb[which], hints.size[which])


def _predict_plane(snapshot: LayerSnapshot, index: tuple[int, ...], options: ColorizeOptions,
                   colorizer: Any, prepared_cache: PreparedCache, hints: Hints | None
                   ) -> tuple[Any, Any]:
    """(Prepared, Prediction) of one plane, prepared from the cache when it holds it."""
    from chromatize_napari.colorize_job import plane_key
    from chromatize_napari.layer_data import map_plane

    plane = np.asarray(snapshot.data[index])
    key = plane_key(snapshot, index, plane, colorizer, options)
    prepared = prepared_cache.get(key)
    if prepared is None:
        prepared = colorizer.prepare(map_plane(snapshot, plane), options)
        prepared_cache.put(key, prepared)
    return prepared, colorizer.predict(prepared, options, hints=hints)
