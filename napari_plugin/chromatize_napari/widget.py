"""The "Colorize" dock widget: magicgui controls, a napari thread worker and the result layer.

This is the Qt edge of the plug-in. What a run does lives in :mod:`chromatize_napari.colorize_job`
and :mod:`chromatize_napari.layer_data`; this module only wires controls, the worker threads, the
progress bar and notifications together, all on the GUI thread.

Speed: when the widget opens, and whenever the model, weights file, device or download choice
changes, the chosen model is loaded and warmed up on a napari thread worker (never on the GUI
thread); a run started meanwhile waits for that load instead of loading again. A failing preload
only shows in the widget's model line (no notification): pressing Colorize then tells why, as
usual. The last layer's prepared planes are kept (:class:`~chromatize_napari.colorize_job.
PreparedCache`) and dropped when that layer's data or contrast limits change or it is removed.

Colour hints (the Hints field, Add hints layer, Live, colour suggestions) are
:class:`chromatize_napari.hint_controls.HintControls`; Colorize passes the hints layer's points
to the run.

The controls' labels, tooltips, ranges and choices come from :data:`chromatize.options.SETTINGS`
and their initial values from :class:`chromatize.options.ColorizeOptions` (one table feeds the
widget and the engine); failures are worded by :func:`chromatize.failures.describe_failure` for
napari (control labels, not flags).

No ``from __future__ import annotations`` here on purpose: napari inspects the constructor's
annotations at run time to inject the viewer, and magicgui resolves annotations the same way.
"""

import threading
import time
import weakref
from typing import Any

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    FloatSpinBox,
    Label,
    PushButton,
    SpinBox,
)
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer

from chromatize.device import available_devices
from chromatize.errors import ChromatizeError
from chromatize.failures import describe_failure
from chromatize.options import (
    MAX_RENDER_SIZE,
    SATURATION_SLIDER_MAX,
    SETTINGS,
    ColorizeOptions,
)
from chromatize.progress import Progress
from chromatize_napari.colorize_job import (
    ColorizerCache,
    JobOutcome,
    PreparedCache,
    preload,
    run_job,
    temporal_available,
)
from chromatize_napari.hint_controls import HintControls
from chromatize_napari.hint_points import HintPoints
from chromatize_napari.layer_data import (
    TRANSFORM_KEYS,
    LayerSnapshot,
    is_output_layer,
    output_layer_kwargs,
    show_thumbnail_in_contrast_limits,
    snapshot_layer,
)

#: Loaded models survive closing and re-opening the widget for the whole napari session.
SESSION_CACHE = ColorizerCache()

#: Value of the "Output" choice that adds a new layer (other choices are existing layers).
NEW_LAYER = "new layer"

_PROGRESS_STEPS = 1000
_PROGRESS_POLL_MS = 100
#: A change of the model controls preloads after this pause (typing a weights path is many
#: changes; only the last one is loaded).
_PRELOAD_DELAY_MS = 300

#: The settings' defaults (the widget's initial values); labels, help texts, ranges and choices
#: come from :data:`chromatize.options.SETTINGS`.
_DEFAULTS = ColorizeOptions()
#: Step of the temperature box; its minimum is one step above SETTINGS' exclusive minimum (0).
_TEMPERATURE_STEP = 0.01
#: Upper end of the temperature box (SETTINGS gives no maximum: the library takes any T > 0).
_TEMPERATURE_BOX_MAX = 2.0
_SATURATION_STEP = 0.05
_RENDER_SIZE_STEP = 16

_STATUS_TEXT = {
    "shipped": "ready",
    "cached": "ready, downloaded",
    "downloadable": "needs download or weights file",
    "missing": "not available",
}

_INPUT_TOOLTIP = (
    "Image layer to colorize (it is never modified). Grayscale layers of any dtype (uint8, "
    "uint16, float, ...) are mapped through the layer's contrast limits, so the result matches "
    "what you see; RGB/RGBA layers are colorized from their lightness (alpha is kept). Stacks "
    "(T/Z, Y, X) are colorized plane by plane (see Temporal consistency)."
)

#: Label and help of the "Temporal consistency" choice (napari-only: the CLI's --temporal is
#: always shown there; here it only appears for stacks), worded like chromatize.options.SETTINGS.
TEMPORAL_LABEL = "Temporal consistency"
TEMPORAL_HELP = (
    "Keep colour steady from plane to plane: optical flow between neighbouring planes carries "
    "each plane's colours to the next wherever the motion is reliable, so colour follows moving "
    "content instead of flickering; a sudden change starts afresh. The planes are taken in "
    "order along the last axis before Y and X (the others: separate sequences). On by default "
    "unless that axis is labelled Z (a depth stack has no motion to follow). Off: every plane "
    "on its own."
)


