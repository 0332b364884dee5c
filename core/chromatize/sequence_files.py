"""Colorize a sequence stored on disk: a video file, a folder of numbered frames, or a
multi-page TIFF stack, into the same kind of output (see :mod:`chromatize.video` for what is
kept and how outputs are written atomically). Frames stream through
:class:`chromatize.sequence.SequenceColorizer` one at a time."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from chromatize import video
from chromatize.errors import InputImageError
from chromatize.hints import HintError, Hints, frame_hint_files, load_frame_hints, load_hints
from chromatize.options import ColorizeOptions
from chromatize.pipeline import Colorizer
from chromatize.sequence import SequenceColorizer, Temporal

SequenceKind = Literal["video", "folder", "tiff"]


def sequence_kind(path: str | os.PathLike[str]) -> SequenceKind | None:
    """What kind of sequence ``path`` is, or None for a single image."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    if video.is_video(path):
        return "video"
    if path.suffix.lower() in video.TIFF_EXTENSIONS and video.tiff_pages(path) > 1:
        return "tiff"
    return None


def default_output(path: str | os.PathLike[str], suffix: str = "_color") -> Path:
    """``clip.mp4`` -> ``clip_color.mp4``; ``frames/`` -> ``frames_color/``."""
    path = Path(path)
    if path.is_dir():
        return path.with_name(path.name + suffix)
    return path.with_name(path.stem + suffix + path.suffix)


@dataclass
class SequenceJob:
    """One sequence to colorize and how."""

    source: Path
    target: Path
    temporal: Temporal = "on"
    codec: str | None = None
    crf: int | None = None
    overwrite: bool = False
    max_pixels: int | None = None
    #: one hints file for the sequence (JSON whose hints may name a "frame", or a hint image for
    #: frame 0), or a folder of per-frame hint files (:func:`chromatize.hints.frame_hint_files`)
    hints: Path | None = None
    hints_dir: Path | None = None


def frame_count(path: str | os.PathLike[str], max_pixels: int | None = None) -> int:
    """Frames in the sequence (0 where a video does not say)."""
    kind = sequence_kind(path)
    if kind == "video":
        return video.probe_video(path, max_pixels).frames
    if kind == "folder":
        return len(video.frame_files(path))
    return video.tiff_pages(path)


def frame_hints(job: SequenceJob, files: list[Path], frames: int) -> dict[int, Hints]:
    """Every frame's hints from ``job.hints`` or ``job.hints_dir``, loaded (and so checked) before
    any frame is colorized: frame index -> hints. ``files`` are the frame files of a folder
    sequence (their names match the hint files; EXIF orientation applied as for photos) and
    ``frames`` the frame count (0 when unknown)."""
    if job.hints is not None and job.hints_dir is not None:
        raise HintError("give --hints or --hints-dir, not both")
    if job.hints is not None:
        table = load_frame_hints(job.hints)
    elif job.hints_dir is not None:
        paths = frame_hint_files(job.hints_dir, [f.stem for f in files])
        table = {i: load_hints(p, image_path=files[i] if i < len(files) else None)
                 for i, p in paths.items()}
    else:
        return {}
    beyond = [i for i in table if frames and i >= frames]
    if beyond:
        raise HintError(f"hints name frame {max(beyond)} but {job.source.name} has {frames} "
                        "frames (frames count from 0)")
    return table


def colorize_sequence_file(job: SequenceJob, options: ColorizeOptions, *,
                           colorizer: Colorizer | None = None,
                           progress: Callable[[int], None] | None = None) -> int:
    """Colorize ``job.source`` into ``job.target``; returns the number of frames.
    ``progress(done)`` is called after every frame."""
    kind = sequence_kind(job.source)
    if kind is None:
        raise InputImageError(f"{job.source} is not a video, a folder of frames or a "
                              "multi-page TIFF")
    files = video.frame_files(job.source) if kind == "folder" else []
    hints = frame_hints(job, files, frame_count(job.source, job.max_pixels))
    colorizer = colorizer if colorizer is not None else Colorizer.from_options(
        options, max_pixels=job.max_pixels or 2**62)
    if hints:
        colorizer.refuse_hints_unless_accepted()
    runner = SequenceColorizer(colorizer, options, temporal=job.temporal)
    done = 0

    def one(frame: np.ndarray) -> np.ndarray:
        nonlocal done
        out = runner.process(frame, hints.get(done)).image
        done += 1
        if progress is not None:
            progress(done)
        return out

    if kind == "video":
        return video.transcode_video(job.source, job.target, lambda f: one(f)[..., :3],
                                     codec=job.codec, crf=job.crf, overwrite=job.overwrite,
                                     max_pixels=job.max_pixels)
    if kind == "folder":
        frames = video.read_frames(files, job.max_pixels)
        named = ((f.name, one(frame)) for f, frame in zip(files, frames, strict=True))
        return video.write_frame_folder(job.target, named, overwrite=job.overwrite)
    pages = (one(page) for page in video.read_tiff_stack(job.source, job.max_pixels))
    return video.write_tiff_stack(job.target, pages, overwrite=job.overwrite)
