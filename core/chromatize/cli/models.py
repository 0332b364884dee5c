"""``chromatize models``: list the models and where their weights are;
``chromatize models download NAME [--force]``: fetch a model's weights into the cache."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from chromatize.registry import MODELS, get_spec, list_models


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "models",
        help="list the colorization models, or download one",
        description="Without a sub-command, list the models with their status: shipped (inside "
        "the package), cached (downloaded), downloadable (run 'chromatize models download NAME') "
        "or missing (not usable in this build). Weights are cached in $CHROMATIZE_CACHE_DIR or "
        "the user cache directory.",
    )
    parser.add_argument("--all", action="store_true", dest="all_models",
                        help="also list the baselines (earlier designs for chromatize eval, "
                        "trained with python -m chromatize.training.baselines NAME)")
    actions = parser.add_subparsers(title="sub-commands", metavar="ACTION", dest="models_action")
    download = actions.add_parser(
        "download",
        help="download a model's weights into the cache (verified by sha256)",
        description="Download a model's weights into the cache. The transfer resumes if it was "
        "interrupted, and the file is only kept once its sha256 matches the registry.",
    )
    download.add_argument("name", metavar="NAME", choices=list(MODELS),
                          help=f"model to download ({', '.join(MODELS)})")
    download.add_argument("--force", action="store_true",
                          help="download again even if the weights are already cached")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "models_action", None) == "download":
        return _download(args.name, args.force)
    print(format_table(baselines=bool(getattr(args, "all_models", False))))
    return 0


def _local_file(name: str, status: str) -> Path | None:
    from chromatize.weights import cached_path

    spec = get_spec(name)
    if status == "cached":
        return cached_path(spec)
    if status == "shipped":
        return spec.shipped_path()
    return None


def _size(path: Path | None) -> str:
    if path is None:
        return "-"
    return f"{path.stat().st_size / 1e6:.1f} MB"


def format_table(*, baselines: bool = False) -> str:
    """The model list: name, status, size of the local file, licence, description; the
    baselines too with ``baselines``."""
    from chromatize.weights import cache_dir, model_status

    header = ("NAME", "STATUS", "SIZE", "LICENCE", "DESCRIPTION")
    rows = [header]
    for spec in list_models(baselines=baselines):
        status = model_status(spec.name)
        rows.append(
            (spec.name, status, _size(_local_file(spec.name, status)), spec.license,
             spec.description)
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]])
             for row in rows]  # fmt: skip
    lines.append("")
    if baselines:
        lines.append("baselines: train one with python -m chromatize.training.baselines NAME "
                     "--data FOLDER (the train extra); it is written to the weights cache")
    else:
        lines.append("chromatize models --all also lists the baselines of chromatize eval")
    lines.append(f"weights cache: {cache_dir()}")
    return "\n".join(line.rstrip() for line in lines)


def _download(name: str, force: bool) -> int:
    from chromatize.weights import cached_path, describe_expected_hash, download_weights

    spec = get_spec(name)
    already = cached_path(spec).is_file() and not force
    path = download_weights(name, force=force, progress=True)
    if already:
        print(f"{name}: already downloaded at {path} (use --force to download again)")
    else:
        print(f"{name}: saved {path} ({_size(path)}, {describe_expected_hash(spec.sha256)} ok)")
    return 0
