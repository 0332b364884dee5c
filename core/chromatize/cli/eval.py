"""``chromatize eval``: score a colorizer on a folder of colour photos.

Each photo is turned to gray (its own CIE L), colorized, and compared with the original: AuC of
per-pixel ab error over thresholds 0-150 (raw and class-rebalanced, ECCV16), PSNR on RGB and
colourfulness (Hasler & Süsstrunk), harm (% of pixels whose ab is >= 10 units farther from the
truth than gray's), photos worse than gray (mean |Δab| above gray's), the mean L2 ab distance, the
share of pixels within 2, 5 and 10 ab units and the mean chroma, always beside the grayscale
baseline (ab = 0).

--hints N[,N...] also scores the model given N colour hints per photo (Zhang et al. 2017's
protocol: 5x5-pixel patches of the true mean colour at random positions, seeded by --seed and the
photo's place in the folder), through the same hint path as `chromatize colorize --hints`: one
column per N, with the PSNR gain over 0 hints and the hint obedience (median |Δab| between a
hint's colour and the output at its pixels). Needs a model that accepts hints.

--models NAME[,NAME...] or --models all scores several models in one table, each at its own
default settings: gray, the baselines (earlier designs: fusion and DenseNet-style regression, SOM +
patch MLP; `chromatize models --all`), mobile and eccv16; a model whose weights are not here is
listed with how to get them. --classifier and --synsets add the ECCV 2016 semantic test: top-1 of
the ImageNet MobileNetV2 on the colorized photos whose names begin with an ImageNet synset
(`n01440764_...`), against the same photos in gray and in their true colours. The contact sheet
then has one row per design and one column per photo.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from chromatize.atomic import replacing
from chromatize.cli.argtypes import non_negative_int, positive_int
from chromatize.cli.settings_args import add_setting_flags, options_from_args


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "eval",
        help="score a model on a folder of colour photos (vs. the grayscale baseline)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", metavar="FOLDER", nargs="?", help="folder of colour photos")
    parser.add_argument("--sequence", metavar="FOLDER_OR_VIDEO",
                        help="instead: score a colour video (or folder of colour frames) for "
                        "temporal consistency, temporal on and off side by side (warping "
                        "error, CDC, per-frame PSNR)")
    add_setting_flags(parser, ("model", "weights", "allow_download", "temperature", "saturation",
                               "render_size", "upsample", "decode", "device"))
    parser.add_argument("--contact-sheet", metavar="PNG",
                        help="write a PNG with one row per photo: gray | ours | original")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing contact sheet / JSON file")
    parser.add_argument("--json", metavar="PATH", help="also write the metrics as JSON")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="evaluate only the first N photos (by name)")
    parser.add_argument("--hints", metavar="N[,N...]", type=hint_counts, default=[],
                        help="also score with N sampled colour hints per photo (5x5 px, the true "
                        "mean colour), one column per N, e.g. --hints 1,10,100")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of the hint positions (with the photo's index; default 0)")
    parser.add_argument("--models", metavar="NAME[,NAME...]|all", type=model_list, default=None,
                        help="score these models side by side in one table (all: every "
                        "registered model, baselines included)")
    parser.add_argument("--classifier", metavar="TFLITE",
                        help="with --models: the ImageNet MobileNetV2 .tflite for the semantic "
                        "test (needs the train extra)")
    parser.add_argument("--synsets", metavar="TXT",
                        help="with --classifier: the ImageNet synset list, one per line in class "
                        "order (e.g. imagenet_sample_synsets.txt)")
    parser.set_defaults(func=run)


def model_list(text: str) -> list[str]:
    """``"fusion,mobile"`` -> ["fusion", "mobile"]; ``"all"`` -> ["all"]; names checked."""
    from chromatize.registry import MODELS

    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n != "all" and n not in MODELS]
    if not names or unknown or ("all" in names and len(names) > 1):
        raise argparse.ArgumentTypeError(
            f"expected 'all' or model names from {', '.join(MODELS)} separated by commas, got "
            f"{text!r}")
    return list(dict.fromkeys(names))


def hint_counts(text: str) -> list[int]:
    """``"1,10,100"`` -> [1, 10, 100]: whole numbers >= 1, each once, in the order given."""
    counts: list[int] = []
    for part in text.split(","):
        try:
            n = int(part.strip())
        except ValueError:
            n = 0
        if n < 1:
            raise argparse.ArgumentTypeError(
                "expected hint counts N[,N...] of whole numbers >= 1 (e.g. 1,10,100), "
                f"got {text!r}")
        if n not in counts:
            counts.append(n)
    return counts


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from chromatize.errors import ChromatizeError, OutputError
    from chromatize.evaluation import evaluate_folder

    if args.json and Path(args.json).exists() and not args.overwrite:
        raise OutputError(f"{args.json} already exists; not replacing it (pass --overwrite)")
    if args.sequence:
        if args.hints:
            raise ChromatizeError("--hints applies to folders of photos, not to --sequence")
        return _run_sequence(args)
    if not args.folder:
        raise OutputError("pass a FOLDER of colour photos, or --sequence FOLDER_OR_VIDEO")
    if (args.classifier is None) != (args.synsets is None):
        raise ChromatizeError("the semantic test needs both --classifier TFLITE and --synsets TXT")
    if args.models is not None:
        if args.hints:
            raise ChromatizeError("--hints scores one model; use it with --model, not --models")
        return _run_comparison(args)
    if args.classifier:
        raise ChromatizeError("--classifier and --synsets go with --models (e.g. --models all)")

    def progress(done: int, total: int, name: str) -> None:
        print(f"[{done}/{total}] {name}", file=sys.stderr)

    report = evaluate_folder(
        args.folder,
        options_from_args(args),
        limit=args.limit,
        contact_sheet=args.contact_sheet,
        overwrite=args.overwrite,
        progress=progress,
        hints=args.hints,
        seed=args.seed,
    )
    return _report(report, args)


def _run_comparison(args: argparse.Namespace) -> int:
    """``eval --models``: several models side by side, optionally with the semantic test."""
    from pathlib import Path

    from chromatize.comparison import compare_models
    from chromatize.errors import OutputError
    from chromatize.semantic import ImageNetClassifier

    for given in (args.classifier, args.synsets):
        if given and not Path(given).is_file():
            raise OutputError(f"{given} does not exist or is not a file")
    classifier = (ImageNetClassifier(args.classifier, args.synsets) if args.classifier
                  else None)
    report = compare_models(
        args.folder, args.models, options_from_args(args), limit=args.limit,
        classifier=classifier, contact_sheet=args.contact_sheet, overwrite=args.overwrite,
        progress=lambda model, done, total, photo: print(f"{model} [{done}/{total}] {photo}",
                                                         file=sys.stderr),
        front_end="cli")
    return _report(report, args)


def _run_sequence(args: argparse.Namespace) -> int:
    """``eval --sequence``: temporal on vs off over one colour video or folder of frames."""
    from itertools import islice

    from chromatize.sequence_eval import evaluate_sequence
    from chromatize.sequence_files import sequence_kind
    from chromatize.video import frame_files, read_frames, read_tiff_stack, read_video

    kind = sequence_kind(args.sequence)
    frames = (read_video(args.sequence) if kind == "video" else read_tiff_stack(args.sequence)
              if kind == "tiff" else read_frames(frame_files(args.sequence)))
    report = evaluate_sequence(
        islice(frames, args.limit), options_from_args(args), source=str(args.sequence),
        progress=lambda done: print(f"[{done}] frames", file=sys.stderr))
    return _report(report, args)


def _report(report: Any, args: argparse.Namespace) -> int:
    """Print ``report``'s table (and where the contact sheet went); write it as JSON if asked."""
    from dataclasses import asdict

    print(report.format_table())
    if getattr(args, "contact_sheet", None) and not args.sequence:
        print(f"contact sheet: {args.contact_sheet}")
    if args.json:
        with replacing(args.json, ".json.tmp") as tmp:
            tmp.write_text(json.dumps(asdict(report), indent=1))
    return 0
