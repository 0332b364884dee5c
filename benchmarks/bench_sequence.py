"""Temporal consistency and speed of sequence colorization, temporal on vs off, on generated clips.

Clips: camera moves (pan + zoom, then a cut, then pan + small rotation; chromatize.sequence_eval)
over held-out photos of the training package's validation split (never Kodak24), encoded as real
H.264 files at 640x360 and decoded back. Prints per clip and overall: warping error (Lai et al.
2018), CDC, PSNR for temporal on / off / the gray input, the ratio on/off, the colorizer's
frames per second per mode, and the end-to-end frames per second of colorizing the mp4 file
(decode + colorize + encode) with temporal on.

    .venv/bin/python benchmarks/bench_sequence.py ../shared/data/train --clips 3 --frames 16
        [--strip /tmp/strip.png]   # frames around the cut, temporal off (top) / on (bottom)
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from chromatize.options import ColorizeOptions
from chromatize.pipeline import Colorizer
from chromatize.sequence import SequenceColorizer
from chromatize.sequence_eval import as_float_rgb, camera_clip, evaluate_sequence, gray_of
from chromatize.sequence_files import SequenceJob, colorize_sequence_file
from chromatize.training.data import Split
from chromatize.video import read_video, write_video


def held_out_photos(root: Path, count: int) -> list[np.ndarray]:
    """Held-out landscape photos (the package's photos are small, about 288x192: the clips
    upscale them), in a fixed order."""
    files = sorted(Split().validation_files(root))
    photos = []
    for path in files[:: max(1, len(files) // (40 * count))]:
        with Image.open(path) as im:
            if im.width >= 1.3 * im.height and im.height >= 180:
                photos.append(np.asarray(im.convert("RGB")))
        if len(photos) == 2 * count:
            break
    return photos


def strip(path: Path, clip: Path, colorizer: Colorizer, middle: int) -> None:
    """Frames middle-2 .. middle+1 side by side: temporal off (top row) and on (bottom row)."""
    rows = []
    for mode in ("off", "on"):
        runner = SequenceColorizer(colorizer, temporal=mode)
        outs = [runner.process(gray_of(as_float_rgb(f))).image for f in read_video(clip)]
        rows.append(np.concatenate(outs[middle - 2: middle + 2], axis=1))
    Image.fromarray((np.clip(np.concatenate(rows), 0, 1) * 255).astype(np.uint8)).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="the training data folder (../shared/data/train)")
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--strip", type=Path, default=None)
    args = parser.parse_args()
    options = ColorizeOptions(device="cpu")
    colorizer = Colorizer.from_options(options)
    photos = held_out_photos(args.data, args.clips)
    totals: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(min(args.clips, len(photos) // 2)):
            clip = Path(tmp) / f"clip{n}.mp4"
            write_video(clip, camera_clip(photos[2 * n], photos[2 * n + 1], args.frames),
                        crf=12)
            report = evaluate_sequence(read_video(clip), options, colorizer=colorizer,
                                       source=clip.name)
            print(report.format_table(), flush=True)
            for mode, values in report.modes.items():
                for key, value in values.items():
                    totals.setdefault(mode, {}).setdefault(key, []).append(value)
            if n == 0 and args.strip is not None:
                strip(args.strip, clip, colorizer, args.frames // 2)
        started = time.perf_counter()
        count = colorize_sequence_file(SequenceJob(clip, Path(tmp) / "out.mp4"), options,
                                       colorizer=colorizer)
        end_to_end = count / (time.perf_counter() - started)

    def mean(mode: str, key: str) -> float:
        finite = [v for v in totals[mode][key] if math.isfinite(v)]
        return float(np.mean(finite)) if finite else math.nan

    on, off = mean("on", "warping_error"), mean("off", "warping_error")
    print(f"\noverall warping error x1e3: on {on * 1e3:.3f}  off {off * 1e3:.3f}  input "
          f"{mean('input', 'warping_error') * 1e3:.3f}  ratio on/off {on / off:.2f}")
    print(f"overall CDC x1e3: on {mean('on', 'cdc') * 1e3:.3f}  off {mean('off', 'cdc') * 1e3:.3f}")
    print(f"overall PSNR: on {mean('on', 'psnr'):.2f}  off {mean('off', 'psnr'):.2f}  "
          f"(on - off {mean('on', 'psnr') - mean('off', 'psnr'):+.2f} dB)")
    print(f"colorizer fps at 640x360: on {mean('on', 'fps'):.1f}  off {mean('off', 'fps'):.1f}; "
          f"end to end (decode + colorize + encode, temporal on): {end_to_end:.1f}")


if __name__ == "__main__":
    main()
