"""The plain values a batch of files is made of: jobs, settings, outcomes (all pickle), so that
a scheduler can ship them to other processes (:mod:`chromatize.batch`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from chromatize.imageio import DEFAULT_MAX_PIXELS

OutcomeStatus = Literal["done", "failed", "skipped"]


@dataclass(frozen=True)
class Job:
    """One input file and the output file it becomes; ``replace``: the output exists but is not
    a finished result (damaged, or made from an older version of the input) and is replaced."""

    source: Path
    target: Path
    replace: bool = False


@dataclass(frozen=True)
class Failure:
    """An input that could not be colorized, and why (for the user)."""

    path: Path
    message: str


@dataclass(frozen=True)
class BatchSettings:
    """How a batch treats files (the colorization settings are a ColorizeOptions)."""

    overwrite: bool = False
    skip_existing: bool = False
    allow_mixed_options: bool = False
    #: refuse images above this many pixels (0: no limit)
    max_pixels: int = DEFAULT_MAX_PIXELS
    #: a mask image file (one input only): colorize where it is white
    mask: str | None = None
    #: a colour hints file (one input only): JSON points or an RGBA hint image, in the input's
    #: stored pixel coordinates (chromatize.hints)
    hints: str | None = None
    #: a folder of hints files: ``DIR/<stem>.png`` or ``DIR/<stem>.json`` per input, where present
    hints_dir: str | None = None
    #: whose words per-file messages use (chromatize.failures.FrontEnd)
    front_end: str = "cli"


@dataclass(frozen=True)
class Outcome:
    """What became of one job: ``done`` (written), ``failed`` (``message`` says why) or
    ``skipped`` (already done); ``notes`` are (path, remark) pairs for the user."""

    job: Job
    status: OutcomeStatus
    message: str = ""
    notes: tuple[tuple[str, str], ...] = ()
