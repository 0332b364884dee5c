"""Make the README's napari screenshots: ``python -m chromatize_napari.screenshot OUT.png``.

Opens real napari with the real Colorize widget docked, colorizes the grayscale sample photo
with the shipped ``mobile`` model on the CPU, hides the input and saves a screenshot of the whole
window (1200x760). The repository's copy is ``docs/napari-screenshot.png``; regenerate it with

    xvfb-run -a -s "-screen 0 1280x1024x24" python -m chromatize_napari.screenshot \\
        docs/napari-screenshot.png

(or without ``xvfb-run`` on a desktop). ``tests/test_napari_plugin.py`` runs the same code into a
temporary folder, so the tests never rewrite the committed file.

With ``--hints`` it shows colour hints instead (for the README's "Guiding the colours"): a hints
layer of :data:`HINT_COUNT` points whose colours are the sample's true colours there (the
evaluation protocol's :func:`chromatize.hints.sample_hints`), Colorize run with them, one point
selected so that its colour suggestions show:

    xvfb-run -a -s "-screen 0 1280x1024x24" python -m chromatize_napari.screenshot --hints \\
        docs/napari-hints-screenshot.png

No test runs this one (it is for a model that follows hints; with the interim shipped ``mobile``
only the hinted patches themselves take the colour).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import napari
    import numpy as np

WINDOW_SIZE = (1200, 760)
RUN_TIMEOUT_S = 300.0
#: Hint points of the hints screenshot, and their side in pixels.
HINT_COUNT = 8
HINT_SIZE = 15


def _process_events_for(seconds: float) -> None:
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + seconds
    while True:
        QApplication.processEvents()
        if time.monotonic() >= deadline:
            return
        time.sleep(0.01)


def capture_colorized_sample(viewer: napari.Viewer, out: str | Path, *,
                             model: str = "mobile", weights: str | None = None,
                             render_size: int = 0,
                             timeout_s: float = RUN_TIMEOUT_S) -> np.ndarray:
    """Dock the Colorize widget in ``viewer`` (a shown window), colorize the sample photo, show
    the result and save a screenshot of the window to ``out`` (written to a temporary name and
    renamed). Returns the screenshot as an (H, W, 4) uint8 array.

    Raises RuntimeError if the run does not finish within ``timeout_s`` or fails.
    """

    from chromatize_napari.widget import NEW_LAYER

    out = Path(out)
    widget, sample = _dock_on_sample(viewer, model)
    widget.weights.value = weights
    widget.allow_download.value = False
    widget.device.value = "cpu"
    widget.render_size.value = render_size
    widget.output.value = NEW_LAYER

    _run(widget, timeout_s)
    sample.visible = False
    viewer.layers.selection.active = widget.last_output
    return _save(viewer, out)


def _dock_on_sample(viewer: Any, model: str) -> tuple[Any, Any]:
    """Size the window, dock the Colorize widget and open the grayscale sample photo as its
    input with ``model`` chosen; returns (widget, sample layer)."""
    from chromatize_napari.widget import ColorizeWidget

    viewer.window._qt_window.resize(*WINDOW_SIZE)
    _dock, widget = viewer.window.add_plugin_dock_widget("chromatize", "Colorize")
    assert isinstance(widget, ColorizeWidget)
    (sample,) = viewer.open_sample("chromatize", "grayscale_photo")
    widget.reset_choices()
    widget.input_layer.value = sample
    widget.model.value = model
    return widget, sample


def _run(widget: Any, timeout_s: float) -> None:
    """Click Colorize and wait for the run; RuntimeError if it fails or takes too long."""
    from qtpy.QtWidgets import QApplication

    widget.run_button.native.click()  # a real Qt click on the "Colorize" button
    deadline = time.monotonic() + timeout_s
    while widget.running:
        if time.monotonic() > deadline:
            widget.cancel()
            raise RuntimeError(f"colorizing the sample took more than {timeout_s:g} s")
        QApplication.processEvents()
        time.sleep(0.01)
    if widget.last_outcome != "done":
        raise RuntimeError(f"colorizing the sample ended with {widget.last_outcome!r}: "
                           f"{widget.status.value}")


def _save(viewer: napari.Viewer, out: Path) -> np.ndarray:
    """Screenshot the whole window to ``out`` (a temporary name, then renamed)."""
    viewer.reset_view()
    _process_events_for(0.2)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    image = viewer.screenshot(str(tmp), canvas_only=False, flash=False)
    tmp.replace(out)
    return image


def capture_hinted_sample(viewer: napari.Viewer, out: str | Path, *, model: str = "mobile",
                          timeout_s: float = RUN_TIMEOUT_S) -> np.ndarray:
    """Like :func:`capture_colorized_sample`, with a hints layer of :data:`HINT_COUNT` points
    (the sample's true colours there), Live on and one point's colour suggestions shown."""
    import numpy as np

    from chromatize.hints import sample_hints
    from chromatize.samples import sample_color
    from chromatize_napari.widget import NEW_LAYER

    out = Path(out)
    widget, sample = _dock_on_sample(viewer, model)
    widget.device.value = "cpu"
    widget.output.value = NEW_LAYER
    controls = widget.hint_controls
    points = controls.add_hints_layer()
    if points is None:
        raise RuntimeError("could not add a hints layer")
    hints = sample_hints(sample_color(), HINT_COUNT, seed=0, size=HINT_SIZE)
    points.data = np.stack([hints.y, hints.x], axis=1).astype(float)
    points.face_color = np.concatenate([hints.rgb, np.ones((len(hints), 1))], axis=1)
    points.size = np.full(len(hints), HINT_SIZE, float)
    _run(widget, timeout_s)
    controls.live.value = True
    sample.visible = False
    points.mode = "select"
    points.selected_data = {0}
    deadline = time.monotonic() + timeout_s
    while not controls.swatches:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no colour suggestions within {timeout_s:g} s: "
                               f"{controls.suggestion_label.value}")
        _process_events_for(0.05)
    viewer.layers.selection.active = points
    return _save(viewer, out)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m chromatize_napari.screenshot OUT.png``."""
    parser = argparse.ArgumentParser(
        prog="python -m chromatize_napari.screenshot",
        description="Screenshot napari with the chromatize Colorize widget after colorizing the "
        "grayscale sample photo (needs a display; headless: xvfb-run -a -s '-screen 0 "
        "1280x1024x24' ...).",
    )
    parser.add_argument("output", metavar="OUT.png", help="where to save the screenshot")
    parser.add_argument("--hints", action="store_true",
                        help="show colour hints (a hints layer, Live, suggestions) instead")
    args = parser.parse_args(argv)

    import napari

    viewer = napari.Viewer(show=True)
    try:
        if args.hints:
            capture_hinted_sample(viewer, args.output)
        else:
            capture_colorized_sample(viewer, args.output)
    except RuntimeError as exc:
        print(f"chromatize_napari.screenshot: error: {exc}", file=sys.stderr)
        return 1
    finally:
        viewer.close()
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
