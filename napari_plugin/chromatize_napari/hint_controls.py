"""The widget's colour-hint controls (the Qt edge): Hints field, Add hints layer, Live, swatches.

- **Hints**: a Points layer whose points are colour hints (face colour = hint colour, size =
  patch side in the input's pixels; :mod:`chromatize_napari.hint_points`), used by Colorize.
- **Add hints layer**: a Points layer over the input layer (same transforms) in add mode.
- **Live**: adding, moving, deleting, recolouring or resizing a point re-colorizes the output
  layer in place: changes are debounced (:data:`LIVE_DELAY_MS`), the work runs on a napari
  thread worker (:func:`chromatize_napari.live_hints.run_live_job`: only ``predict`` and
  ``finish``, the planes' lightness prepared once), a run superseded by a newer change is
  cancelled and its result dropped. Without an output layer yet, the first change runs Colorize.
- **Suggestions**: selecting one point lists the model's most probable colours there as swatches;
  clicking one sets the point's colour.

Models without hint inputs grey all of these out (with a tooltip saying why) and Colorize then
runs without hints.
"""

import threading
import time
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, PushButton
from napari.layers import Points
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error
from qtpy.QtCore import QTimer

from chromatize.errors import ChromatizeError
from chromatize.failures import describe_failure
from chromatize_napari.colorize_job import hint_models
from chromatize_napari.hint_points import (
    DEFAULT_HINT_COLOUR,
    HINTS_LABEL,
    HintPoints,
    hints_layer_kwargs,
    read_hint_points,
)
from chromatize_napari.layer_data import METADATA_KEY, snapshot_layer
from chromatize_napari.live_hints import (
    LiveOutcome,
    LivePlanner,
    SuggestionOutcome,
    run_live_job,
    suggestion_job,
)

#: A hint change waits this long for the next one before re-colorizing (a drag is many changes).
LIVE_DELAY_MS = 40
#: The Points layer events that may change the hints.
_POINT_EVENTS = ("data", "face_color", "current_face_color", "size", "current_size")

HINTS_HELP = (
    "A Points layer of colour hints: each point's face colour is the colour that spot should "
    "have, its size the side of the square it covers, in the input's pixels. For a stack, a "
    "point guides the plane it is on (with Temporal consistency, also the planes after it). "
    "None: colorize without hints."
)
ADD_HELP = (
    f"Add a Points layer over the input layer for hints, in add mode: click the image to put "
    f"a hint ({DEFAULT_HINT_COLOUR} at first; change the colour in the layer controls or pick "
    "a suggestion)."
)
LIVE_HELP = (
    "Re-colorize the output layer whenever a hint point is added, moved, deleted or "
    "recoloured (the image's lightness is prepared once; each change runs only the model and "
    "the full-resolution finish). Planes are re-colorized on their own (press Colorize to carry "
    "hints along the motion of a stack)."
)
SUGGESTIONS_HELP = "Select one hint point to see the model's most probable colours there."


def no_hints_reason(model: str) -> str | None:
    """Why model ``model`` cannot take hints (the hint controls' tooltip), None if it can."""
    from chromatize.registry import get_spec

    try:
        if get_spec(model).accepts_hints:
            return None
    except ChromatizeError as exc:
        return f"Hints are unavailable: {describe_failure(exc, 'napari').message}"
    others = ", ".join(hint_models()) or "none is installed"
    return (f"The '{model}' model has no hint inputs (it was not trained with colour hints), so "
            f"it cannot follow them; choose a model that accepts hints ({others}).")


def _text_colour(rgb: tuple[float, float, float]) -> str:
    luma = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]
    return "black" if luma > 0.45 else "white"


