"""Latency of Live colour hints in the napari widget: from moving a hint point to the output
layer updated.

Real napari (a shown window; headless under Xvfb), the real widget docked through the plug-in
manifest, a grayscale photo of ``--size`` x ``--size`` pixels (the astronaut sample resized
bicubically; 1000 = 1 megapixel), the shipped ``mobile`` model on the CPU. One Colorize run
with a hints layer of one point, then Live on and the point moved ``--moves`` times (waiting
for each update): the widget records, per update, the seconds from the Points layer's change
event to the output layer written (``HintControls.last_latency``: debounce + model + finish +
layer) and the parts of the run.

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python \\
        benchmarks/bench_napari_live_hints.py --size 1000 --moves 9
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence

TARGET_S = 1 / 3


def _wait(condition: Callable[[], bool], timeout_s: float) -> None:
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        QApplication.processEvents()
        time.sleep(0.002)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--moves", type=int, default=9)
    parser.add_argument("--model", default="mobile")
    args = parser.parse_args(argv)

    import napari
    import numpy as np
    from bench_napari_repeat import photo

    viewer = napari.Viewer(show=True)
    try:
        _dock, widget = viewer.window.add_plugin_dock_widget("chromatize", "Colorize")
        layer = viewer.add_image(photo(args.size), name="photo")
        widget.reset_choices()
        widget.input_layer.value = layer
        widget.model.value = args.model
        widget.device.value = "cpu"
        controls = widget.hint_controls
        points = controls.add_hints_layer()
        points.add(np.array([[args.size * 0.3, args.size * 0.3]]))
        widget.run()
        _wait(lambda: not widget.running and not widget.preloading, 300)
        controls.live.value = True
        latencies, parts = [], []
        for move in range(args.moves):
            updates = controls.updates
            offset = args.size * (0.3 + 0.04 * (move + 1))
            points.data = np.array([[offset, offset]])
            _wait(lambda u=updates: controls.updates > u and not controls.running, 60)
            latencies.append(controls.last_latency)
            parts.append(controls.last_timings)
        print(f"{args.size}x{args.size} {args.model}: live update after a point move, "
              f"median {statistics.median(latencies) * 1000:.0f} ms "
              f"(min {min(latencies) * 1000:.0f}, max {max(latencies) * 1000:.0f}; "
              f"target {TARGET_S * 1000:.0f} ms) over {len(latencies)} moves")
        for name in ("load", "read", "model", "finish", "layer"):
            values = [p.get(name, 0.0) for p in parts]
            print(f"  {name:>7}: median {statistics.median(values) * 1000:.0f} ms")
        print(f"  prepared planes reused: {widget.prepared.hits} hits, "
              f"{widget.prepared.misses} misses")
    finally:
        viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
