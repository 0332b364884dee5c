"""Frame sequences in and out: video files (PyAV), folders of numbered frames, multi-page TIFF.

Video files (``.mp4 .mkv .mov .avi .webm``) are decoded and encoded with PyAV (the ``video``
extra). :func:`transcode_video` streams: each decoded frame goes through a callback (the
colorizer) and is encoded at once, so memory does not grow with the clip. What is kept: the frame
count and every frame's timestamp (so the frame rate, constant or variable), size, the rotation
(display matrix) and pixel aspect ratio; audio streams are copied packet by packet, unchanged.
The output is written under a temporary name beside the target and renamed only when complete;
on any failure nothing is left under the output name.

Folders of numbered frames (``frame_0001.png`` ...) are read in numeric order and written as one
output folder with the same names (built under a temporary name, renamed when complete).
Multi-page TIFF stacks are read page by page and written page by page (16-bit stays 16-bit).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from chromatize.atomic import replacing
from chromatize.errors import ChromatizeError, InputImageError, OutputError

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".mov", ".avi", ".webm"})
TIFF_EXTENSIONS = frozenset({".tif", ".tiff"})
#: Default encoder per output extension (H.264 everywhere but WebM, which takes VP9).
DEFAULT_CODECS = {".webm": "libvpx-vp9"}
DEFAULT_CODEC = "libx264"
#: Default constant rate factor: visually lossless for H.264 (x264's scale; VP9's 0-63 scale
#: gets DEFAULT_VP9_CRF).
DEFAULT_CRF = 18
DEFAULT_VP9_CRF = 24


def _av() -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ChromatizeError("video files need PyAV; install chromatize with the video extra "
                              "(pip install 'chromatize[video]')") from exc
    return av


def is_video(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learns from a video file's headers."""

    width: int
    height: int
    #: frames announced by the container (0 = unknown)
    frames: int
    rate: Fraction | None
    codec: str
    sample_aspect: Fraction | None
    audio_streams: int
    #: counter-clockwise display rotation in degrees (from the display matrix)
    rotation: int = 0


def _input_error(path: Path, exc: BaseException) -> InputImageError:
    text = str(exc).strip() or type(exc).__name__
    return InputImageError(f"{path}: cannot read this video ({text}); the file may be truncated, "
                           "corrupt or in a format FFmpeg cannot decode")


