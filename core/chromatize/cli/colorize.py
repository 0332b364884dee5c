"""``chromatize colorize``: colorize image files and folders.

Outputs go beside the inputs with a suffix (``photo.jpg`` -> ``photo_color.jpg``), into
``--out-dir`` (same names, sub-folders kept with ``--recursive``), or to ``-o OUT`` for a single
input. The output format follows the output's extension (the input's own, or PNG for inputs
chromatize cannot write, such as GIF). Existing files, inputs included, are never replaced
without ``--overwrite``. A file that cannot be read, colorized or written is reported and the
others go on; the exit status is 1 if any file failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chromatize.cli.argtypes import non_negative_int
from chromatize.cli.settings_args import add_setting_flags, options_from_args
from chromatize.errors import ChromatizeError, InputImageError, OutputError
from chromatize.imageio import (
    DEFAULT_MAX_PIXELS,
    READABLE_EXTENSIONS,
    default_output_extension,
    output_format,
)

DEFAULT_SUFFIX = "_color"
#: The colorization settings this command offers as flags (chromatize.options.SETTINGS).
SETTINGS_OFFERED = ("model", "weights", "allow_download", "temperature", "saturation",
                    "render_size", "upsample", "decode", "device", "batch_size")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "colorize",
        help="colorize image files and folders",
        description="Colorize photos. Keeps size, lightness, bit depth (16-bit PNG/TIFF stay "
        "16-bit), alpha, ICC profile and EXIF (orientation is applied to the pixels). Never "
        "replaces an existing file unless --overwrite; writes atomically.",
    )
    parser.add_argument("inputs", nargs="+", metavar="IN", help="image files or folders")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-o", "--output", metavar="OUT",
                       help="output file (only with a single input file)")
    where.add_argument("--out-dir", metavar="DIR",
                       help="write outputs into DIR (created if missing)")
    parser.add_argument("--suffix", default=None,
                        help=f"added to output file names (default: {DEFAULT_SUFFIX!r} beside the "
                        "inputs, '' with --out-dir)")
    parser.add_argument("-r", "--recursive", action="store_true",
                        help="include images in sub-folders of folder inputs")
    add_setting_flags(parser, SETTINGS_OFFERED)
    parser.add_argument("--mask", metavar="FILE",
                        help="colorize only where this grayscale image (same size as the one "
                        "input, as displayed) is white; black keeps the input, gray blends")
    parser.add_argument("--max-pixels", type=non_negative_int, default=DEFAULT_MAX_PIXELS,
                        metavar="N", help="refuse images larger than N pixels (default: "
                        f"{DEFAULT_MAX_PIXELS:,}; 0 = no limit)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing output files (and inputs, if an output name is one)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only failures (no progress bar, output names or notes)")
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class Job:
    """One input file and the output file it becomes."""

    source: Path
    target: Path


@dataclass(frozen=True)
class Failure:
    path: Path
    message: str


def plan(inputs: Iterable[str], *, output: str | None, out_dir: str | None,
         suffix: str | None, recursive: bool, overwrite: bool,
         notes: list[str] | None = None) -> tuple[list[Job], list[Failure]]:
    """Turn the command line into jobs; inputs that cannot be handled become failures.

    Remarks for the user that are not failures (sub-folders skipped without ``recursive``) are
    appended to ``notes`` if it is given.
    """
    inputs = [Path(p) for p in inputs]
    if suffix is None:
        suffix = "" if out_dir is not None or output is not None else DEFAULT_SUFFIX
    if output is not None and (len(inputs) != 1 or inputs[0].is_dir()):
        raise ChromatizeError("-o/--output names one output file for one input file; "
                              "for several inputs or a folder use --out-dir DIR")
    out_root = Path(out_dir) if out_dir is not None else None
    jobs: list[Job] = []
    failures: list[Failure] = []
    targets: dict[Path, Path] = {}
    for given in inputs:
        if given.is_dir():
            found = list(_scan(given, recursive, out_root, suffix))
            skipped = 0 if recursive else _subfolders_with_images(given, out_root, suffix)
            skipped_text = (f"{skipped} sub-folder{'s' if skipped != 1 else ''} with images "
                            f"{'were' if skipped != 1 else 'was'} skipped; add -r (--recursive) "
                            "to include them")
            if not found:
                failures.append(Failure(given, "no images found in this folder"
                                        + (f" ({skipped_text})" if skipped else "")))
            elif skipped and notes is not None:
                notes.append(f"{given}: {skipped_text}")
            pairs = [(f, f.relative_to(given).parent) for f in found]
        elif given.exists():
            pairs = [(given, Path())]
        else:
            failures.append(Failure(given, "no such file or folder"))
            continue
        for source, relative in pairs:
            if output is not None:
                target = Path(output)
            else:
                name = source.stem + suffix + default_output_extension(source)
                base = out_root / relative if out_root is not None else source.parent
                target = base / name
            problem = _target_problem(source, target, targets, overwrite)
            if problem:
                failures.append(Failure(source, problem))
                continue
            targets[_key(target)] = source
            jobs.append(Job(source, target))
    return jobs, failures


def _key(path: Path) -> Path:
    return path.resolve()


def _target_problem(source: Path, target: Path, taken: dict[Path, Path],
                    overwrite: bool) -> str | None:
    try:
        output_format(target)
    except OutputError as exc:
        return _describe(exc)
    if _key(target) in taken:
        return f"{taken[_key(target)]} is also written to {target}; use --suffix or --out-dir"
    if target.is_dir():
        return f"output {target} is a folder"
    if target.exists() and not overwrite:
        if _key(target) == _key(source):
            return (f"the output name {target} is the input itself; not replacing it (use "
                    "--suffix or --out-dir, or --overwrite to replace the input)")
        return f"output {target} already exists; not replacing it (pass --overwrite to replace)"
    return None


def _scan(folder: Path, recursive: bool, out_root: Path | None, suffix: str) -> Iterator[Path]:
    """Image files in ``folder`` (sorted), skipping hidden files, earlier outputs beside the
    inputs (names ending in ``suffix``) and anything inside the output folder."""
    out_key = _key(out_root) if out_root is not None else None
    pattern = "**/*" if recursive else "*"
    for path in sorted(folder.glob(pattern)):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if not path.is_file() or path.suffix.lower() not in READABLE_EXTENSIONS:
            continue
        if out_key is not None and out_key in _key(path).parents:
            continue
        if out_root is None and suffix and path.stem.endswith(suffix):
            continue
        yield path


def _subfolders_with_images(folder: Path, out_root: Path | None, suffix: str) -> int:
    """How many direct sub-folders of ``folder`` (not hidden) hold images at any depth that
    ``--recursive`` would colorize."""
    return sum(1 for sub in sorted(folder.iterdir())
               if sub.is_dir() and not sub.name.startswith(".")
               and next(_scan(sub, True, out_root, suffix), None) is not None)


def _chunks(items: list[Job], size: int) -> Iterator[list[Job]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Reporter:
    """Progress bar on stderr (when it is a terminal) and the messages around it."""

    def __init__(self, total: int, quiet: bool) -> None:
        from tqdm import tqdm

        self.quiet = quiet
        self.total = total
        self.bar = tqdm(total=total, unit="image", desc="colorizing", disable=True if quiet
                        else None, file=sys.stderr, dynamic_ncols=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| "
                                   "[{elapsed}<{remaining}]{postfix}")

    def _write(self, text: str, stream: Any) -> None:
        if self.bar.disable:
            print(text, file=stream, flush=True)
        else:
            self.bar.write(text, file=stream)

    def done(self, job: Job) -> None:
        if not self.quiet:
            self._write(f"{job.source} -> {job.target}", sys.stdout)

    def note(self, path: Path, note: str) -> None:
        if not self.quiet:
            self._write(f"chromatize: note: {path}: {note}", sys.stderr)

    def position(self, value: float, current: Path | None = None) -> None:
        self.bar.n = min(float(self.total), value)
        if current is not None:
            self.bar.set_postfix_str(current.name, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def run(args: argparse.Namespace) -> int:
    notes: list[str] = []
    jobs, failures = plan(args.inputs, output=args.output, out_dir=args.out_dir,
                          suffix=args.suffix, recursive=args.recursive, overwrite=args.overwrite,
                          notes=notes)
    if not args.quiet:
        for note in notes:
            print(f"chromatize: note: {note}", file=sys.stderr, flush=True)
    if jobs and args.out_dir is not None:
        try:
            Path(args.out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the output folder {args.out_dir}: "
                              f"{exc.strerror or exc}; choose a folder you can write to") from None
    jobs = _drop_unwritable(jobs, failures)  # before the model is loaded or anything colorized
    succeeded = 0
    if jobs:
        succeeded = _colorize_jobs(jobs, failures, args)
    return _summarise(succeeded, failures, quiet=args.quiet)


def _drop_unwritable(jobs: list[Job], failures: list[Failure]) -> list[Job]:
    """The jobs whose output folder can be written; the others fail at once.

    Each output folder (or, if it does not exist yet, the nearest folder above it that does) is
    tested once by creating and removing a temporary file in it.
    """
    problems: dict[Path, str | None] = {}
    kept = []
    for job in jobs:
        folder = job.target.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if folder not in problems:
            problems[folder] = _write_problem(folder)
        problem = problems[folder]
        if problem is None:
            kept.append(job)
        else:
            failures.append(Failure(job.source, f"cannot write {job.target}: {problem}"))
    return kept


def _write_problem(folder: Path) -> str | None:
    """Why no file can be created in ``folder`` (None if one can)."""
    if not folder.is_dir():
        return f"{folder} is not a folder"
    try:
        fd, name = tempfile.mkstemp(prefix=".chromatize-write-test-", dir=folder)
    except OSError as exc:
        return (f"the folder {folder} is not writable ({exc.strerror or exc}); choose a folder "
                "you can write to")
    os.close(fd)
    os.unlink(name)
    return None


def _colorize_jobs(jobs: list[Job], failures: list[Failure], args: argparse.Namespace) -> int:
    from chromatize.pipeline import Colorizer

    options = options_from_args(args)
    mask = _read_mask(args.mask, jobs) if args.mask else None
    colorizer = Colorizer.from_options(options, max_pixels=args.max_pixels or sys.maxsize)
    reporter = _Reporter(len(jobs), args.quiet)
    succeeded = 0
    done = 0
    try:
        for chunk in _chunks(jobs, options.batch_size):
            succeeded += _colorize_chunk(chunk, done, colorizer, options, mask, args, reporter,
                                         failures)
            done += len(chunk)
            reporter.position(done)
    finally:
        reporter.close()
    return succeeded


def _read_mask(path: str, jobs: list[Job]) -> Any:
    """The ``--mask`` image as (H, W) float32 in [0, 1] (only with one input file)."""
    import numpy as np

    from chromatize.imagearray import inspect_image
    from chromatize.imageio import read_image

    if len(jobs) != 1:
        raise ChromatizeError("--mask applies to one input file; give a single input")
    try:
        pixels = read_image(Path(path)).pixels
    except InputImageError as exc:
        raise ChromatizeError(f"--mask: {exc}") from None
    layout = inspect_image(pixels, path)
    plane = pixels if pixels.ndim == 2 else pixels[..., : max(1, layout.color_channels)]
    mask = np.asarray(plane, np.float32) / float(layout.max_value)
    return mask if mask.ndim == 2 else mask.mean(axis=2)


def _colorize_chunk(chunk: list[Job], done: int, colorizer: Any, options: Any, mask: Any,
                    args: argparse.Namespace, reporter: _Reporter,
                    failures: list[Failure]) -> int:
    from chromatize.imageio import read_image, write_image

    loaded = []
    for job in chunk:
        reporter.position(done, job.source)
        try:
            image = read_image(job.source, max_pixels=args.max_pixels or None)
        except InputImageError as exc:
            failures.append(Failure(job.source, _describe(exc)))
            continue
        for note in image.notes:
            reporter.note(job.source, note)
        loaded.append((job, image))
    if not loaded:
        return 0

    def progress(fraction: float) -> None:
        reporter.position(done + fraction * len(loaded))

    results = _run_model(loaded, colorizer, options, mask, progress, failures)
    succeeded = 0
    for (job, image), result in zip(loaded, results, strict=True):
        if result is None:
            continue
        try:
            job.target.parent.mkdir(parents=True, exist_ok=True)
            notes = write_image(job.target, result, icc_profile=image.icc_profile,
                                exif=image.exif, dpi=image.dpi, overwrite=args.overwrite)
        except OutputError as exc:
            failures.append(Failure(job.source, _describe(exc)))
            continue
        except OSError as exc:
            failures.append(Failure(job.source, f"cannot write {job.target}: "
                                                f"{exc.strerror or exc}"))
            continue
        for note in notes:
            reporter.note(job.target, note)
        reporter.done(job)
        succeeded += 1
    return succeeded


def _run_model(loaded: list[tuple[Job, Any]], colorizer: Any, options: Any, mask: Any,
               progress: Any, failures: list[Failure]) -> list[Any]:
    """Colorize the chunk; on a per-image problem retry one by one to pin down the bad file."""
    masks = None if mask is None else [mask]
    try:
        return colorizer.colorize_batch([image.pixels for _, image in loaded], options,
                                        mask=masks, progress=progress)
    except (InputImageError, MemoryError, RuntimeError) as exc:
        if len(loaded) == 1:
            failures.append(Failure(loaded[0][0].source, _describe(exc)))
            return [None]
    results: list[Any] = []
    for job, image in loaded:
        try:
            results.append(colorizer.colorize(image.pixels, options))
        except (InputImageError, MemoryError, RuntimeError) as exc:
            failures.append(Failure(job.source, _describe(exc)))
            results.append(None)
    return results


def _describe(exc: BaseException) -> str:
    from chromatize.failures import describe_failure

    failure = describe_failure(exc, "cli")
    if failure.kind == "internal":
        return f"colorization failed ({type(exc).__name__}: {exc})"
    return failure.message


def _summarise(succeeded: int, failures: list[Failure], quiet: bool = False) -> int:
    if not failures:
        if succeeded > 1 and not quiet:
            print(f"chromatize: colorized {succeeded} images", file=sys.stderr)
        return 0
    total = succeeded + len(failures)
    lines = [f"chromatize: {len(failures)} of {total} inputs failed "
             f"({succeeded} colorized):"]
    lines += [f"  {failure.path}: {_without_path(failure)}" for failure in failures]
    print("\n".join(lines), file=sys.stderr)
    return 1


def _without_path(failure: Failure) -> str:
    """The message without the file name it may start with (the line names the file once):
    ``x.png: x.png is empty`` becomes ``x.png: empty``."""
    message, name = failure.message, str(failure.path)
    if message.startswith(name + ": "):
        return message[len(name) + 2:]
    if message.startswith(name + " is "):
        return message[len(name) + 4:]
    if message.startswith(name + " "):
        return message[len(name) + 1:]
    return message