def model_choices() -> list[tuple[str, str]]:
    """(label, name) for every registered model the editors offer (not the baselines of
    ``chromatize eval``), labelled with whether it can run here."""
    from chromatize.weights import model_status

    choices = []
    for name in _editor_models():
        try:
            status = _STATUS_TEXT.get(model_status(name), "unknown")
        except ChromatizeError as exc:
            status = f"unavailable: {describe_failure(exc, 'napari').message}"
        choices.append((f"{name} ({status})", name))
    return choices


def default_model() -> str:
    """The first offered model whose weights are here, else the first offered model."""
    from chromatize.weights import model_status

    names = _editor_models()
    for name in names:
        try:
            if model_status(name) in ("shipped", "cached"):
                return name
        except ChromatizeError:
            continue
    return names[0]


def _editor_models() -> list[str]:
    from chromatize.registry import list_models

    return [spec.name for spec in list_models()]


def device_choices() -> list[tuple[str, str]]:
    """(label, name) for each device choice of SETTINGS, saying which ones this machine has."""
    present = available_devices()
    choices = []
    for name in SETTINGS["device"].choices:
        if name == "auto":
            label = f"auto ({present[0]})"
        elif name in present:
            label = name
        else:
            label = f"{name} (not available)"
        choices.append((label, name))
    return choices


def _help(name: str, extra: str = "") -> str:
    """The tooltip of setting ``name``: its SETTINGS help text, plus what the widget adds."""
    return f"{SETTINGS[name].help} {extra}".strip()


def _model_controls() -> tuple[ComboBox, FileEdit, CheckBox]:
    """The controls choosing the model: model, weights file, download permission."""
    model = ComboBox(
        label=SETTINGS["model"].label,
        choices=model_choices(),
        value=default_model(),
        tooltip=_help("model", "The label says whether its weights are available."),
    )
    weights = FileEdit(
        label=SETTINGS["weights"].label,
        mode="r",
        filter="Weights (*.safetensors *.pth *.pt)",
        nullable=True,
        value=_DEFAULTS.weights,
        tooltip=_help("weights", f"Empty: {SETTINGS['weights'].default_text} (shipped or "
                      "cached) weights."),
    )
    allow_download = CheckBox(
        text=SETTINGS["allow_download"].label,
        value=_DEFAULTS.allow_download,
        tooltip=_help("allow_download"),
    )
    return model, weights, allow_download


def _look_controls() -> tuple[FloatSpinBox, FloatSlider, SpinBox]:
    """The controls shaping the colours: temperature, saturation, render size (0 = auto)."""
    temp, sat, size = SETTINGS["temperature"], SETTINGS["saturation"], SETTINGS["render_size"]
    temperature = FloatSpinBox(
        label=temp.label,
        min=(temp.minimum or 0.0) + _TEMPERATURE_STEP,
        max=temp.maximum if temp.maximum is not None else _TEMPERATURE_BOX_MAX,
        step=_TEMPERATURE_STEP,
        tooltip=_help("temperature", "Set to the model's default when you change the model."),
    )
    saturation = FloatSlider(
        label=sat.label,
        min=sat.minimum or 0.0,
        max=sat.maximum if sat.maximum is not None else SATURATION_SLIDER_MAX,
        step=_SATURATION_STEP,
        value=_DEFAULTS.saturation,
        tooltip=_help("saturation"),
    )
    render_size = SpinBox(
        label=f"{size.label} (0 = auto)",
        min=0,  # 0 stands for None: the model's default
        max=int(size.maximum if size.maximum is not None else MAX_RENDER_SIZE),
        step=_RENDER_SIZE_STEP,
        value=_DEFAULTS.render_size or 0,
        tooltip=_help("render_size", f"0 = {size.default_text}."),
    )
    return temperature, saturation, render_size


def _device_control() -> ComboBox:
    return ComboBox(
        label=SETTINGS["device"].label,
        choices=device_choices(),
        value=_DEFAULTS.device,
        tooltip=_help("device"),
    )


def _unset_label(label: str) -> bool:
    """Whether an axis label is napari's placeholder ("-3", "0", "axis -3"), not the user's."""
    text = label.strip().removeprefix("axis ").strip()
    return text.lstrip("-").isdigit()