def probe_video(path: str | os.PathLike[str], max_pixels: int | None = None) -> VideoInfo:
    """Check that ``path`` is a video chromatize can decode and return its header facts."""
    av, path = _av(), Path(path)
    if not path.is_file():
        raise InputImageError(f"{path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise InputImageError(f"{path} is empty")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputImageError(f"{path} has no video stream")
            stream = container.streams.video[0]
            ctx = stream.codec_context
            first = next(iter(container.decode(stream)), None)  # decodable at all?
            if first is None:
                raise InputImageError(f"{path} has no frames")
            info = VideoInfo(ctx.width, ctx.height, int(stream.frames or 0),
                             stream.average_rate or stream.guessed_rate, ctx.name,
                             stream.sample_aspect_ratio, len(container.streams.audio),
                             int(getattr(first, "rotation", 0) or 0))
    except InputImageError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise _input_error(path, exc) from None
    if info.width <= 0 or info.height <= 0:
        raise InputImageError(f"{path}: the video stream has no frame size (codec {info.codec} "
                              "could not be opened)")
    if max_pixels and info.width * info.height > max_pixels:
        raise InputImageError(f"{path}: frames of {info.width}x{info.height} are larger than "
                              f"«max_pixels» ({max_pixels:,} pixels)")
    return info


def read_video(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """The frames (H, W, 3) uint8 RGB of the first video stream, in order (as stored, not
    rotated)."""
    av, path = _av(), Path(path)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, OSError) as exc:
        raise _input_error(path, exc) from None


def _encoder_options(codec: str, crf: int | None) -> dict[str, str]:
    if codec in ("libvpx-vp9", "libvpx"):
        return {"crf": str(DEFAULT_VP9_CRF if crf is None else crf), "b": "0",
                "deadline": "good", "cpu-used": "4", "row-mt": "1"}
    if codec in ("libx264", "libx265"):
        return {"crf": str(DEFAULT_CRF if crf is None else crf), "preset": "medium"}
    return {} if crf is None else {"crf": str(crf)}


def _add_video_stream(container: Any, source: Any, codec: str, crf: int | None) -> Any:
    av = _av()
    if codec not in av.codecs_available:
        raise OutputError(f"the video encoder {codec!r} is not available in this PyAV build; "
                          "choose another «codec»")
    rate = source.average_rate or source.guessed_rate or Fraction(25)
    out = container.add_stream(codec, rate=rate)
    out.width, out.height = source.codec_context.width, source.codec_context.height
    odd = out.width % 2 or out.height % 2
    out.pix_fmt = "yuv444p" if odd and codec == "libx264" else "yuv420p"
    out.time_base = source.time_base
    out.options = _encoder_options(codec, crf)
    if source.sample_aspect_ratio:
        out.codec_context.sample_aspect_ratio = source.sample_aspect_ratio
    return out


@dataclass
class _Transcode:
    """State of one :func:`transcode_video` run."""

    source: Any
    out: Any
    container: Any
    process: Callable[[np.ndarray], np.ndarray]
    frames: int = 0

    def video(self, frame: Any) -> None:
        av = _av()
        rgb = self.process(frame.to_ndarray(format="rgb24"))
        new = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        new.pts, new.time_base = frame.pts, frame.time_base
        for packet in self.out.encode(new):
            self.container.mux(packet)
        self.frames += 1


def transcode_video(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                    process: Callable[[np.ndarray], np.ndarray], *, codec: str | None = None,
                    crf: int | None = None, overwrite: bool = False,
                    max_pixels: int | None = None) -> int:
    """Decode ``src``, pass every frame (H, W, 3) uint8 RGB through ``process``, encode the
    results into ``dst`` with the audio copied; returns the number of frames."""
    av, src, dst = _av(), Path(src), Path(dst)
    info = probe_video(src, max_pixels)
    if dst.exists() and not overwrite:
        raise OutputError(f"{dst} already exists; not replacing it (allow «overwrite»)")
    if not dst.parent.is_dir():
        raise OutputError(f"cannot write {dst}: folder {dst.parent} does not exist")
    codec = codec or DEFAULT_CODECS.get(dst.suffix.lower(), DEFAULT_CODEC)
    with replacing(dst, dst.suffix) as tmp, av.open(str(src)) as container:
        source = container.streams.video[0]
        source.thread_type = "AUTO"
        with av.open(str(tmp), "w") as output:
            stream = _add_video_stream(output, source, codec, crf)
            if info.rotation:
                stream.set_display_rotation(info.rotation)
            state = _Transcode(source, stream, output, process)
            audio = {s.index: output.add_stream_from_template(s) for s in container.streams.audio}
            _run_transcode(src, container, state, audio)
        if state.frames == 0:
            raise InputImageError(f"{src} has no frames")
        if info.frames and state.frames < info.frames:
            raise InputImageError(f"{src} is truncated: its header announces {info.frames} frames "
                                  f"but only {state.frames} could be decoded")
    return state.frames


def _run_transcode(src: Path, container: Any, state: _Transcode, audio: dict[int, Any]) -> None:
    av = _av()
    try:
        for packet in container.demux(state.source, *container.streams.audio):
            if packet.stream.index in audio:
                if packet.dts is not None:
                    packet.stream = audio[packet.stream.index]
                    state.container.mux(packet)
                continue
            for frame in packet.decode():
                state.video(frame)
        for packet in state.out.encode():
            state.container.mux(packet)
    except av.FFmpegError as exc:
        raise _input_error(src, exc) from None


def write_video(dst: str | os.PathLike[str], frames: Iterable[np.ndarray], *,
                rate: Fraction | int = 25, codec: str | None = None, crf: int | None = None,
                overwrite: bool = False) -> int:
    """Encode (H, W, 3) uint8 RGB ``frames`` into a new video file (atomic); returns the count."""
    av, dst = _av(), Path(dst)
    if dst.exists() and not overwrite:
        raise OutputError(f"{dst} already exists; not replacing it (allow «overwrite»)")
    codec = codec or DEFAULT_CODECS.get(dst.suffix.lower(), DEFAULT_CODEC)
    count = 0
    with replacing(dst, dst.suffix) as tmp, av.open(str(tmp), "w") as output:
        stream = None
        for rgb in frames:
            if stream is None:
                stream = output.add_stream(codec, rate=Fraction(rate))
                stream.height, stream.width = rgb.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.options = _encoder_options(codec, crf)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            for packet in stream.encode(frame):
                output.mux(packet)
            count += 1
        if stream is not None:
            for packet in stream.encode():
                output.mux(packet)
    return count


# --------------------------------------------------------------------------------------------
# Folders of numbered frames and multi-page TIFF stacks
# --------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"(\d+)")


def _natural_key(path: Path) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p.lower() for p in _NUMBER.split(path.name))


