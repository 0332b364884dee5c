"""``chromatize eval``: score a colorizer on a folder of colour photos.

Each photo is turned to gray (its own CIE L), colorized, and compared with the original: AuC of
per-pixel ab error over thresholds 0-150 (raw and class-rebalanced, ECCV16), PSNR on RGB and
colourfulness (Hasler & Süsstrunk), always beside the grayscale baseline (ab = 0).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from chromatize.atomic import replacing
from chromatize.cli.argtypes import positive_int
from chromatize.cli.settings_args import add_setting_flags, options_from_args


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "eval",
        help="score a model on a folder of colour photos (vs. the grayscale baseline)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", metavar="FOLDER", help="folder of colour photos")
    add_setting_flags(parser, ("model", "weights", "allow_download", "temperature", "saturation",
                               "render_size", "upsample", "decode", "device"))
    parser.add_argument("--contact-sheet", metavar="PNG",
                        help="write a PNG with one row per photo: gray | ours | original")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing contact sheet / JSON file")
    parser.add_argument("--json", metavar="PATH", help="also write the metrics as JSON")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="evaluate only the first N photos (by name)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict
    from pathlib import Path

    from chromatize.errors import OutputError
    from chromatize.evaluation import evaluate_folder

    if args.json and Path(args.json).exists() and not args.overwrite:
        raise OutputError(f"{args.json} already exists; not replacing it (pass --overwrite)")

    def progress(done: int, total: int, name: str) -> None:
        print(f"[{done}/{total}] {name}", file=sys.stderr)

    report = evaluate_folder(
        args.folder,
        options_from_args(args),
        limit=args.limit,
        contact_sheet=args.contact_sheet,
        overwrite=args.overwrite,
        progress=progress,
    )
    print(report.format_table())
    if args.contact_sheet:
        print(f"contact sheet: {args.contact_sheet}")
    if args.json:
        with replacing(args.json, ".json.tmp") as tmp:
            tmp.write_text(json.dumps(asdict(report), indent=1))
    return 0
