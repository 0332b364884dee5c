"""End-to-end throughput of ``chromatize colorize`` on a folder of scans, against the floor
measured in the same run, quiet and with two busy processes competing for the cores.

    .venv/bin/python benchmarks/bench_batch.py --count 105 --repeat 2

Scans: ``--count`` 1200x800 grayscale JPEGs (quality 90) made from photos of
``../shared/data/train`` (read-only; written to a temporary folder, never committed), or
synthetic smooth noise when that folder is absent. The floor is what no implementation can beat
on this machine: starting Python with torch and onnxruntime, decoding and encoding the JPEGs
alone (one core), and the fastest engine's own forward pass at the render shape (ONNX Runtime,
all cores, batch 1). A one-scan run splits the end-to-end time into start-up (with the first
scan) and a cost per further scan, each against its part of the floor: what matters at archive
scale, where start-up is paid once. Every figure comes from this one invocation; ratios compare
runs made side by side. Peak memory is the colorize process's peak RSS (``wait4``; for the Dask
run, the client's and the largest of its children's). With ``distributed`` installed, the same
folder also runs through ``--scheduler local:2``: what the Dask path costs over the one-machine
run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT.parent / "shared" / "data" / "train"
SIZE = (1200, 800)


def make_scans(folder: Path, count: int) -> None:
    """``count`` grayscale 1200x800 JPEGs, centre crops of training photos scaled up."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(TRAIN.glob("*/*.jpg"))[:: 7][:count] if TRAIN.is_dir() else []
    rng = np.random.default_rng(0)
    for i in range(count):
        if i < len(sources):
            with Image.open(sources[i]) as im:
                im = im.convert("L")
                w, h = im.size
                scale = max(SIZE[0] / w, SIZE[1] / h)
                im = im.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC)
                left, top = (im.width - SIZE[0]) // 2, (im.height - SIZE[1]) // 2
                im = im.crop((left, top, left + SIZE[0], top + SIZE[1]))
        else:
            small = rng.integers(0, 256, (8, 12), dtype=np.uint8)
            im = Image.fromarray(small).resize(SIZE, Image.Resampling.BICUBIC)
        im.save(folder / f"scan_{i:04d}.jpg", quality=90)


def timed_child(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one child process; fails loudly if it fails."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{argv} failed: {process.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def interpreter_start(env: dict[str, str]) -> float:
    """Seconds to start Python and import torch and onnxruntime (median of 3)."""
    argv = [sys.executable, "-c", "import torch, onnxruntime"]
    return statistics.median(timed_child(argv, env)[0] for _ in range(3))


def codec_seconds(folder: Path) -> float:
    """Seconds per image to decode each scan and encode a same-size RGB JPEG (one thread)."""
    from chromatize.imageio import read_image, write_image

    files = sorted(folder.glob("*.jpg"))
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        for i, path in enumerate(files):
            pixels = read_image(path).pixels
            write_image(Path(scratch) / f"{i}.jpg", np.repeat(pixels[..., None], 3, axis=2))
        return (time.perf_counter() - started) / len(files)


def forward_seconds(engine: str, runs: int = 40) -> float:
    """Seconds per forward pass of ``mobile`` at the 3:2 render shape, batch 1 (median)."""
    import torch

    from chromatize.pipeline import Colorizer

    colorizer = Colorizer("mobile", device="cpu", engine=engine)
    lightness = torch.rand(1, 1, 192, 288) * 100
    times = []
    for _ in range(runs + 3):
        started = time.perf_counter()
        if colorizer.runner is not None:
            colorizer.runner(lightness)
        else:
            with torch.inference_mode():
                colorizer.model(lightness)
        times.append(time.perf_counter() - started)
    return statistics.median(times[3:])


def stage_seconds(folder: Path, count: int = 12) -> dict[str, float]:
    """Seconds per image of each stage for the first ``count`` scans, one at a time (ONNX
    Runtime forward): the work the end-to-end run spreads over the cores."""
    from chromatize.imageio import read_image, write_image
    from chromatize.pipeline import Colorizer

    colorizer = Colorizer("mobile", device="cpu", engine="onnx")
    totals = dict.fromkeys(("decode", "prepare", "predict", "finish", "encode",
                            "finish on the torch path", "16-bit finish",
                            "16-bit finish on the torch path"), 0.0)
    files = sorted(folder.glob("*.jpg"))[:count]
    # once untimed: the first finish waits for the compiled kernel to load (start-up, which the
    # end-to-end runs include and this per-image figure must not)
    warm = colorizer.prepare(read_image(files[0]).pixels)
    colorizer.finish(warm, colorizer.predict(warm))
    deep = colorizer.prepare(read_image(files[0]).pixels.astype(np.uint16) * 257)
    colorizer.finish(deep, colorizer.predict(deep))  # the 16-bit kernel, likewise
    with tempfile.TemporaryDirectory() as scratch:
        for i, path in enumerate(files):
            t0 = time.perf_counter()
            image = read_image(path)
            t1 = time.perf_counter()
            prepared = colorizer.prepare(image.pixels)
            t2 = time.perf_counter()
            prediction = colorizer.predict(prepared)
            t3 = time.perf_counter()
            result = colorizer.finish(prepared, prediction)
            t4 = time.perf_counter()
            write_image(Path(scratch) / f"{i}.jpg", result)
            t5 = time.perf_counter()
            colorizer.fast_finish = False  # the compiled kernel's baseline, side by side
            colorizer.finish(prepared, prediction)
            colorizer.fast_finish = True
            t6 = time.perf_counter()
            # the same scan as a 16-bit one (archival TIFFs): both finishes, side by side
            deep = colorizer.prepare(image.pixels.astype(np.uint16) * 257)
            deep_prediction = colorizer.predict(deep)
            t7 = time.perf_counter()
            colorizer.finish(deep, deep_prediction)
            t8 = time.perf_counter()
            colorizer.fast_finish = False
            colorizer.finish(deep, deep_prediction)
            colorizer.fast_finish = True
            t9 = time.perf_counter()
            for key, spent in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5,
                                           t8 - t7, t9 - t8), strict=True):
                totals[key] += spent / len(files)
    return totals


SEQUENTIAL = """
import sys
from pathlib import Path
from chromatize.imageio import read_image, write_image
from chromatize.pipeline import Colorizer
colorizer = Colorizer("mobile", device="cpu", engine="torch")
for path in sorted(Path(sys.argv[1]).glob("*.jpg")):
    image = read_image(path)
    result = colorizer.colorize(image.pixels)
    Path(sys.argv[2]).mkdir(exist_ok=True)
    write_image(Path(sys.argv[2]) / path.name, result, icc_profile=image.icc_profile,
                exif=image.exif, dpi=image.dpi)
"""


def sequential(folder: Path, out: Path, env: dict[str, str]) -> tuple[float, float]:
    """The loop the CLI ran before chromatize.batch: one image at a time, torch eager."""
    return timed_child([sys.executable, "-c", SEQUENTIAL, str(folder), str(out)], env)


def colorize(folder: Path, out: Path, env: dict[str, str], *extra: str) -> tuple[float, float]:
    argv = [str(Path(sys.executable).with_name("chromatize")), "colorize", str(folder),
            "--out-dir", str(out), "-q", *extra]
    return timed_child(argv, env)


def busy_processes(count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` processes that keep one core each busy (as GIMP, a browser or a backup do)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=105)
    parser.add_argument("--contended-count", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)  # the defaults a user gets
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # this process's own torch (forward)
    with tempfile.TemporaryDirectory() as tmp:
        scans, small = Path(tmp) / "scans", Path(tmp) / "small"
        make_scans(scans, args.count)
        make_scans(small, args.contended_count)
        single = Path(tmp) / "single"
        make_scans(single, 1)
        colorize(small, Path(tmp) / "warm", env)  # the ONNX export happens once, here
        stages = stage_seconds(scans)
        print("stages, ms per image, one image at a time: " + ", ".join(
            f"{k} {v * 1e3:.1f}" for k, v in stages.items())
            + f" (sum of the first five {sum(list(stages.values())[:5]) * 1e3:.0f})")
        for rep in range(args.repeat):  # the floor and the runs side by side, each repeat
            start = interpreter_start(env)
            codec = codec_seconds(scans)
            onnx, torch_eager = forward_seconds("onnx"), forward_seconds("torch")
            floor = start + args.count * (codec + onnx)
            print(f"repeat {rep + 1}: floor = start {start:.2f} s + {args.count} x (codec "
                  f"{codec * 1e3:.1f} ms + ONNX forward {onnx * 1e3:.1f} ms; torch eager "
                  f"{torch_eager * 1e3:.1f} ms) = {floor:.2f} s ({args.count / floor:.1f} "
                  "images/s)")
            runs = [("engine auto", lambda out: colorize(scans, out, env)),
                    ("engine auto, torch finish (CHROMATIZE_FAST_FINISH=0)",
                     lambda out: colorize(scans, out, {**env, "CHROMATIZE_FAST_FINISH": "0"})),
                    ("engine torch", lambda out: colorize(scans, out, env, "--engine", "torch")),
                    ("before (sequential, torch)", lambda out: sequential(scans, out, env))]
            if importlib.util.find_spec("distributed") is not None:
                runs.append(("Dask, --scheduler local:2 (2 worker processes on these cores)",
                             lambda out: colorize(scans, out, env, "--scheduler", "local:2")))
            one_scan = colorize(single, Path(tmp) / f"one-{rep}", env)[0]
            for n, (label, run) in enumerate(runs):
                wall, rss = run(Path(tmp) / f"out-{rep}-{n}")
                print(f"  {label}: {wall:.2f} s, {args.count / wall:.1f} images/s, "
                      f"{wall / floor:.2f} x floor, peak RSS {rss:.0f} MB")
                if n == 0:
                    per_image = (wall - one_scan) / (args.count - 1)
                    print(f"    of which start-up and the first scan {one_scan:.2f} s (floor "
                          f"{start + codec + onnx:.2f} s), then {per_image * 1e3:.1f} ms a scan "
                          f"(floor {(codec + onnx) * 1e3:.1f} ms): "
                          f"{per_image / (codec + onnx):.2f} x floor per scan")
        contention(small, Path(tmp), env, args.repeat)


def contention(small: Path, tmp: Path, env: dict[str, str], repeat: int) -> None:
    """Quiet against two busy processes, side by side, defaults and forced OpenMP spinning."""
    cases = (("defaults", env, ()), ("defaults, engine torch", env, ("--engine", "torch")),
             ("OMP_WAIT_POLICY=ACTIVE, engine torch", {**env, "OMP_WAIT_POLICY": "ACTIVE"},
              ("--engine", "torch")))
    for label, case_env, extra in cases:
        quiet, busy = [], []
        for rep in range(repeat):
            quiet.append(colorize(small, tmp / f"q-{label}-{rep}", case_env, *extra)[0])
            hogs = busy_processes(2)
            try:
                busy.append(colorize(small, tmp / f"b-{label}-{rep}", case_env, *extra)[0])
            finally:
                for hog in hogs:
                    hog.kill()
                    hog.wait()
        q, b = statistics.median(quiet), statistics.median(busy)
        print(f"{small.name} ({len(list(small.glob('*.jpg')))} scans), {label}: quiet "
              f"{' / '.join(f'{t:.2f}' for t in quiet)} s, 2 busy processes "
              f"{' / '.join(f'{t:.2f}' for t in busy)} s: {b / q:.2f} x quiet")


if __name__ == "__main__":
    main()