def frame_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files of ``folder`` in numeric order (``frame_2`` before ``frame_10``)."""
    from chromatize.imageio import READABLE_EXTENSIONS

    root = Path(folder)
    if not root.is_dir():
        raise InputImageError(f"{root} is not a folder of frames")
    files = sorted((p for p in root.iterdir()
                    if p.is_file() and p.suffix.lower() in READABLE_EXTENSIONS), key=_natural_key)
    if not files:
        raise InputImageError(f"{root} holds no frames chromatize can read")
    return files


def read_frames(files: Iterable[Path], max_pixels: int | None = None) -> Iterator[np.ndarray]:
    """Each file's pixels, read one at a time."""
    from chromatize.imageio import read_image

    for path in files:
        yield read_image(path, max_pixels=max_pixels).pixels


def write_frame_folder(dst: str | os.PathLike[str], named: Iterable[tuple[str, np.ndarray]], *,
                       overwrite: bool = False) -> int:
    """Write ``(file name, pixels)`` pairs into a new folder ``dst``, built under a temporary
    name beside it and renamed when complete; returns the number of frames."""
    from chromatize.imageio import write_image

    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise OutputError(f"{dst} already exists; not replacing it (allow «overwrite»)")
    if not dst.parent.is_dir():
        raise OutputError(f"cannot write {dst}: folder {dst.parent} does not exist")
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".partial"))
    count = 0
    try:
        for name, pixels in named:
            write_image(tmp / name, pixels)
            count += 1
        if dst.exists():
            shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return count


def tiff_pages(path: str | os.PathLike[str]) -> int:
    """Number of pages (0 if ``path`` is not a TIFF tifffile can open)."""
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as tif:
            return len(tif.pages)
    except (tifffile.TiffFileError, OSError, ValueError):
        return 0


def read_tiff_stack(path: str | os.PathLike[str], max_pixels: int | None = None
                    ) -> Iterator[np.ndarray]:
    """The pages of a multi-page TIFF, one at a time, in their own dtype (uint8/uint16/float)."""
    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(str(path)) as tif:
            for page in tif.pages:
                h, w = page.shape[:2]
                if max_pixels and h * w > max_pixels:
                    raise InputImageError(f"{path}: pages of {w}x{h} are larger than "
                                          f"«max_pixels» ({max_pixels:,} pixels)")
                yield page.asarray()
    except (tifffile.TiffFileError, OSError, ValueError) as exc:
        raise InputImageError(f"{path}: cannot read this TIFF stack ({exc})") from None


def write_tiff_stack(dst: str | os.PathLike[str], pages: Iterable[np.ndarray], *,
                     overwrite: bool = False) -> int:
    """Write ``pages`` (H, W, 3|4) as one multi-page TIFF (atomic); returns the page count."""
    import tifffile

    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise OutputError(f"{dst} already exists; not replacing it (allow «overwrite»)")
    count = 0
    with replacing(dst, dst.suffix) as tmp, tifffile.TiffWriter(str(tmp)) as tif:
        for page in pages:
            extra = "unspecified" if page.shape[-1] == 4 else None
            tif.write(page, photometric="rgb", extrasamples=extra, compression="zlib")
            count += 1
    return count
