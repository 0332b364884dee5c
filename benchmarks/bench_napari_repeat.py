"""Latency of the napari Colorize widget: first run and repeat runs, against the bare pipeline.

Real napari (a shown window; headless under Xvfb), the real widget docked through the plug-in
manifest, a grayscale photo of ``--size`` x ``--size`` pixels (the scikit-image astronaut sample
resized bicubically; 1000 = 1 megapixel). Latency is measured from a real click on "Colorize" to
the output layer holding the result (the widget's ``running`` turns false right after the layer
is written), with the event loop running in between as napari runs it.

Measured, in one process:

- **first run**: Colorize pressed right after the widget docked (the run waits for the model
  the widget started preloading when it opened);
- **first run, new image**: Colorize on another layer of the same size once the model is loaded
  (no prepared planes to reuse);
- **repeat**: Colorize again on the same layer with only the saturation changed, replacing the
  previous result (the usual "tweak and look again" loop; reuses the prepared planes);
- **repeat, prepared dropped**: the same after ``widget.prepared.forget()`` (what a repeat costs
  without the reuse);
- **baseline**: ``Colorizer.colorize`` called directly on the same array with the same loaded
  model (no napari), interleaved with the repeats so that both see the same machine load.

Ratios against the baseline are what to compare between machines; the shared CPU makes absolute
times noisy. Usage (from the repository root; the results in benchmarks/RESULTS.md were made so):

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python benchmarks/bench_napari_repeat.py \\
        --size 1000 --repeats 7
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

TARGET_S = 0.5
#: Parts of a run as the widget times them (``ColorizeWidget.last_timings``), whose "total" is
#: from pressing Colorize to the output layer written: the latency reported. "idle" adds the
#: widget's clean-up after that (progress bar closed, buttons enabled again).
PARTS = ("load", "read", "prepare", "model", "finish", "layer")


def photo(size: int) -> Any:
    """The astronaut sample as a (size, size) uint8 grayscale photo."""
    import numpy as np
    from PIL import Image as PILImage

    from chromatize.samples import sample_grayscale

    gray = PILImage.fromarray(sample_grayscale("astronaut"))
    return np.asarray(gray.resize((size, size), PILImage.BICUBIC))


def _wait(condition: Callable[[], bool], timeout_s: float) -> None:
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting after {timeout_s:g} s")
        QApplication.processEvents()
        time.sleep(0.0005)


def _click_and_wait(widget: Any, timeout_s: float) -> dict[str, float]:
    """Press Colorize; returns the widget's timings of the run, "latency" (press -> output layer
    written) and "idle" (press -> the widget ready for the next run)."""
    started = time.perf_counter()
    widget.run_button.native.click()
    _wait(lambda: not widget.running, timeout_s)
    idle = time.perf_counter() - started
    if widget.last_outcome != "done":
        raise RuntimeError(f"the run ended with {widget.last_outcome!r}: {widget.status.value}")
    return {**widget.last_timings, "latency": widget.last_timings["total"], "idle": idle}


def measure(viewer: Any, *, size: int = 1000, repeats: int = 5, model: str = "mobile",
            device: str = "cpu", render_size: int = 0, timeout_s: float = 600.0
            ) -> dict[str, Any]:
    """Run the scenarios of the module docstring in ``viewer``; returns the measurements."""
    import numpy as np

    from chromatize_napari.colorize_job import ColorizerCache
    from chromatize_napari.widget import NEW_LAYER, ColorizeWidget

    data = photo(size)
    other = np.ascontiguousarray(data[::-1])  # same size, other values: nothing to reuse
    layer = viewer.add_image(data, name="photo")
    second = viewer.add_image(other, name="photo, flipped")
    second.visible = False

    import chromatize_napari.widget as widget_module

    # The widget opens on the session's model cache: start from an empty one, as napari does
    # (this matters when measure() runs in a process that colorized before, e.g. a test).
    session_cache = widget_module.SESSION_CACHE
    widget_module.SESSION_CACHE = ColorizerCache()
    try:
        docked = time.perf_counter()
        _dock, widget = viewer.window.add_plugin_dock_widget("chromatize", "Colorize")
    finally:
        widget_module.SESSION_CACHE = session_cache
    assert isinstance(widget, ColorizeWidget)
    opened = time.perf_counter() - docked
    widget.model.value = model  # a change preloads again unless it is the model loading now
    widget.device.value = device
    widget.render_size.value = render_size
    widget.input_layer.value = layer
    widget.output.value = NEW_LAYER
    results: dict[str, Any] = {"dock_s": opened}

    results["first"] = _click_and_wait(widget, timeout_s)
    results["first_since_dock_s"] = time.perf_counter() - docked
    _wait(lambda: not widget.preloading, timeout_s)
    output = widget.last_output

    widget.input_layer.value = second
    widget.output.value = NEW_LAYER
    results["first_new_image"] = _click_and_wait(widget, timeout_s)
    widget.input_layer.value = layer
    widget.output.value = output
    _click_and_wait(widget, timeout_s)  # (untimed: prepares the plane the repeats reuse)

    colorizer = widget.cache.get(widget.options())
    results["engine"] = str(getattr(colorizer, "engine", "torch"))
    results["colorizer"] = repr(colorizer)
    mapped = data  # a full-range uint8 layer is colorized as it is (no mapping)
    samples: dict[str, list[Any]] = {"repeat": [], "dropped": [], "baseline": []}
    for i in range(repeats):
        widget.output.value = output
        widget.saturation.value = 1.0 + 0.05 * ((i % 4) + 1)
        samples["repeat"].append(_click_and_wait(widget, timeout_s))
        started = time.perf_counter()
        colorizer.colorize(mapped, widget.options())
        bare = time.perf_counter() - started
        samples["baseline"].append({"latency": bare, "idle": bare})
        widget.prepared.forget()
        widget.saturation.value = 1.0 + 0.05 * ((i % 4) + 2)
        samples["dropped"].append(_click_and_wait(widget, timeout_s))
    results.update(samples)
    results["prepared_hits"] = widget.prepared.hits
    return results


def _median(runs: list[dict[str, float]], key: str) -> float:
    values = [run.get(key, 0.0) for run in runs]
    return statistics.median(values) if values else float("nan")


def report(results: dict[str, Any], size: int, repeats: int) -> str:
    import torch

    base = _median(results["baseline"], "latency")
    lines = [
        f"{size}x{size} uint8 ({size * size / 1e6:.1f} MP), {results['colorizer']}, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}), load average "
        f"{os.getloadavg()[0]:.1f}; medians of {repeats}",
        f"widget docked in {results['dock_s']:.2f} s; first result "
        f"{results['first_since_dock_s']:.2f} s after docking",
        "",
        "| run | press -> layer s | / baseline | press -> idle s | "
        + " | ".join(f"{p} s" for p in PARTS) + " |",
        "|---|---|---|---|" + "---|" * len(PARTS),
    ]
    rows = [("first run (pressed at docking)", [results["first"]]),
            ("first run, new image (model loaded)", [results["first_new_image"]]),
            ("repeat (saturation changed)", results["repeat"]),
            ("repeat, prepared dropped", results["dropped"]),
            ("baseline: bare Colorizer.colorize", results["baseline"])]
    for label, runs in rows:
        latency = _median(runs, "latency")
        parts = " | ".join(f"{_median(runs, p):.3f}" if p in runs[0] else "-" for p in PARTS)
        lines.append(f"| {label} | {latency:.3f} | {latency / base:.2f} | "
                     f"{_median(runs, 'idle'):.3f} | {parts} |")
    repeat = _median(results["repeat"], "latency")
    all_repeats = ", ".join(f"{run['latency']:.3f}" for run in results["repeat"])
    lines += [
        "",
        f"repeat latencies s: {all_repeats}",
        "baseline latencies s: "
        + ", ".join(f"{run['latency']:.3f}" for run in results["baseline"]),
        f"prepared planes reused: {results['prepared_hits']} of {repeats} repeats",
        f"repeat run {repeat:.3f} s: target <= {TARGET_S} s "
        + ("met" if repeat <= TARGET_S else "NOT met"),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000, help="side of the square photo")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="mobile")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--render-size", type=int, default=0, help="0 = the model's default")
    args = parser.parse_args(argv)

    import napari

    viewer = napari.Viewer(show=True)
    try:
        results = measure(viewer, size=args.size, repeats=args.repeats, model=args.model,
                          device=args.device, render_size=args.render_size)
    finally:
        viewer.close()
    print(report(results, args.size, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
