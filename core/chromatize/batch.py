"""Colorizing many files: planning, resumable execution with overlapped stages, and reporting.

Front ends (``chromatize colorize``, notebooks through :func:`colorize_folder`) are thin over
three steps:

1. :func:`plan_run` turns inputs and output choices into :class:`Job` s (one input file, one
   output file), the inputs already done (``skip_existing``) and failures, and checks the
   output folder's :class:`~chromatize.batch_manifest.Manifest` so that a run never mixes
   outputs made with different settings unless ``allow_mixed_options``;
2. :func:`prepare_outputs` creates output folders, removes temporary files a killed run left for
   the planned outputs, and fails the jobs whose folder cannot be written, before any model loads;
3. :func:`execute` colorizes the jobs with one :class:`~chromatize.pipeline.Colorizer`: reader
   threads decode and :meth:`~chromatize.pipeline.Colorizer.prepare`, the model runs on batches
   of images of one render shape, writer threads :meth:`~chromatize.pipeline.Colorizer.finish`
   and encode, each result is recorded in the manifest as soon as its file is in place.

Everything a job needs travels as plain values (:class:`Job`, :class:`BatchSettings`,
:class:`~chromatize.options.ColorizeOptions`) and every result as an :class:`Outcome`, all
picklable: :func:`colorize_jobs` runs one batch of jobs in whatever process it is called in, so a
scheduler can ship batches to other processes or machines and record their outcomes centrally.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chromatize.batch_jobs import BatchSettings, Failure, Job, Outcome
from chromatize.batch_manifest import MANIFEST_NAME, Manifest, fingerprint_options
from chromatize.batch_runner import Runner, describe_file_failure
from chromatize.errors import ChromatizeError, InputImageError, OutputError
from chromatize.imageio import (
    READABLE_EXTENSIONS,
    default_output_extension,
    output_format,
    read_image,
)
from chromatize.options import ColorizeOptions

__all__ = [
    "DEFAULT_SUFFIX", "MANIFEST_NAME", "BatchReport", "BatchSettings", "Failure", "Job", "Outcome",
    "Plan", "colorize_folder", "colorize_jobs", "execute", "plan", "plan_run", "prepare_outputs",
]

DEFAULT_SUFFIX = "_color"
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}\.tmp$")


@dataclass
class Plan:
    jobs: list[Job]
    failures: list[Failure] = field(default_factory=list)
    #: jobs whose output is already there and decodes (with ``skip_existing``)
    skipped: list[Job] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    manifest: Manifest | None = None


@dataclass
class BatchReport:
    """The result of a whole run (what :func:`colorize_folder` returns)."""

    colorized: list[Job]
    skipped: list[Job]
    failures: list[Failure]
    engine: str
    seconds: float


# ------------------------------------------------------------------------------------ planning


def plan(inputs: Iterable[str | os.PathLike[str]], *, output: str | None, out_dir: str | None,
         suffix: str | None, recursive: bool, overwrite: bool, notes: list[str] | None = None,
         skip_existing: bool = False) -> tuple[list[Job], list[Failure]]:
    """Turn inputs into jobs; inputs that cannot be handled become failures.

    With ``skip_existing`` a job whose output exists stays a job (see :func:`plan_run`, which
    decides whether it is done). Remarks that are not failures (sub-folders skipped without
    ``recursive``) are appended to ``notes`` if it is given.
    """
    paths = [Path(p) for p in inputs]
    if suffix is None:
        suffix = "" if out_dir is not None or output is not None else DEFAULT_SUFFIX
    if output is not None and (len(paths) != 1 or paths[0].is_dir()):
        raise ChromatizeError("-o/--output names one output file for one input file; "
                              "for several inputs or a folder use --out-dir DIR")
    out_root = Path(out_dir) if out_dir is not None else None
    jobs: list[Job] = []
    failures: list[Failure] = []
    targets: dict[Path, Path] = {}
    for given in paths:
        pairs = _pairs(given, recursive, out_root, suffix, failures, notes)
        for source, relative in pairs:
            if output is not None:
                target = Path(output)
            else:
                name = source.stem + suffix + default_output_extension(source)
                base = out_root / relative if out_root is not None else source.parent
                target = base / name
            problem = _target_problem(source, target, targets, overwrite, skip_existing)
            if problem:
                failures.append(Failure(source, problem))
                continue
            targets[_key(target)] = source
            jobs.append(Job(source, target))
    return jobs, failures


def _pairs(given: Path, recursive: bool, out_root: Path | None, suffix: str,
           failures: list[Failure], notes: list[str] | None) -> list[tuple[Path, Path]]:
    """(image file, its folder relative to ``given``) for one input; problems become failures."""
    if not given.is_dir():
        if given.exists():
            return [(given, Path())]
        failures.append(Failure(given, "no such file or folder"))
        return []
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
    return [(f, f.relative_to(given).parent) for f in found]


def _key(path: Path) -> Path:
    return path.resolve()


def _target_problem(source: Path, target: Path, taken: dict[Path, Path], overwrite: bool,
                    skip_existing: bool) -> str | None:
    try:
        output_format(target)
    except OutputError as exc:
        return describe(exc)
    if _key(target) in taken:
        return f"{taken[_key(target)]} is also written to {target}; use --suffix or --out-dir"
    if target.is_dir():
        return f"output {target} is a folder"
    if overwrite or not target.exists():
        return None
    if _key(target) == _key(source):
        return (f"the output name {target} is the input itself; not replacing it (use "
                "--suffix or --out-dir, or --overwrite to replace the input)")
    if skip_existing:
        return None
    return (f"output {target} already exists; not replacing it (pass --skip-existing to keep "
            "it and colorize the rest, or --overwrite to replace it)")


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


def plan_run(inputs: Iterable[str | os.PathLike[str]], options: ColorizeOptions,
             settings: BatchSettings, *, output: str | None = None, out_dir: str | None = None,
             suffix: str | None = None, recursive: bool = False) -> Plan:
    """:func:`plan`, then (with ``settings.skip_existing``) the jobs already done set aside, and
    the output folder's manifest checked: outputs made with other settings that this run would
    keep are refused unless ``settings.allow_mixed_options``.

    The manifest lives in ``out_dir`` (runs that write beside their inputs have none; there a
    finished output is one that exists and decodes).
    """
    if settings.overwrite and settings.skip_existing:
        raise ChromatizeError("--overwrite and --skip-existing contradict each other; choose one")
    inputs = list(inputs)
    _check_hint_settings(inputs, options, settings)
    notes: list[str] = []
    jobs, failures = plan(inputs, output=output, out_dir=out_dir, suffix=suffix,
                          recursive=recursive, overwrite=settings.overwrite, notes=notes,
                          skip_existing=settings.skip_existing)
    manifest = Manifest.load(Path(out_dir)) if out_dir is not None else None
    result = Plan(jobs, failures, [], notes, manifest)
    if settings.skip_existing:
        result.jobs, result.skipped = _split_done(jobs, manifest, notes)
    if manifest is not None:
        manifest.expect(options, settings.mask)
        if not settings.allow_mixed_options:
            manifest.refuse_mixing(fingerprint_options(options, settings.mask),
                                   {_key(j.target) for j in result.jobs})
    return result


def _check_hint_settings(inputs: list[str | os.PathLike[str]], options: ColorizeOptions,
                         settings: BatchSettings) -> None:
    """Refuse hint settings that cannot work, before anything is planned or loaded: ``hints``
    for several inputs or a folder, a ``hints_dir`` that is no folder, a model without hint
    inputs."""
    if settings.hints is None and settings.hints_dir is None:
        return
    if settings.hints is not None and settings.hints_dir is not None:
        raise ChromatizeError("--hints and --hints-dir contradict each other; choose one")
    if settings.hints is not None and (len(inputs) != 1 or Path(inputs[0]).is_dir()):
        raise ChromatizeError("--hints applies to one input file; for several inputs or a folder "
                              "use --hints-dir DIR (DIR/<name>.png or DIR/<name>.json per input)")
    if settings.hints_dir is not None and not Path(settings.hints_dir).is_dir():
        raise ChromatizeError(f"--hints-dir: {settings.hints_dir} is not a folder")
    refuse_hints_unless_accepted(options)


def refuse_hints_unless_accepted(options: ColorizeOptions) -> None:
    """Raise :class:`~chromatize.models.contract.HintsNotSupportedError` if the model
    ``options`` name has no hint inputs (read from its class; nothing is loaded)."""
    from chromatize.hints import refuse_hints
    from chromatize.registry import get_spec

    spec = get_spec(options.model)
    if not spec.accepts_hints:
        refuse_hints(spec.name)


def _split_done(jobs: list[Job], manifest: Manifest | None,
                notes: list[str]) -> tuple[list[Job], list[Job]]:
    """(jobs still to do, jobs already done) among ``jobs``, whose outputs may exist.

    Done: the manifest says the output was made from the input as it is now, or (no such line)
    the output decodes. An output made from an older version of the input, or one that does
    not decode (damaged, incomplete), is colorized again and replaced.
    """
    todo: list[Job] = []
    done: list[Job] = []
    for job in jobs:
        if not job.target.exists():
            todo.append(job)
            continue
        state = manifest.state(job.source, job.target) if manifest is not None else "unknown"
        if state == "done" or (state == "unknown" and _decodes(job.target)):
            done.append(job)
            continue
        why = ("was made from an older version of the input" if state == "stale"
               else "cannot be read (damaged or incomplete)")
        notes.append(f"{job.target} {why}; colorizing {job.source} again")
        todo.append(Job(job.source, job.target, replace=True))
    return todo, done


def _decodes(path: Path) -> bool:
    """Whether ``path`` is a complete image file (decoded in full)."""
    try:
        read_image(path, max_pixels=None)
    except (InputImageError, OSError):
        return False
    return True


def prepare_outputs(plan_: Plan, out_dir: str | None) -> None:
    """Create the output folder, remove temporary files that a killed run left for the planned
    outputs, and move the jobs whose folder cannot be written to the failures (before any
    model is loaded or anything colorized)."""
    if plan_.jobs and out_dir is not None:
        try:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the output folder {out_dir}: "
                              f"{exc.strerror or exc}; choose a folder you can write to"
                              ) from None
    problems: dict[Path, str | None] = {}
    kept = []
    for job in plan_.jobs:
        folder = job.target.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if folder not in problems:
            problems[folder] = _write_problem(folder)
        problem = problems[folder]
        if problem is None:
            kept.append(job)
        else:
            plan_.failures.append(Failure(job.source, f"cannot write {job.target}: {problem}"))
    plan_.jobs = kept
    remove_stale_temporaries(kept)


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


def remove_stale_temporaries(jobs: list[Job]) -> None:
    """Delete ``.NAME.xxxxxxxx.tmp`` files (what :func:`chromatize.imageio.write_image` writes
    before renaming) of the planned outputs: left by a run that was killed while writing."""
    wanted: dict[Path, set[str]] = {}
    for job in jobs:
        wanted.setdefault(job.target.parent, set()).add(job.target.name)
    for folder, names in wanted.items():
        try:
            entries = [e for e in os.scandir(folder) if e.name.startswith(".")]
        except OSError:
            continue
        for entry in entries:
            match = _TEMP_NAME.match(entry.name)
            if match and match.group("name") in names and entry.is_file():
                Path(entry.path).unlink(missing_ok=True)


def describe(exc: BaseException) -> str:
    """The command-line message of a per-file failure."""
    return describe_file_failure(exc, "cli")


# ----------------------------------------------------------------------------------- execution

OutcomeCallback = Callable[[Outcome], None]


def execute(jobs: Sequence[Job], options: ColorizeOptions, settings: BatchSettings, *,
            colorizer: Any = None, manifest: Manifest | None = None,
            on_outcome: OutcomeCallback | None = None,
            on_progress: Callable[[float], None] | None = None) -> list[Outcome]:
    """Colorize ``jobs`` in this process; returns their outcomes (in completion order).

    Each outcome is passed to ``on_outcome`` and recorded in ``manifest`` (with the engine that
    ran) as soon as it is known; ``on_progress(images_done)`` may see fractions.
    """
    from chromatize.pipeline import Colorizer

    if colorizer is None:
        colorizer = Colorizer.from_options(options, max_pixels=settings.max_pixels or 2**62)
    if manifest is not None:
        manifest.start_run(options, settings.mask, colorizer.engine)
    outcomes: list[Outcome] = []

    def record(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if manifest is not None:
            manifest.record(outcome, colorizer.engine)
        if on_outcome is not None:
            on_outcome(outcome)
        if on_progress is not None:
            on_progress(float(len(outcomes)))

    mask = _read_mask(settings.mask, jobs) if settings.mask else None
    Runner(colorizer, options, settings, mask, record).run(list(jobs))
    return outcomes


def _read_mask(path: str, jobs: Sequence[Job]) -> Any:
    """The mask image as (H, W) float32 in [0, 1] (only with one input file)."""
    import numpy as np

    from chromatize.imagearray import inspect_image

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


def colorize_jobs(jobs: Sequence[Job], options: ColorizeOptions,
                  settings: BatchSettings | None = None) -> list[Outcome]:
    """Colorize one batch of jobs in the calling process and return their outcomes: the unit a
    scheduler ships to worker processes (all arguments and results pickle; the model is loaded
    once per process and reused). Record the outcomes with
    :meth:`~chromatize.batch_manifest.Manifest.record` where the manifest lives."""
    return execute(jobs, options, settings or BatchSettings())


def colorize_folder(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                    out_dir: str | os.PathLike[str] | None = None, *,
                    options: ColorizeOptions | None = None, recursive: bool = True,
                    suffix: str | None = None, skip_existing: bool = False,
                    overwrite: bool = False, allow_mixed_options: bool = False,
                    on_outcome: OutcomeCallback | None = None, **overrides: Any) -> BatchReport:
    """Colorize files and folders (for notebooks and scripts): what ``chromatize colorize``
    does, with the same manifest and resume. Keyword overrides adjust ``options``
    (``saturation=1.2``, ``engine="torch"``). Raises ChromatizeError for problems of the whole
    run (mixed settings in ``out_dir``); per-file problems are in the report's ``failures``."""
    from chromatize.pipeline import Colorizer

    started = time.perf_counter()
    opts = (options or ColorizeOptions()).replace(**overrides)
    settings = BatchSettings(overwrite=overwrite, skip_existing=skip_existing,
                             allow_mixed_options=allow_mixed_options, front_end="python")
    given = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    where = None if out_dir is None else os.fspath(out_dir)
    run = plan_run(given, opts, settings, out_dir=where, suffix=suffix, recursive=recursive)
    prepare_outputs(run, where)
    outcomes: list[Outcome] = []
    engine = opts.engine
    if run.jobs:
        colorizer = Colorizer.from_options(opts)
        engine = colorizer.engine
        try:
            outcomes = execute(run.jobs, opts, settings, colorizer=colorizer,
                               manifest=run.manifest, on_outcome=on_outcome)
        finally:
            if run.manifest is not None:
                run.manifest.close()
    failures = run.failures + [Failure(o.job.source, o.message) for o in outcomes
                               if o.status == "failed"]
    return BatchReport([o.job for o in outcomes if o.status == "done"], run.skipped, failures,
                       engine, time.perf_counter() - started)
