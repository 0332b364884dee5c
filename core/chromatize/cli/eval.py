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
from chromatize.cli.argtypes import non_negative_float, positive_float, positive_int
from chromatize.registry import MODELS


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "eval",
        help="score a model on a folder of colour photos (vs. the grayscale baseline)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", metavar="FOLDER", help="folder of colour photos")
    parser.add_argument("--model", default="mobile", choices=sorted(MODELS),
                        help="model to evaluate (default: mobile)")
    parser.add_argument("--weights", metavar="PATH", help="explicit weights file for --model")
    parser.add_argument("--temperature", type=positive_float, default=None,
                        help="annealed-mean temperature (default: the model's)")
    parser.add_argument("--saturation", type=non_negative_float, default=1.0,
                        help="0 = gray, 1 = model output (default 1)")
    parser.add_argument("--render-size", type=positive_int, default=None,
                        help="model input size (default: the model's)")
    parser.add_argument("--upsample", choices=("guided", "bilinear"), default="guided",
                        help="how ab is brought to full size (default guided)")
    parser.add_argument("--contact-sheet", metavar="PNG",
                        help="write a PNG with one row per photo: gray | ours | original")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing contact sheet / JSON file")
    parser.add_argument("--json", metavar="PATH", help="also write the metrics as JSON")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="evaluate only the first N photos (by name)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
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
        args.model,
        weights=args.weights,
        device=args.device,
        temperature=args.temperature,
        saturation=args.saturation,
        limit=args.limit,
        contact_sheet=args.contact_sheet,
        overwrite=args.overwrite,
        progress=progress,
        render_size=args.render_size,
        upsample=args.upsample,
    )
    print(report.format_table())
    if args.contact_sheet:
        print(f"contact sheet: {args.contact_sheet}")
    if args.json:
        with replacing(args.json, ".json.tmp") as tmp:
            tmp.write_text(json.dumps(asdict(report), indent=1))
    return 0