def plane_axis_label(viewer: Any, layer: Any) -> str:
    """The label of ``layer``'s sequence axis (the last one before Y, X), "" for a 2D layer:
    the layer's own axis label, or else the viewer's for that axis."""
    if layer.ndim < 3:
        return ""
    axis = layer.ndim - 3
    labels = [str(label) for label in getattr(layer, "axis_labels", ())]
    own = labels[axis] if axis < len(labels) else ""
    if own and not _unset_label(own):
        return own
    world = list(viewer.dims.axis_labels)
    position = len(world) - layer.ndim + axis
    return str(world[position]) if 0 <= position < len(world) else own


def temporal_default(viewer: Any, layer: Any) -> bool:
    """Whether Temporal consistency starts on for ``layer``: for a stack, unless its sequence
    axis is labelled as depth (a label starting with "z" or "Z"), and only where the optical
    flow can run (OpenCV installed)."""
    if layer is None or layer.ndim < 3 or not temporal_available():
        return False
    return not plane_axis_label(viewer, layer).strip().lower().startswith("z")


def _message(exc: BaseException) -> str:
    """A notification's text for ``exc``, in the widget's words (control labels, not flags)."""
    return f"chromatize: {describe_failure(exc, 'napari').message}"


class ColorizeWidget(Container):
    """Dock widget that colorizes an Image layer into a new RGB layer (or a chosen output layer)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer,
                 cache: ColorizerCache | None = None) -> None:
        self._viewer = napari_viewer
        self.cache = cache if cache is not None else SESSION_CACHE
        self._worker: Any = None
        self._cancel_event: threading.Event | None = None
        self._progress: Progress | None = None
        self._pbar: progress | None = None
        self._pbar_position = 0
        self._started = 0.0
        self._running_text = ""
        self._pressed = 0.0  # when the current run was asked for (Colorize pressed)
        self._may_download = False  # whether the current run may download weights
        #: The layer the last successful run created or updated (None before that).
        self.last_output: Image | None = None
        #: "done", "cancelled" or "error" after a run finished; None before the first run.
        self.last_outcome: str | None = None
        #: Seconds of the last successful run: the job's parts ("load", "read", "prepare",
        #: "model", "finish"), "layer" (writing the output layer) and "total" (from pressing
        #: Colorize to the output layer being written).
        self.last_timings: dict[str, float] = {}
        #: The last layer's prepared planes (reused by repeat runs on the same data).
        self.prepared = PreparedCache()
        self._watched: Image | None = None  # the layer whose events drop self.prepared
        self._preload_worker: Any = None
        self._preload_again = False
        self._destroyed = False
        #: The input layer Temporal consistency was last set for (a weak reference).
        self._temporal_layer: Any = None
        #: None before any preload finished, else the model state the model line shows:
        #: "loading", "ready" or "failed".
        self.preload_state: str | None = None

        self.input_layer = ComboBox(
            label="Input layer", choices=self._input_choices, tooltip=_INPUT_TOOLTIP
        )
        self.model, self.weights, self.allow_download = _model_controls()
        self.temperature, self.saturation, self.render_size = _look_controls()
        self.device = _device_control()
        #: Hints field, Add hints layer, Live and the colour suggestions (greyed out for models
        #: without hint inputs).
        self.hint_controls = HintControls(self)
        #: Shown only when the input layer is a stack (see :meth:`_update_temporal`).
        self.temporal = CheckBox(text=TEMPORAL_LABEL, value=False, tooltip=TEMPORAL_HELP,
                                 visible=False)
        self.output = ComboBox(
            label="Output",
            choices=self._output_choices,
            tooltip="Add a new '<input> (colorized)' layer, or replace the data of a layer "
            "this plug-in made earlier.",
        )
        self.run_button = PushButton(text="Colorize")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        #: Whether the chosen model is loaded, loading, or why it could not be (quietly).
        self.model_state = Label(value="", tooltip="The chosen model is loaded in the background "
                                 "so that Colorize starts at once.")
        super().__init__(
            widgets=[
                self.input_layer,
                self.temporal,
                self.model,
                self.weights,
                self.allow_download,
                self.temperature,
                self.saturation,
                self.render_size,
                self.device,
                self.model_state,
                *self.hint_controls.widgets,
                self.output,
                Container(widgets=[self.run_button, self.cancel_button], layout="horizontal",
                          labels=False),
                self.status,
            ]
        )
        self._connect()

    def _connect(self) -> None:
        """The progress timer and the controls' signals; initial temperature and choices."""
        self._progress_timer = QTimer()
        self._progress_timer.setInterval(_PROGRESS_POLL_MS)
        self._progress_timer.timeout.connect(self._poll_progress)
        self._set_default_temperature()
        self.model.changed.connect(self._set_default_temperature)
        self.input_layer.changed.connect(self.output.reset_choices)
        self.input_layer.changed.connect(self._update_temporal)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.native.destroyed.connect(self._on_destroyed)
        self.hint_controls.connect()
        self._viewer.layers.events.removed.connect(self._on_layer_removed)
        # napari connects reset_choices to layer list changes for docked widgets; renames and
        # layers added before docking are covered by resetting here too.
        self.reset_choices()
        self._update_temporal()
        # Preload the chosen model now, and again (after a pause) when a model control changes.
        self._preload_timer = QTimer()
        self._preload_timer.setSingleShot(True)
        self._preload_timer.setInterval(_PRELOAD_DELAY_MS)
        self._preload_timer.timeout.connect(self.preload)
        for control in (self.model, self.weights, self.allow_download, self.device):
            control.changed.connect(self._schedule_preload)
        self.preload()

    # ----------------------------------------------------------------------------- choices
    def _input_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _output_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        source = self.input_layer.value if hasattr(self, "input_layer") else None
        targets = [
            (f"replace data of '{layer.name}'", layer)
            for layer in self._viewer.layers
            if is_output_layer(layer) and not (source is not None and layer == source)
        ]
        return [("new layer", NEW_LAYER), *targets]

    def _update_temporal(self, *_: Any) -> None:
        """Show Temporal consistency for stacks only, set to :func:`temporal_default` when
        another input layer is chosen (the user's choice stays while the layer does)."""
        layer = self.input_layer.value
        if self._temporal_layer is not None and layer is self._temporal_layer():
            return
        self._temporal_layer = None if layer is None else weakref.ref(layer)
        stack = layer is not None and layer.ndim >= 3
        self.temporal.visible = stack
        self.temporal.value = temporal_default(self._viewer, layer) if stack else False

    def _refresh_model_labels(self) -> None:
        current = self.model.value
        with self.model.changed.blocked():
            self.model.choices = model_choices()
            self.model.value = current

    def _set_default_temperature(self, *_: Any) -> None:
        from chromatize.registry import get_spec

        self.temperature.value = round(float(get_spec(self.model.value).default_temperature), 4)

    # ----------------------------------------------------------------------------- settings
    def options(self) -> ColorizeOptions:
        """The current control values as one :class:`~chromatize.options.ColorizeOptions`
        (checked there; raises its ``OptionError`` for a value it cannot take)."""
        weights_text = self.weights.line_edit.value.strip()
        return ColorizeOptions(
            model=str(self.model.value),
            device=str(self.device.value),
            weights=weights_text or None,
            allow_download=bool(self.allow_download.value),
            temperature=float(self.temperature.value),
            saturation=float(self.saturation.value),
            render_size=int(self.render_size.value) or None,
        )

    @property
    def running(self) -> bool:
        return self._worker is not None

    @property
    def preloading(self) -> bool:
        """Whether a background load of the chosen model is in progress (or about to start)."""
        return self._preload_worker is not None or self._preload_timer.isActive()

    # ----------------------------------------------------------------------------- preload
    def preload(self, *_: Any) -> None:
        """Load the chosen model on a napari thread worker (the GUI thread never loads one).

        One preload at a time: a request while one runs starts another when it ends, with the
        controls' values of that moment. Failures are shown quietly in the model line only.
        """
        if self._destroyed:
            return
        self._preload_timer.stop()
        if self._preload_worker is not None:
            self._preload_again = True
            return
        try:
            options = self.options()
        except ChromatizeError as exc:
            reason = describe_failure(exc, "napari").message
            self._show_model_state("failed", f"model not loaded: {reason}")
            return
        if self.cache.loaded(options):  # (by an earlier preload or run)
            self._show_model_state("ready", f"'{options.model}' loaded")
            return
        self._show_model_state("loading", f"loading '{options.model}'...")
        worker = create_worker(preload, options, self.cache, _start_thread=False)
        worker.returned.connect(lambda problem, name=options.model:
                                self._on_preloaded(name, problem))
        worker.finished.connect(self._on_preload_finished)
        self._preload_worker = worker
        worker.start()

    def _schedule_preload(self, *_: Any) -> None:
        self._preload_timer.start()

    def _on_preloaded(self, name: str, problem: str | None) -> None:
        if self._destroyed:
            return
        if problem is None:
            self._show_model_state("ready", f"'{name}' loaded")
        else:
            self._show_model_state("failed", f"'{name}' not loaded: {problem}")

    def _on_preload_finished(self) -> None:
        self._preload_worker = None
        if self._preload_again and not self._destroyed:
            self._preload_again = False
            self.preload()

    def _show_model_state(self, state: str, text: str) -> None:
        self.preload_state = state
        self.model_state.value = text
        self.model_state.tooltip = text

    @property
    def progress_fraction(self) -> float:
        """Fraction of the current (or last) run done, as the worker last reported it."""
        return self._progress.last if self._progress is not None else 0.0

    # ----------------------------------------------------------------------------- run
    def run(self, *_: Any) -> None:
        """Start colorizing the chosen input layer in a worker thread (no-op while running)."""
        if self.running:
            return
        self.hint_controls.cancel()  # a live update in flight would only repeat this run's work
        self._pressed = time.perf_counter()
        layer = self.input_layer.value
        if layer is None:
            show_error("chromatize: there is no image layer to colorize; open an image first")
            self.last_outcome = "error"
            return
        target = self.output.value
        try:
            if target is not NEW_LAYER and target == layer:
                raise ChromatizeError(
                    "the output layer cannot be the input layer; choose 'new layer'"
                )
            snapshot = snapshot_layer(layer)
            options = self.options()
            hints = self.hint_controls.hints_for_run(layer)
        except ChromatizeError as exc:
            show_error(_message(exc))
            self.last_outcome = "error"
            return
        self._start_worker(snapshot, options, target, hints)

    def _start_worker(self, snapshot: LayerSnapshot, options: ColorizeOptions,
                      target: Any, hints: HintPoints | None = None) -> None:
        """Run :func:`run_job` on a napari thread worker, with a progress bar and Cancel."""
        self._cancel_event = threading.Event()
        self._progress = Progress()  # written by the worker, polled here (a float: atomic)
        self._pbar = progress(total=_PROGRESS_STEPS, desc=f"Colorizing {snapshot.name}")
        self._pbar_position = 0
        self._watch(self.input_layer.value)
        worker = create_worker(
            run_job,
            snapshot,
            options,
            self.cache,
            self._progress,
            self._cancel_event.is_set,
            self.prepared,
            bool(snapshot.stack_shape) and bool(self.temporal.value),
            hints,
            _start_thread=False,
        )
        worker.returned.connect(
            lambda outcome, snap=snapshot, out=target: self._on_returned(outcome, snap, out,
                                                                         hints)
        )
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        planes = f", {snapshot.n_planes} planes" if snapshot.stack_shape else ""
        if snapshot.stack_shape and self.temporal.value:
            planes += ", colour following motion"
        if hints is not None and len(hints):
            planes += f", {len(hints)} hint(s)"
        self._running_text = f"colorizing '{snapshot.name}'{planes}"
        self.status.value = f"{self._running_text}..."
        self._started = time.perf_counter()
        self._may_download = options.allow_download
        self._progress_timer.start()
        worker.start()

    def cancel(self, *_: Any) -> None:
        """Ask the running job to stop; it stops within the current plane and adds nothing."""
        if self._cancel_event is not None:
            self._cancel_event.set()
        if self.running:
            self.status.value = "cancelling..."
            self.cancel_button.enabled = False

    def _poll_progress(self) -> None:
        if self._pbar is None or self._progress is None:
            return
        fraction = self._progress.last
        position = int(fraction * _PROGRESS_STEPS)
        if position > self._pbar_position:
            self._pbar.update(position - self._pbar_position)
            self._pbar_position = position
            if self._cancel_event is not None and not self._cancel_event.is_set():
                self.status.value = f"{self._running_text}: {fraction:.0%}"

    def _on_returned(self, outcome: JobOutcome, snapshot: LayerSnapshot, target: Any,
                     hints: HintPoints | None = None) -> None:
        if outcome.cancelled:
            self.last_outcome = "cancelled"
            show_info("chromatize: colorization cancelled; no layer was added or changed")
            return
        if outcome.error is not None:
            self.last_outcome = "error"
            show_error(f"chromatize: {outcome.error}")
            return
        assert outcome.data is not None and outcome.record is not None
        try:
            started = time.perf_counter()
            self.last_output = self._write_output(outcome.data, outcome.record, snapshot, target)
            now = time.perf_counter()
            self.last_timings = {**outcome.timings, "layer": now - started,
                                 "total": now - self._pressed}
        except (ChromatizeError, ValueError) as exc:  # ValueError: napari refused the data
            self.last_outcome = "error"
            reason = describe_failure(exc, "napari").message \
                if isinstance(exc, ChromatizeError) else str(exc)
            show_error(f"chromatize: could not write the result: {reason}")
            return
        self.last_outcome = "done"
        self.hint_controls.written(self.last_output, snapshot, hints)
        self._show_model_state("ready", f"'{outcome.record['model']}' loaded")
        self.output.reset_choices()

    def _write_output(
        self, data: np.ndarray, record: dict, snapshot: LayerSnapshot, target: Any
    ) -> Image:
        kwargs = output_layer_kwargs(snapshot, record, data.dtype)
        if target is NEW_LAYER or target not in self._viewer.layers:
            layer = Image(data, **kwargs)
            show_thumbnail_in_contrast_limits(layer)  # before napari draws its thumbnail
            return self._viewer.add_layer(layer)
        if target.ndim != len(snapshot.stack_shape) + 2:
            raise ChromatizeError(
                f"output layer '{target.name}' has {target.ndim} dimensions but the result has "
                f"{len(snapshot.stack_shape) + 2}; choose 'new layer'"
            )
        show_thumbnail_in_contrast_limits(target)
        # Each property set redraws the layer: set only what changed (a repeat run on the same
        # input changes the data and the metadata only).
        if target.dtype != data.dtype:
            target.contrast_limits_range = kwargs["contrast_limits"]
        target.data = data
        if tuple(target.contrast_limits) != tuple(kwargs["contrast_limits"]):
            target.contrast_limits = kwargs["contrast_limits"]
        target.metadata = kwargs["metadata"]
        for key in TRANSFORM_KEYS:
            if key in kwargs and not _same(getattr(target, key), kwargs[key]):
                setattr(target, key, kwargs[key])
        return target

    def _on_errored(self, exc: BaseException) -> None:
        # Unexpected failures (bugs): napari's worker already relays them to the notification
        # manager, which shows them as a notification with the traceback behind a button.
        self.last_outcome = "error"

    def _on_finished(self) -> None:
        self._progress_timer.stop()
        if self._may_download:  # the run may have downloaded weights (relabelling costs ~20 ms)
            self._refresh_model_labels()
        self._poll_progress()
        if self._pbar is not None:
            self._pbar.close()
        self._pbar = None
        self._worker = None
        self._cancel_event = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        elapsed = time.perf_counter() - self._started
        if self.last_outcome == "done" and self.last_output is not None:
            self.status.value = f"done in {elapsed:.1f} s: '{self.last_output.name}'"
        else:
            self.status.value = {
                "cancelled": "cancelled; nothing was added",
                "error": "failed (see the notification)",
            }.get(self.last_outcome or "", "")
        self.hint_controls.after_run()

    # ----------------------------------------------------------------------------- prepared
    def _watch(self, layer: Image) -> None:
        """Drop the prepared planes when ``layer`` (the input of the run starting) changes."""
        if layer is self._watched:
            return
        self._unwatch()
        layer.events.data.connect(self._on_input_changed)
        layer.events.contrast_limits.connect(self._on_input_changed)
        self._watched = layer

    def _unwatch(self) -> None:
        if self._watched is not None:
            self._watched.events.data.disconnect(self._on_input_changed)
            self._watched.events.contrast_limits.disconnect(self._on_input_changed)
        self._watched = None

    def _on_input_changed(self, event: Any = None) -> None:
        self.prepared.forget()

    def _on_layer_removed(self, event: Any) -> None:
        if event.value is self._watched:
            self._unwatch()
            self.prepared.forget()

    def _on_destroyed(self, *_: Any) -> None:
        self._destroyed = True
        if self._cancel_event is not None:
            self._cancel_event.set()
        self.prepared.forget()
        try:  # (at interpreter exit Qt may have deleted the timer, napari the layers, already)
            self.hint_controls.cancel()
            self._preload_timer.stop()
            self._unwatch()
            self.hint_controls.unwatch()
            self._viewer.layers.events.removed.disconnect(self._on_layer_removed)
        except (TypeError, ValueError, RuntimeError):
            pass


def _same(current: Any, wanted: Any) -> bool:
    """Whether a layer property already has the wanted value (arrays compared by value)."""
    try:
        return bool(np.array_equal(np.asarray(current), np.asarray(wanted)))
    except (TypeError, ValueError):
        return False
