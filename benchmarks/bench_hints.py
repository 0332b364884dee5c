"""Hint latency: from a hint change to the finished image, reusing the prepared image.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_hints.py --sizes 1 12 --repeat 15

What a live front end does while the user moves or recolours a hint: ``Colorizer.prepare(image)``
once, then for every change ``predict(prepared, hints=...)`` + ``finish(prepared, prediction,
hints=...)``. Each repeat moves three hints and changes their colours. Images: the astronaut
sample (grayscale) scaled with bicubic to about 1 and 12 megapixels (3:2). Model: the shipped
``mobile`` (accepts hints), default settings, CPU. The baseline, measured interleaved with the
hint changes in the same run, is a full ``colorize(image, hints=...)`` of the same image with the
same hints: the cost without reuse. Latency target: <= 300 ms at 1 MP (issue 15).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
from PIL import Image

TARGET_1MP_MS = 300.0


def photo(megapixels: float) -> np.ndarray:
    """The grayscale astronaut sample resized (bicubic) to about ``megapixels``, 3:2 landscape."""
    from chromatize.samples import sample_grayscale

    width = round(math.sqrt(megapixels * 1e6 * 1.5))
    height = round(width / 1.5)
    return np.asarray(Image.fromarray(sample_grayscale("astronaut")).resize(
        (width, height), Image.Resampling.BICUBIC))


def hints_for(step: int, width: int, height: int):
    """Three hints that move and change colour with ``step`` (as a user dragging them)."""
    from chromatize.hints import Hints

    rng = np.random.default_rng(step)
    points = []
    for i, colour in enumerate(("#2e8b57", "#b22222", "#4169e1")):
        x = int((0.2 + 0.3 * i) * width + rng.integers(-50, 50))
        y = int(0.5 * height + rng.integers(-50, 50))
        rgb = np.clip(np.array([int(colour[k:k + 2], 16) for k in (1, 3, 5)]) / 255
                      + rng.uniform(-0.1, 0.1, 3), 0, 1)
        points.append((x, y, rgb.tolist(), 7))
    return Hints.from_points(points)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def measure(colorizer, image: np.ndarray, repeat: int) -> dict[str, list[float]]:
    """Seconds per hint change (predict, finish, both) and per full colorize, interleaved."""
    height, width = image.shape[:2]
    prepared = colorizer.prepare(image)
    times: dict[str, list[float]] = {"predict": [], "finish": [], "change": [], "colorize": []}
    for step in range(repeat + 2):  # the first two warm up (sessions, tables, pools)
        hints = hints_for(step, width, height)
        t0 = time.perf_counter()
        prediction = colorizer.predict(prepared, hints=hints)
        t1 = time.perf_counter()
        colorizer.finish(prepared, prediction, hints=hints)
        t2 = time.perf_counter()
        colorizer.colorize(image, hints=hints)
        t3 = time.perf_counter()
        if step >= 2:
            times["predict"].append(t1 - t0)
            times["finish"].append(t2 - t1)
            times["change"].append(t2 - t0)
            times["colorize"].append(t3 - t2)
    return times


def propagation_cost(counts: tuple[int, ...] = (3, 10, 100, 1000), repeat: int = 20
                     ) -> dict[int, float]:
    """Median ms of :func:`chromatize.hint_propagation.propagate_hints` alone for each number of
    single-pixel hints on the default render of a 3:2 photo (288x192, a 72x48 grid), beside
    the hint change it is part of (it runs inside ``predict``)."""
    import torch

    from chromatize.hint_propagation import propagate_hints

    rng = np.random.default_rng(0)
    ab, lightness = torch.randn(2, 48, 72), torch.rand(192, 288) * 100
    out = {}
    for n in counts:
        hints = torch.zeros(3, 192, 288)
        hints[:2, rng.integers(0, 192, n), rng.integers(0, 288, n)] = 0.3
        hints[2][hints[0] != 0] = 1.0
        times = []
        for step in range(repeat + 2):
            t0 = time.perf_counter()
            propagate_hints(ab, lightness, hints, n)
            if step >= 2:
                times.append(time.perf_counter() - t0)
        out[n] = statistics.median(times) * 1e3
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1.0, 12.0],
                        help="megapixels of the test images")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--engine", default="auto")
    args = parser.parse_args()

    import os

    import torch

    from chromatize.pipeline import Colorizer

    colorizer = Colorizer("mobile", device="cpu", engine=args.engine)
    print(f"mobile on CPU, engine {colorizer.engine}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print("| image | render | predict ms | finish ms | hint change median ms | p90 ms | "
          "full colorize ms | change / colorize | target |")
    print("|---|---|---|---|---|---|---|---|---|")
    for megapixels in args.sizes:
        image = photo(megapixels)
        times = measure(colorizer, image, args.repeat)
        render = colorizer.prepare(image).render
        median = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        p90 = percentile(times["change"], 90) * 1e3
        target = (("met" if median["change"] <= TARGET_1MP_MS else "missed")
                  if megapixels <= 1.0 else "-")
        print(f"| {image.shape[1]}x{image.shape[0]} ({image.size / 1e6:.1f} MP) | "
              f"{render[1]}x{render[0]} | {median['predict']:.0f} | {median['finish']:.0f} | "
              f"**{median['change']:.0f}** | {p90:.0f} | {median['colorize']:.0f} | "
              f"{median['change'] / median['colorize']:.2f} | {target} |", flush=True)
    cost = propagation_cost()
    print("hint propagation alone (72x48 grid), median ms: "
          + ", ".join(f"{n} hints {ms:.2f}" for n, ms in cost.items()))
    print(f"load average at the end {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
