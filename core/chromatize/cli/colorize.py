"""``chromatize colorize``: colorize image files and folders.

Outputs go beside the inputs with a suffix (``photo.jpg`` -> ``photo_color.jpg``), into
``--out-dir`` (same names, sub-folders kept with ``--recursive``), or to ``-o OUT`` for a single
input. The output format follows the output's extension (the input's own, or PNG for inputs
chromatize cannot write, such as GIF). Existing files, inputs included, are never replaced
without ``--overwrite``; ``--skip-existing`` keeps finished outputs and colorizes the rest (a
re-run resumes an interrupted one). A file that cannot be read, colorized or written is reported
and the others go on; the exit status is 1 if any file failed.

``--hints HINTS`` (one input) or ``--hints-dir DIR`` (``DIR/<stem>.png`` or ``.json`` per input)
guide the colours (:mod:`chromatize.hints`): an RGBA hint image of the input's size or JSON
points, in the input's pixel coordinates **as stored** (before EXIF orientation, which is
applied to the hints as to the pixels). Bad hints fail their file and write nothing; a model
without hint inputs (eccv16) refuses the whole run before any work.

Planning, the output folder's manifest, and the overlapped execution live in
:mod:`chromatize.batch`; this module is its command-line front end. ``--scheduler`` runs the
same plan on a Dask cluster (:mod:`chromatize.batch_cluster`, the ``cluster`` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from chromatize import batch
from chromatize.batch import MANIFEST_NAME, BatchSettings, Failure, Outcome, plan
from chromatize.cli import colorize_sequence
from chromatize.cli.argtypes import non_negative_int
from chromatize.cli.settings_args import add_setting_flags, options_from_args
from chromatize.errors import ChromatizeError
from chromatize.imageio import DEFAULT_MAX_PIXELS

__all__ = ["DEFAULT_SUFFIX", "plan", "register", "run"]

DEFAULT_SUFFIX = batch.DEFAULT_SUFFIX
#: The colorization settings this command offers as flags (chromatize.options.SETTINGS).
SETTINGS_OFFERED = ("model", "weights", "allow_download", "temperature", "saturation",
                    "render_size", "upsample", "decode", "device", "engine", "batch_size")


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
    hint_files = parser.add_mutually_exclusive_group()
    hint_files.add_argument("--hints", metavar="HINTS",
                            help="colour hints for the one input: an RGBA PNG of its size (alpha "
                            "> 0 marks hint pixels, RGB their colour) or a JSON file "
                            '[{"x": 120, "y": 45, "color": "#2e8b57", "size": 5}, ...]; pixel '
                            "coordinates of the input as stored, before any EXIF rotation "
                            '(needs a model that accepts hints); for a video or sequence, JSON '
                            'hints may name a 0-based "frame" (default 0)')
    hint_files.add_argument("--hints-dir", metavar="DIR",
                            help="for folders: hints for each input from DIR/<stem>.png or "
                            "DIR/<stem>.json where present (as --hints); for a video or "
                            "sequence: per frame, DIR/<frame stem> or DIR/<frame number> .png or "
                            ".json, carried along the motion to the following frames")
    parser.add_argument("--max-pixels", type=non_negative_int, default=DEFAULT_MAX_PIXELS,
                        metavar="N", help="refuse images larger than N pixels (default: "
                        f"{DEFAULT_MAX_PIXELS:,}; 0 = no limit)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing output files (and inputs, if an output name is one)")
    parser.add_argument("--skip-existing", action="store_true",
                        help="keep outputs that are already there and complete, and colorize the "
                        "rest: re-run the same command to resume an interrupted run")
    parser.add_argument("--allow-mixed-options", action="store_true",
                        help="let the output folder hold outputs made with different settings "
                        f"(its {MANIFEST_NAME} records each output's settings)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only failures (no progress bar, output names or notes)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run on a Dask cluster: its scheduler (tcp://HOST:PORT) or "
                        "scheduler file (.json), or local:N for N worker processes on this "
                        "machine; workers read and write the same paths (a shared file system) "
                        "and need this chromatize version with the cluster extra")
    colorize_sequence.add_arguments(parser)
    parser.set_defaults(func=run)


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

    def outcome(self, outcome: Outcome) -> None:
        if self.quiet:
            return
        for path, note in outcome.notes:
            self._write(f"chromatize: note: {path}: {note}", sys.stderr)
        if outcome.status == "done":
            self._write(f"{outcome.job.source} -> {outcome.job.target}", sys.stdout)
            self.bar.set_postfix_str(outcome.job.source.name, refresh=False)

    def position(self, value: float) -> None:
        self.bar.n = min(float(self.total), value)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def run(args: argparse.Namespace) -> int:
    if colorize_sequence.applies(args):  # videos, --sequence folders, multi-page TIFF stacks
        if args.scheduler:
            raise ChromatizeError("--scheduler applies to photos; videos, sequences and TIFF "
                                  "stacks run in this process")
        return colorize_sequence.run(args)
    options = options_from_args(args)
    settings = BatchSettings(overwrite=args.overwrite, skip_existing=args.skip_existing,
                             allow_mixed_options=args.allow_mixed_options,
                             max_pixels=args.max_pixels, mask=args.mask, hints=args.hints,
                             hints_dir=args.hints_dir)
    work = batch.plan_run(args.inputs, options, settings, output=args.output,
                          out_dir=args.out_dir, suffix=args.suffix, recursive=args.recursive)
    if not args.quiet:
        for note in work.notes:
            print(f"chromatize: note: {note}", file=sys.stderr, flush=True)
    with _cluster(args.scheduler if work.jobs else None, options, settings) as cluster:
        batch.prepare_outputs(work, args.out_dir)  # after connecting: nothing touched before
        failures = list(work.failures)
        succeeded = 0
        if work.jobs:
            reporter = _Reporter(len(work.jobs), args.quiet)
            execute = batch.execute if cluster is None else cluster.execute
            try:
                outcomes = execute(work.jobs, options, settings, manifest=work.manifest,
                                   on_outcome=reporter.outcome, on_progress=reporter.position)
            finally:
                reporter.close()
                if work.manifest is not None:
                    work.manifest.close()
            succeeded = sum(1 for o in outcomes if o.status == "done")
            failures += [Failure(o.job.source, o.message) for o in outcomes
                         if o.status == "failed"]
    return _summarise(succeeded, failures, quiet=args.quiet, skipped=len(work.skipped))


def _cluster(scheduler: str | None, options: Any, settings: BatchSettings) -> Any:
    """The Dask cluster to run on (:mod:`chromatize.batch_cluster`), connected and checked, or
    a context holding None to run in this process."""
    if scheduler is None:
        return contextlib.nullcontext()
    try:
        from chromatize import batch_cluster
    except ImportError as exc:
        raise ChromatizeError(f"--scheduler needs Dask ({exc}); install the cluster extra: "
                              "pip install 'chromatize[cluster]'") from None
    return batch_cluster.connect(scheduler, options, settings)


def _summarise(succeeded: int, failures: list[Failure], quiet: bool = False,
               skipped: int = 0) -> int:
    done_already = f", {skipped} already done (skipped)" if skipped else ""
    if not failures:
        if (succeeded > 1 or skipped) and not quiet:
            print(f"chromatize: colorized {succeeded} image{'s' if succeeded != 1 else ''}"
                  f"{done_already}", file=sys.stderr)
        return 0
    total = succeeded + len(failures) + skipped
    lines = [f"chromatize: {len(failures)} of {total} inputs failed "
             f"({succeeded} colorized{done_already}):"]
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