class HintControls:
    """The hint controls of one :class:`~chromatize_napari.widget.ColorizeWidget` and their
    live machinery. ``owner`` is the widget: its viewer, caches, options and output."""

    def __init__(self, owner: Any) -> None:
        self.owner = owner
        self.hints = ComboBox(label=HINTS_LABEL, choices=self._points_choices, nullable=True,
                              value=None, tooltip=HINTS_HELP)
        self.add_button = PushButton(text="Add hints layer", tooltip=ADD_HELP)
        self.live = CheckBox(text="Live", value=False, tooltip=LIVE_HELP)
        self.suggestion_label = Label(value=SUGGESTIONS_HELP)
        self.swatch_row = Container(layout="horizontal", labels=False)
        self.swatch_row.margins = (0, 0, 0, 0)
        #: The swatch buttons shown now (one per suggestion, most probable first).
        self.swatches: list[PushButton] = []
        self.suggested: SuggestionOutcome | None = None
        self.planner = LivePlanner()
        #: Live runs whose result was dropped because a newer change superseded them.
        self.dropped = 0
        #: Live updates written into the output layer.
        self.updates = 0
        #: Seconds from the last hint change to the output layer updated, for the last update.
        self.last_latency: float | None = None
        self.last_timings: dict[str, float] = {}
        self._watched: Points | None = None
        self._worker: Any = None
        self._cancel: threading.Event | None = None
        self._pending = False
        #: Counts hint changes: a run started before the latest change is stale.
        self._generation = 0
        self._changed_at = 0.0
        self._last_error: str | None = None
        self._suggest_worker: Any = None
        self._suggest_again: int | None = None
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(LIVE_DELAY_MS)
        self._timer.timeout.connect(self.update_live)

    @property
    def widgets(self) -> list[Any]:
        return [self.hints, Container(widgets=[self.add_button, self.live], layout="horizontal",
                                      labels=False), self.suggestion_label, self.swatch_row]

    def connect(self) -> None:
        self.hints.changed.connect(self._watch)
        self.add_button.changed.connect(self.add_hints_layer)
        self.live.changed.connect(self._on_live_toggled)
        self.owner.model.changed.connect(self.update_enabled)
        self.update_enabled()

    # ------------------------------------------------------------------------ state
    def _points_choices(self, _widget: Any = None) -> list[tuple[str, Points]]:
        return [(layer.name, layer) for layer in self.owner._viewer.layers
                if isinstance(layer, Points)]

    @property
    def available(self) -> bool:
        """Whether the chosen model takes hints (the controls are enabled)."""
        return no_hints_reason(str(self.owner.model.value)) is None

    def update_enabled(self, *_: Any) -> None:
        """Grey the controls out, saying why, for a model without hint inputs."""
        reason = no_hints_reason(str(self.owner.model.value))
        controls = {self.hints: HINTS_HELP, self.add_button: ADD_HELP, self.live: LIVE_HELP,
                    self.suggestion_label: SUGGESTIONS_HELP}
        for control, help_text in controls.items():
            control.enabled = reason is None
            control.tooltip = help_text if reason is None else reason
        if reason is not None:
            self._show_swatches(None)

    @property
    def running(self) -> bool:
        """Whether a live run is in progress."""
        return self._worker is not None

    def hints_for_run(self, layer: Any) -> HintPoints | None:
        """The hint points Colorize uses for input ``layer`` (None: no hints layer, or the
        model takes none). Raises :class:`chromatize.hints.HintError` for unusable points."""
        points = self.hints.value
        if points is None or not self.available or points not in self.owner._viewer.layers:
            return None
        hints = read_hint_points(points, layer)
        snapshot = snapshot_layer(layer)
        return hints.check(snapshot.plane_shape, snapshot.stack_shape, snapshot.name)

    def written(self, output: Any, snapshot: Any, hints: HintPoints | None) -> None:
        """Colorize wrote ``output`` with ``hints``: later live changes update it in place."""
        self.planner.reset(id(output), hints, snapshot.stack_shape)
        layers, points = self.owner._viewer.layers, self.hints.value
        if points is not None and points in layers and output in layers \
                and layers.index(points) < layers.index(output):
            layers.move(layers.index(points), len(layers))  # keep the hints visible on top

    def after_run(self) -> None:
        """A Colorize run ended: apply the hint changes made meanwhile."""
        if self._pending:
            self._pending = False
            self.schedule()

    # ------------------------------------------------------------------------ the hints layer
    def add_hints_layer(self, *_: Any) -> Points | None:
        """Add a Points layer over the input layer for hints, in add mode, and choose it."""
        image = self.owner.input_layer.value
        if image is None:
            show_error("chromatize: choose an 'Input layer' first; the hints layer is placed "
                       "over it")
            return None
        layer = self.owner._viewer.add_points(**hints_layer_kwargs(image, f"{image.name} hints"))
        layer.mode = "add"
        self.owner._viewer.layers.selection.active = layer
        self.hints.reset_choices()
        self.hints.value = layer
        return layer

    def _watch(self, *_: Any) -> None:
        points = self.hints.value
        if points is self._watched:
            return
        self.unwatch()
        if points is not None:
            for name in _POINT_EVENTS:
                getattr(points.events, name).connect(self._on_points_changed)
            points.selected_data.events.items_changed.connect(self._on_selection)
            self._watched = points
        self._show_swatches(None)

    def unwatch(self) -> None:
        if self._watched is None:
            return
        for name in _POINT_EVENTS:
            getattr(self._watched.events, name).disconnect(self._on_points_changed)
        self._watched.selected_data.events.items_changed.disconnect(self._on_selection)
        self._watched = None

    # ------------------------------------------------------------------------ live
    def _on_live_toggled(self, on: bool) -> None:
        if on:
            self.schedule()

    def _on_points_changed(self, event: Any = None) -> None:
        if self.live.value:
            self.schedule()

    def schedule(self) -> None:
        """Re-colorize after :data:`LIVE_DELAY_MS` without another change."""
        if not (self.live.value and self.available):
            return
        self._changed_at = time.perf_counter()
        self._generation += 1
        if self._cancel is not None:  # a run in flight is stale now
            self._cancel.set()
        self._timer.start()

    def live_target(self, layer: Any) -> Any:
        """The output layer live changes update: the one the last run wrote for ``layer``."""
        target = self.owner.last_output
        if target is None or target not in self.owner._viewer.layers \
                or self.planner.output != id(target):
            return None
        record = target.metadata.get(METADATA_KEY, {})
        return target if record.get("source_layer") == layer.name else None

    def update_live(self, *_: Any) -> None:
        """Re-colorize the planes whose hints changed (or run Colorize if there is no output)."""
        owner = self.owner
        if not (self.live.value and self.available) or owner._destroyed:
            return
        if owner.running or self._worker is not None:
            self._pending = True
            return
        layer, points = owner.input_layer.value, self.hints.value
        if layer is None or points is None:
            return
        target = self.live_target(layer)
        if target is None:
            owner.run()
            return
        try:
            snapshot = snapshot_layer(layer)
            options = owner.options()
            hints = read_hint_points(points, layer)
            indices = self.planner.changed(hints, snapshot.stack_shape)
        except ChromatizeError as exc:
            self._report(describe_failure(exc, "napari").message)
            return
        if not indices:
            return
        self._start_live(snapshot, options, hints, indices, target)

    def _start_live(self, snapshot: Any, options: Any, hints: HintPoints,
                    indices: list[tuple[int, ...]], target: Any) -> None:
        owner = self.owner
        self._cancel = threading.Event()
        self._pending = False
        changed_at, generation = self._changed_at, self._generation
        owner._watch(owner.input_layer.value)
        worker = create_worker(run_live_job, snapshot, options, owner.cache, owner.prepared,
                               hints, indices, self._cancel.is_set, _start_thread=False)
        worker.returned.connect(lambda outcome: self._on_live_returned(
            outcome, target, hints, indices, changed_at, generation))
        worker.finished.connect(self._on_live_finished)
        self._worker = worker
        owner.status.value = "live: re-colorizing..."
        worker.start()

    def _on_live_returned(self, outcome: LiveOutcome, target: Any, hints: HintPoints,
                          indices: list[tuple[int, ...]], changed_at: float,
                          generation: int) -> None:
        if outcome.cancelled or generation != self._generation:  # superseded: drop it
            self.dropped += 1
            return
        if outcome.error is not None:
            self._report(outcome.error)
            return
        if target not in self.owner._viewer.layers:
            return
        started = time.perf_counter()
        if len(outcome.planes) == 1 and () in outcome.planes:
            target.data = outcome.planes[()]
        else:
            data = target.data
            for index, plane in outcome.planes.items():
                data[index] = plane
            target.refresh()
        now = time.perf_counter()
        self.planner.written(hints, indices)
        self._last_error = None
        self.updates += 1
        self.last_latency = now - changed_at
        self.last_timings = {**outcome.timings, "layer": now - started}
        self.owner.status.value = (f"live: {len(indices)} plane(s) updated "
                                   f"{self.last_latency * 1000:.0f} ms after the change")

    def _on_live_finished(self) -> None:
        self._worker = None
        self._cancel = None
        if self._pending:
            self._pending = False
            self.update_live()

    def _report(self, message: str) -> None:
        """A live failure: in the status line, and as a notification for the first failure
        since the last update (dragging a point off the image fails at every step)."""
        self.owner.status.value = f"live: {message}"
        if self._last_error is None:
            show_error(f"chromatize: {message}")
        self._last_error = message

    def cancel(self) -> None:
        """Drop a live update in flight and any waiting to start."""
        self._pending = False
        if self._cancel is not None:
            self._cancel.set()
        self._timer.stop()

    # ------------------------------------------------------------------------ suggestions
    def _on_selection(self, event: Any = None) -> None:
        points = self._watched
        selected = [] if points is None else sorted(points.selected_data)
        if len(selected) != 1 or not self.available:
            self._suggest_again = None
            self._show_swatches(None)
            return
        self.suggest(int(selected[0]))

    def suggest(self, point: int) -> None:
        """Find the colour suggestions at hint point ``point`` on a worker, then show them."""
        owner = self.owner
        if self._suggest_worker is not None:
            self._suggest_again = point
            return
        layer, points = owner.input_layer.value, self._watched
        if layer is None or points is None:
            return
        try:
            snapshot = snapshot_layer(layer)
            options = owner.options()
            hints = read_hint_points(points, layer)
        except ChromatizeError as exc:
            self.suggestion_label.value = describe_failure(exc, "napari").message
            return
        self.suggestion_label.value = "finding colour suggestions..."
        worker = create_worker(suggestion_job, snapshot, options, owner.cache, owner.prepared,
                               hints, point, shown=self._shown_plane(layer),
                               _start_thread=False)
        worker.returned.connect(self._on_suggested)
        worker.finished.connect(self._on_suggest_finished)
        self._suggest_worker = worker
        worker.start()

    def _shown_plane(self, layer: Any) -> tuple[int, ...]:
        """The plane of ``layer`` the viewer shows now (its leading data coordinates)."""
        if layer.ndim < 3:
            return ()
        world = np.asarray(self.owner._viewer.dims.point, dtype=float)[-layer.ndim:]
        data = np.asarray(layer.world_to_data(world), dtype=float)
        return tuple(int(v) for v in np.rint(data[: layer.ndim - 2]))

    def _on_suggested(self, outcome: SuggestionOutcome) -> None:
        """Show ``outcome`` if its point is still the one selected (else a newer one comes)."""
        points = self._watched
        if points is not None and sorted(points.selected_data) == [outcome.point] \
                and self.available:
            self._show_swatches(outcome)

    @property
    def suggesting(self) -> bool:
        """Whether colour suggestions are being computed."""
        return self._suggest_worker is not None

    def _on_suggest_finished(self) -> None:
        self._suggest_worker = None
        if self._suggest_again is not None:
            point, self._suggest_again = self._suggest_again, None
            self.suggest(point)

    def _show_swatches(self, outcome: SuggestionOutcome | None) -> None:
        self.swatch_row.clear()
        self.swatches = []
        self.suggested = outcome
        if outcome is None:
            self.suggestion_label.value = SUGGESTIONS_HELP
            return
        if outcome.error is not None:
            self.suggestion_label.value = f"no suggestions: {outcome.error}"
            return
        self.suggestion_label.value = (f"Suggestions for point {outcome.point + 1} (click one to "
                                       "use it):")
        for swatch in outcome.swatches:
            button = PushButton(text=f"{swatch.probability:.0%}",
                                tooltip=f"{swatch.hex}: probability {swatch.probability:.0%}")
            button.native.setStyleSheet(f"background-color: {swatch.hex}; "
                                        f"color: {_text_colour(swatch.rgb)};")
            button.changed.connect(lambda *_, s=swatch, p=outcome.point: self.use(p, s.rgb))
            self.swatch_row.append(button)
            self.swatches.append(button)

    def use(self, point: int, rgb: tuple[float, float, float]) -> None:
        """Set hint point ``point``'s face colour to ``rgb`` (a swatch was clicked)."""
        points = self._watched
        if points is None or not 0 <= point < len(points.data):
            return
        colours = np.array(points.face_color, dtype=float)
        colours[point, :3] = rgb
        points.face_color = colours
