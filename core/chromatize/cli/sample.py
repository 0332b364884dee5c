"""``chromatize sample OUT``: write a grayscale sample photo to try colorization on."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from chromatize.samples import SAMPLES


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sample",
        help="write a grayscale sample photo (from scikit-image's bundled images)",
        description="Write a grayscale version of a photo bundled with scikit-image, to try "
        "'chromatize colorize' on. Needs the 'samples' extra: pip install 'chromatize[samples]'.",
    )
    parser.add_argument("output", metavar="OUT", nargs="?",
                        help="output file (.png, .jpg, .tif, .webp, .bmp)")
    parser.add_argument("--name", default="astronaut", choices=sorted(SAMPLES),
                        help="which photo (default: astronaut)")
    parser.add_argument("--list", action="store_true", help="list the sample photos and exit")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        for name, (_, what) in SAMPLES.items():
            print(f"{name:<10} {what}")
        return 0
    if not args.output:
        from chromatize.errors import ChromatizeError

        raise ChromatizeError("give an output file name, e.g. chromatize sample photo.png")
    from chromatize.imageio import write_image
    from chromatize.samples import sample_grayscale

    gray = sample_grayscale(args.name)
    for note in write_image(args.output, gray, overwrite=args.overwrite):
        print(f"chromatize: note: {args.output}: {note}", file=sys.stderr)
    print(args.output)
    return 0
