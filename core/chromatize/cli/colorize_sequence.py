"""``chromatize colorize`` for sequences: video files, folders of frames (``--sequence``) and
multi-page TIFF stacks, with colour carried along the motion (``--temporal on``, the default).

``clip.mp4`` -> ``clip_color.mp4`` (or ``-o OUT`` / ``--out-dir DIR``); ``frames/`` with
``--sequence`` -> ``frames_color/`` holding the same file names. ``--hints FILE`` (JSON whose
hints may name a ``"frame"``, 0-based; a hint image guides frame 0) or ``--hints-dir DIR``
(``<frame stem>.png``/``.json`` or ``<frame number>.png``/``.json``) guide key frames; their colour
is carried along the motion to the following frames until a cut. See :mod:`chromatize.video` for
what is kept and :mod:`chromatize.sequence` for the temporal algorithm.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from chromatize.cli.argtypes import non_negative_int

TEMPORAL_HELP = ("carry colour along the motion between frames (on, the default for sequences) "
                 "or colorize every frame on its own (off)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sequence flags of ``chromatize colorize``."""
    group = parser.add_argument_group("videos and stacks")
    group.add_argument("--sequence", action="store_true",
                       help="treat folder inputs as one sequence of numbered frames (one output "
                       "folder of frames) instead of separate photos")
    group.add_argument("--temporal", choices=("on", "off"), default="on", help=TEMPORAL_HELP)
    group.add_argument("--codec", default=None,
                       help="video encoder (default libx264, H.264; libvpx-vp9 for .webm)")
    group.add_argument("--crf", type=non_negative_int, default=None,
                       help="encoder quality, lower = better (default 18 for H.264, 24 for VP9)")


def applies(args: argparse.Namespace) -> bool:
    """Whether the inputs are sequences (then :func:`run` handles the command)."""
    from chromatize.sequence_files import sequence_kind

    kinds = [sequence_kind(p) for p in args.inputs]
    if getattr(args, "sequence", False):
        return True
    return any(k in ("video", "tiff") for k in kinds)


def _target(args: argparse.Namespace, source: Path) -> Path:
    from chromatize.sequence_files import default_output

    if args.output:
        return Path(args.output)
    suffix = args.suffix if args.suffix is not None else ("" if args.out_dir else "_color")
    target = default_output(source, suffix)
    return Path(args.out_dir) / target.name if args.out_dir else target


def run(args: argparse.Namespace) -> int:
    """Colorize every input sequence; 1 if any failed."""
    from chromatize.errors import ChromatizeError
    from chromatize.failures import describe_failure

    if args.output and len(args.inputs) != 1:
        raise ChromatizeError("-o names one output; with several inputs use --out-dir")
    if args.hints and len(args.inputs) != 1:
        raise ChromatizeError("--hints names the hints of one input; for several, give each "
                              "its own run or use --hints-dir")
    if args.out_dir:
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    failures = 0
    for name in args.inputs:
        try:
            _one(args, Path(name))
        except ChromatizeError as exc:
            failures += 1
            print(f"chromatize: error: {describe_failure(exc, 'cli').message}", file=sys.stderr)
    return 1 if failures else 0


def _one(args: argparse.Namespace, source: Path) -> None:
    from tqdm import tqdm

    from chromatize.cli.settings_args import options_from_args
    from chromatize.errors import InputImageError
    from chromatize.sequence_files import (
        SequenceJob,
        colorize_sequence_file,
        frame_count,
        sequence_kind,
    )

    if sequence_kind(source) is None:
        raise InputImageError(f"{source} is not a video, a folder of frames or a multi-page TIFF")
    job = SequenceJob(source, _target(args, source), temporal=args.temporal, codec=args.codec,
                      crf=args.crf, overwrite=args.overwrite, max_pixels=args.max_pixels or None,
                      hints=Path(args.hints) if args.hints else None,
                      hints_dir=Path(args.hints_dir) if args.hints_dir else None)
    total = frame_count(source, job.max_pixels) or None
    bar: Any = tqdm(total=total, unit="frame", desc=source.name, file=sys.stderr,
                    disable=True if args.quiet else None, dynamic_ncols=True)
    try:
        count = colorize_sequence_file(job, options_from_args(args),
                                       progress=lambda done: bar.update(done - bar.n))
    finally:
        bar.close()
    if not args.quiet:
        print(f"{source} -> {job.target} ({count} frames)")
