"""``python -m chromatize.worker``: colorize raw pixels sent over stdin, for editor plug-ins.

Editors (GIMP 3, GIMP 2.10) run their own Python, which may have neither torch nor numpy. Their
plug-ins stay thin: they start this worker with the Python that has chromatize installed, write
one request, and read the answer. The worker never opens a window and never prints anything but
protocol messages on stdout (stray output of libraries is redirected to stderr).

Protocol, version 2 (``PROTOCOL_VERSION``)
==========================================

Version 2 adds colour hints (a hint image block after the pixels, step 2). Version 1 requests
(``"protocol": 1``, no hints) are still served exactly as before; a version 1 request that
carries ``hints`` is refused as a ``bad_request`` that says to update the plug-in.

All JSON is UTF-8, one object per line, terminated by ``\\n``. Raw pixel blocks are little-endian,
row-major, channels interleaved, without padding.

1. On start the worker writes a hello line before importing anything heavy::

       {"type": "hello", "protocol": 2, "protocols": [1, 2], "chromatize": "0.1.0",
        "pid": 1234, "cancel_on_eof": true}

   ``protocol`` is the newest version the worker speaks, ``protocols`` every version whose
   requests it serves (``SUPPORTED_PROTOCOLS``). A client that only speaks version 1 and
   insists on ``"protocol": 1`` here should tell its user to update the plug-in.

2. The client writes ONE request header line, then the raw blocks it announces.

   ``{"protocol": 2, "op": "colorize", ...}`` with the image's geometry

   ============== ==========================================================================
   width, height  image size in pixels (positive integers)
   channels       1 = gray, 2 = gray+alpha, 3 = RGB, 4 = RGBA (sRGB-encoded, "R'G'B'A")
   dtype          ``"float32"`` (values in [0, 1]; others are clamped, NaN counts as 0),
                  ``"uint8"`` or ``"uint16"``
   mask           true when a mask block follows the pixels (default false)
   hints          (protocol 2) null/absent for none, or the geometry of a hint image block
                  that follows the pixels (and the mask):
                  ``{"width": W, "height": H, "channels": 4, "dtype": "uint8"}`` with the
                  image's width and height, ``channels`` 4 (R'G'B'A) or 2 (Y'A), ``dtype``
                  one of the image dtypes (it need not be the image's)
   ============== ==========================================================================

   and the colorization settings, the fields of :class:`chromatize.options.ColorizeOptions`
   (checked by it; a missing field or JSON ``null`` takes the default, an unknown field is a
   ``bad_request``):

   ============== ==========================================================================
   model          registry name (``"mobile"``, ``"eccv16"``); default ``"mobile"``
   weights        path of a weights file, or null for the model's own (cache / shipped)
   temperature    annealed-mean temperature > 0, or null for the model's default
   saturation     >= 0; 1 = model output, 0 = gray (default 1)
   render_size    network input size in pixels, or null for the model's default
   device         ``"auto"`` (default), ``"cpu"``, ``"cuda"``, ``"mps"``
   allow_download true to let a missing model be downloaded (default false)
   upsample,      the other settings of :data:`chromatize.options.SETTINGS`, same names and
   decode         values as there (defaults ``"guided"``, ``"annealed_mean"``)
   ============== ==========================================================================

   followed by ``width*height*channels`` samples of ``dtype`` and, when ``mask`` is true,
   ``width*height`` mask samples of the same dtype (0 = keep input, 1 = colorized, between =
   blend; pixels with mask 0 are returned bit-identical to the input), and, when ``hints`` is
   given, ``W*H*channels`` hint samples of its own dtype: every pixel whose alpha is above 0
   is a one-pixel colour hint of its colour (:meth:`chromatize.hints.Hints.from_image`),
   obeyed at full resolution (that pixel gets the hint's colour with the image's own
   lightness). A hint block without any hint pixel is the same as no hints. Hints for a model
   that does not accept them (``eccv16``) are refused with kind ``failed`` and a message
   that says so; a hint image of another size than the image with kind ``failed`` too.

   ``{"protocol": 2, "op": "info"}`` (no payload) asks for versions, models (with
   ``accepts_hints``) and devices.

3. After the payload the client keeps stdin open until the final message. It may write
   ``{"op": "cancel"}`` on stdin; the worker then stops at the next checkpoint and answers with
   an error of kind ``cancelled`` (within ``CANCEL_GRACE_SECONDS``: if the model is still busy
   then, the worker writes that error itself and exits at once).

   **Closing stdin (end of file) after the payload cancels too** (a compatible change within
   protocol 1, announced by ``"cancel_on_eof": true`` in the hello line: before, end of file was
   ignored and a worker whose client had gone kept computing for minutes). A client that went
   away (cancelled, crashed, killed) closes the pipe, so the worker stops within
   ``CANCEL_GRACE_SECONDS`` without answering. On Linux the worker also
   asks the kernel for SIGTERM when the process that started it dies
   (``prctl(PR_SET_PDEATHSIG)``; the kernel ties it to the *thread* that started the worker,
   so start it from a thread that lives until the answer), and editor plug-ins put themselves
   into their own process group, so that the editor's "kill the plug-in" reaches the worker
   too. Killing the process
   is always safe: it writes no files.

4. The worker writes any number of progress lines::

       {"type": "progress", "fraction": 0.42, "stage": "colorizing", "text": "Colorizing"}

   (fraction of the whole request in [0, 1], non-decreasing; ``stage`` one of ``STAGES``, in
   this order: ``"loading"`` (the model loads), ``"preparing"`` (lightness at full size),
   ``"colorizing"`` (the network; one call, so its fraction is an estimate from the render
   size that moves while it runs), ``"finishing"`` (colour brought to full size); ``text``
   says the stage in words for a progress bar; clients must accept stages they do not know),
   then exactly one final message and exits:

   - success (exit code 0)::

       {"type": "result", "width": W, "height": H, "channels": 3|4, "dtype": "...",
        "nbytes": N, "model": "mobile", "device": "cpu", "hints": 3}

     immediately followed by N raw bytes: the colorized image, same dtype as the request,
     3 channels (RGB) or 4 (RGBA; alpha passed through unchanged). Gray input gives RGB,
     gray+alpha gives RGBA. ``hints`` (protocol 2; a version 1 client ignores it) is the number
     of hint pixels used.

   - ``{"type": "info", "protocol": 2, "chromatize": ..., "models": [...], "devices": [...]}``
     for the ``info`` op (exit code 0);

   - failure (exit code 1)::

       {"type": "error", "kind": "model_missing", "message": "...", "detail": "..."}

     ``message`` is meant for the user as is, naming settings by the labels of the editor's
     dialog (:func:`chromatize.failures.describe_failure` for ``"gimp"``); ``detail``
     (optional) carries a traceback for unexpected errors. Kinds (``ERROR_KINDS``, the kinds of
     :data:`chromatize.failures.FailureKind`): ``bad_request`` (malformed header, wrong protocol
     version, truncated payload, a setting out of range or unknown), ``model_missing`` (unknown
     model, weights missing, unreadable or not fitting), ``device_unavailable`` (including a
     device name this chromatize does not know), ``bad_image``, ``bad_output`` (a result that
     cannot be written), ``out_of_memory``, ``cancelled``, ``failed`` (any other expected
     failure, message says why), ``internal`` (a bug: please report the detail).
     A ``model_missing`` error also carries ``model``, ``model_status`` (``"cached"``,
     ``"shipped"``, ``"downloadable"``, ``"missing"`` or ``"unknown"``), ``weights_given`` and
     ``allow_download``, so that a plug-in can say what to do in its own words.

If the process ends without a final message (killed, crashed), clients report a crash and show
the tail of its stderr.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

from chromatize import __version__
from chromatize.errors import ChromatizeError, DeviceUnavailableError
from chromatize.failures import Failure, describe_failure
from chromatize.options import ColorizeOptions, OptionError
from chromatize.progress import CancelCallback, Progress, ProgressCallback

PROTOCOL_VERSION = 2
#: Every protocol version whose requests this worker serves (version 1: no hints).
SUPPORTED_PROTOCOLS: tuple[int, ...] = (1, 2)
#: The first protocol version whose requests may carry hints.
HINTS_PROTOCOL = 2
#: The error kinds of the protocol (step 4), the kinds of chromatize.failures.FailureKind.
ERROR_KINDS: tuple[str, ...] = (
    "bad_request",
    "model_missing",
    "device_unavailable",
    "bad_image",
    "bad_output",
    "out_of_memory",
    "cancelled",
    "failed",
    "internal",
)
DTYPES: dict[str, str] = {"float32": "<f4", "uint8": "|u1", "uint16": "<u2"}
#: Header fields that describe the request and its payload, not the colorization settings.
REQUEST_FIELDS: tuple[str, ...] = ("protocol", "op", "width", "height", "channels", "dtype",
                                   "mask", "hints")
MAX_HEADER_BYTES = 64 * 1024
#: Largest accepted image (pixels); far beyond any photo, it only stops nonsense headers.
MAX_PIXELS = 1 << 31
#: Progress smaller than this is not worth a line (except reaching 1).
_PROGRESS_STEP = 0.005
#: The progress stages in order, with their words for a progress bar and their share of the
#: whole request (``start``, ``end``).
#: Loading (importing torch, reading the weights) is most of a default run; the network is
#: most of a run at a large render size.
STAGES: dict[str, tuple[str, float, float]] = {
    "loading": ("Loading the model", 0.0, 0.3),
    "preparing": ("Reading the image", 0.3, 0.35),
    "colorizing": ("Colorizing", 0.35, 0.85),
    "finishing": ("Bringing the colours to full size", 0.85, 1.0),
}
#: After a cancel (line or end of stdin) the worker waits this long for the next checkpoint,
#: then stops by itself (the model's forward pass has no checkpoint inside).
CANCEL_GRACE_SECONDS = 1.0
#: Exit code of a worker that stopped because its client went away or cancelled.
EXIT_CANCELLED = 1
#: Rough speed of the network (render pixels per second) for the progress estimate of the one
#: model call: on 2 shared CPU cores mobile did about 1 M/s at render 2048, eccv16 several times
#: less; GPUs are far faster.
_MODEL_PIXELS_PER_SECOND = {"cpu": 600_000.0}
_GPU_PIXELS_PER_SECOND = 5_000_000.0
#: Seconds importing torch and loading a model usually takes (progress estimate only).
_LOADING_ESTIMATE_SECONDS = 4.0
#: How often an estimated stage moves the bar.
_TICK_SECONDS = 0.25


class RequestError(ChromatizeError):
    """The request is malformed; reported with kind ``bad_request``."""


@dataclass(frozen=True)
class Request:
    """A checked request header: the op, the payload's geometry and the settings."""

    op: str
    width: int = 0
    height: int = 0
    channels: int = 0
    dtype: str = "float32"
    mask: bool = False
    options: ColorizeOptions = field(default_factory=ColorizeOptions)
    #: the hint image block's geometry (width, height, channels, dtype), or None for no hints
    hints: HintBlock | None = None
    protocol: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class HintBlock:
    """The geometry of a request's hint image block (protocol 2)."""

    width: int
    height: int
    channels: int
    dtype: str


class Channel:
    """Writes protocol messages (JSON lines and raw blocks) to the protocol stream."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._progress_lock = threading.Lock()
        self._stage = "loading"
        self._sent = -1.0
        #: never-decreasing progress of the request; polls ``cancel`` once it is set
        self.tracker = Progress(self._send_progress)
        #: set once the final message (result or error) is being written
        self.closing = threading.Event()

    def send(self, message: dict[str, Any], payload: bytes | memoryview | None = None) -> None:
        line = (json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            self._stream.write(line)
            if payload is not None:
                self._stream.write(payload)
            self._stream.flush()

    def progress(self, fraction: float, stage: str) -> None:
        """Report ``fraction`` of the whole request (kept non-decreasing) in ``stage``."""
        with self._progress_lock:  # the estimating ticker reports from its own thread
            if stage != self._stage:
                self._stage = stage
                self._sent = -1.0  # a new stage's text is always sent
            self.tracker.report(fraction)

    def span(self, stage: str) -> ProgressCallback:
        """A callback mapping ``stage``'s own 0..1 onto its share of the request."""
        _, start, end = STAGES[stage]

        def report(fraction: float) -> None:
            self.progress(start + (end - start) * min(1.0, max(0.0, float(fraction))), stage)

        return report

    @contextmanager
    def estimating(self, stage: str, seconds: float) -> Iterator[None]:
        """Move the bar through ``stage`` while one uninterruptible call runs: towards the
        stage's end, approaching it as time passes (``seconds`` is the expected duration), so
        that it never stands still and never claims the stage is done before it is."""
        report = self.span(stage)
        report(0.0)
        stop = threading.Event()
        started = time.monotonic()
        scale = max(0.05, float(seconds))

        def tick() -> None:
            while not stop.wait(_TICK_SECONDS):
                report(0.95 * (1.0 - math.exp(-(time.monotonic() - started) / scale)))

        ticker = threading.Thread(target=tick, name="chromatize-progress", daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()
        report(1.0)

    def _send_progress(self, fraction: float) -> None:
        if fraction - self._sent < _PROGRESS_STEP and fraction < 1.0:
            return
        self._sent = fraction
        self.send({"type": "progress", "fraction": round(fraction, 4), "stage": self._stage,
                   "text": STAGES[self._stage][0]})

    def final(self, message: dict[str, Any], payload: bytes | memoryview | None = None) -> None:
        """Write the final message (result or error); nothing else is written after it."""
        self.closing.set()
        self.send(message, payload)

    def error(self, failure: Failure, detail: str | None = None,
              context: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"type": "error", "kind": failure.kind, "message": failure.message}
        if detail:
            body["detail"] = detail
        body.update(context or {})
        self.final(body)


def _read_exact(stream: BinaryIO, nbytes: int, what: str) -> bytearray:
    """Read exactly ``nbytes`` into one buffer (no second copy of a large image)."""
    buffer = bytearray(nbytes)
    view = memoryview(buffer)
    got = 0
    while got < nbytes:
        chunk = stream.readinto(view[got:got + (1 << 24)])  # type: ignore[attr-defined]
        if not chunk:
            raise RequestError(f"truncated {what}: expected {nbytes} bytes, got {got}")
        got += chunk
    return buffer


def _load_header(line: bytes) -> dict[str, Any]:
    try:
        header = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"the request header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise RequestError("the request header must be a JSON object")
    protocol = header.get("protocol")
    if isinstance(protocol, bool) or protocol not in SUPPORTED_PROTOCOLS:
        raise RequestError(
            f"the plug-in speaks worker protocol {protocol!r} but this chromatize "
            f"({__version__}) speaks {', '.join(map(str, SUPPORTED_PROTOCOLS))}; reinstall the "
            "plug-in with `chromatize gimp install` from the same environment"
        )
    return header


def _positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RequestError(f"{what} must be a positive integer, got {value!r}")
    return value


def _hint_block(header: dict[str, Any], width: int, height: int) -> HintBlock | None:
    """The checked ``hints`` field of a colorize request (protocol 2), or None."""
    spec = header.get("hints")
    if spec is None:
        return None
    if header["protocol"] < HINTS_PROTOCOL:
        raise RequestError(
            f"colour hints need worker protocol {HINTS_PROTOCOL}, but the request says "
            f"protocol {header['protocol']}; reinstall the plug-in with `chromatize gimp "
            "install` from the same environment"
        )
    if not isinstance(spec, dict):
        raise RequestError(f"hints must be null or an object with width, height, channels "
                           f"and dtype, got {spec!r}")
    unknown = sorted(set(spec) - {"width", "height", "channels", "dtype"})
    if unknown:
        raise RequestError(f"unknown field(s) in hints: {', '.join(unknown)}")
    block = HintBlock(_positive(spec.get("width", width), "hints.width"),
                      _positive(spec.get("height", height), "hints.height"),
                      _positive(spec.get("channels", 4), "hints.channels"),
                      spec.get("dtype", "uint8"))
    if block.channels not in (2, 4):
        raise RequestError(f"hints.channels must be 4 (RGBA) or 2 (gray+alpha): a hint image "
                           f"needs alpha; got {block.channels}")
    if block.dtype not in DTYPES:
        raise RequestError(f"hints.dtype must be one of {', '.join(DTYPES)}, got "
                           f"{block.dtype!r}")
    if block.width * block.height > MAX_PIXELS:
        raise RequestError(f"hint image of {block.width}x{block.height} pixels is too large")
    return block


def _geometry(header: dict[str, Any]) -> dict[str, Any]:
    """The payload's checked geometry fields (width, height, channels, dtype, mask)."""
    for key in ("width", "height", "channels"):
        value = header.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise RequestError(f"{key} must be a positive integer, got {value!r}")
    if header["channels"] > 4:
        raise RequestError(f"channels must be 1 to 4, got {header['channels']}")
    if header["width"] * header["height"] > MAX_PIXELS:
        raise RequestError(f"image of {header['width']}x{header['height']} pixels is too large")
    dtype = header.get("dtype", "float32")
    if dtype not in DTYPES:
        raise RequestError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    mask = header.get("mask", False)
    if not isinstance(mask, bool):
        raise RequestError(f"mask must be true or false, got {mask!r}")
    return {"width": header["width"], "height": header["height"],
            "channels": header["channels"], "dtype": dtype, "mask": mask}


def request_options(header: dict[str, Any]) -> ColorizeOptions:
    """The colorization settings of a request header (null = default; unknown = an error).

    A device name this chromatize does not know is reported as ``device_unavailable`` (the
    plug-in may offer devices of a newer chromatize), every other bad setting as
    ``bad_request``.
    """
    try:
        return ColorizeOptions.from_mapping(header, ignore=REQUEST_FIELDS)
    except OptionError as exc:
        if exc.setting == "device":
            raise DeviceUnavailableError(*exc.args) from None
        raise


def parse_header(line: bytes) -> Request:
    """Validate a request header line; returns it with defaults filled in."""
    header = _load_header(line)
    op = header.get("op", "colorize")
    if op not in ("colorize", "info"):
        raise RequestError(f"unknown op {op!r}; expected 'colorize' or 'info'")
    if op == "info":
        return Request(op, protocol=header["protocol"])
    geometry = _geometry(header)
    hints = _hint_block(header, geometry["width"], geometry["height"])
    return Request(op, **geometry, options=request_options(header), hints=hints,
                   protocol=header["protocol"])


def describe(exc: BaseException) -> Failure:
    """The protocol's kind and the user's message for ``exc`` (settings named as GIMP labels)."""
    if isinstance(exc, RequestError):
        return Failure("bad_request", str(exc))
    return describe_failure(exc, "gimp")


def _info() -> dict[str, Any]:
    from chromatize.device import available_devices
    from chromatize.registry import list_models
    from chromatize.weights import model_status

    models = [
        {"name": spec.name, "description": spec.description, "status": model_status(spec.name),
         "accepts_hints": spec.accepts_hints,
         "default_temperature": spec.default_temperature,
         "default_input_size": spec.default_input_size}
        for spec in list_models()
    ]
    return {"type": "info", "protocol": PROTOCOL_VERSION,
            "protocols": list(SUPPORTED_PROTOCOLS), "chromatize": __version__,
            "python": sys.executable, "models": models, "devices": available_devices()}


def _exit_now(code: int) -> None:
    """End the process at once (the main thread may be inside the model); for tests to stub."""
    os._exit(code)


class CancelWatcher:
    """Reads control lines from stdin after the payload and sets the flag when the client
    cancels: a ``{"op": "cancel"}`` line, or the end of stdin (the client closed the pipe or
    went away). If the request has not ended ``grace`` seconds later (the model's one call has
    no checkpoint), the watcher ends the process itself: after a cancel line it first writes the
    ``cancelled`` error the client waits for; after end of file nobody is listening."""

    def __init__(self, stream: BinaryIO, channel: Channel | None = None,
                 grace: float = CANCEL_GRACE_SECONDS) -> None:
        self.flag = threading.Event()
        #: "cancel" (a cancel line) or "closed" (end of stdin) once the flag is set
        self.reason: str | None = None
        self._stream = stream
        self._channel = channel
        self._grace = grace
        self._thread = threading.Thread(target=self._watch, name="chromatize-cancel", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        self.reason = self._wait_for_cancel()
        self.flag.set()
        if self._channel is None or self._channel.closing.wait(self._grace):
            return  # the request ended by itself (with "cancelled" or its result)
        if self.reason == "cancel":
            try:
                self._channel.final({"type": "error", "kind": "cancelled",
                                     "message": "colorization was cancelled"})
            except OSError:
                pass
        _exit_now(EXIT_CANCELLED)

    def _wait_for_cancel(self) -> str:
        try:
            for line in self._stream:
                try:
                    message = json.loads(line.decode("utf-8"))
                except ValueError:
                    continue
                if isinstance(message, dict) and message.get("op") == "cancel":
                    return "cancel"
        except (OSError, ValueError):
            pass
        return "closed"

    def __call__(self) -> bool:
        return self.flag.is_set()


def _read_payload(request: Request, stdin: BinaryIO) -> tuple[Any, Any, Any]:
    """The pixels (H, W, C) of the request's dtype, the mask (H, W) float32 in [0, 1] (or
    None) and the hints (:class:`chromatize.hints.Hints`, or None for none)."""
    import numpy as np

    width, height, channels = request.width, request.height, request.channels
    dtype = np.dtype(DTYPES[request.dtype])
    raw = _read_exact(stdin, width * height * channels * dtype.itemsize, "pixel data")
    pixels = np.frombuffer(raw, dtype=dtype).reshape(height, width, channels)
    mask = None
    if request.mask:
        raw_mask = _read_exact(stdin, width * height * dtype.itemsize, "mask data")
        mask = np.frombuffer(raw_mask, dtype=dtype).reshape(height, width).astype(np.float32)
        if dtype.kind == "u":
            mask /= float(np.iinfo(dtype).max)
        mask = np.clip(np.nan_to_num(mask, nan=0.0), 0.0, 1.0)
    return pixels, mask, _read_hints(request, stdin)


def _read_hints(request: Request, stdin: BinaryIO) -> Any:
    """The request's hint image block as :class:`chromatize.hints.Hints` (None when the request
    has none or it holds no hint pixel), checked against the image's size."""
    import numpy as np

    block = request.hints
    if block is None:
        return None
    dtype = np.dtype(DTYPES[block.dtype])
    raw = _read_exact(stdin, block.width * block.height * block.channels * dtype.itemsize,
                      "hint data")
    array = np.frombuffer(raw, dtype=dtype).reshape(block.height, block.width, block.channels)
    if dtype.kind == "f":
        array = np.clip(np.nan_to_num(array, nan=0.0), 0.0, 1.0)
    from chromatize.hints import Hints

    hints = Hints.from_image(array, where="the hints layer")
    hints.validate(request, where="the hints layer")
    return hints if len(hints) else None


def _model_input(pixels: Any, mask: Any) -> Any:
    """The image the Colorizer gets: float input clamped to [0, 1], gray as (H, W)."""
    import numpy as np

    image = pixels
    if pixels.dtype.kind == "f":
        # In place unless the originals are needed for the bit-exact pass-through.
        image = pixels if mask is None else pixels.copy()
        np.nan_to_num(image, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
        np.clip(image, 0.0, 1.0, out=image)
    return image[:, :, 0] if pixels.shape[2] == 1 else image


def _pass_through(out: Any, pixels: Any, mask: Any) -> Any:
    """``out`` with the input's exact samples where the mask is 0 (no float round trip)."""
    import numpy as np

    keep = mask <= 0.0
    if not keep.any():
        return out
    channels = pixels.shape[2]
    source = pixels if channels >= 3 else np.repeat(pixels[:, :, :1], 3, axis=2)
    if channels == 2:
        source = np.concatenate([source, pixels[:, :, 1:2]], axis=2)
    out = out.copy() if not out.flags.writeable else out
    out[keep] = source[keep]
    return out


def _model_seconds(render: tuple[int, int], device: Any) -> float:
    """A rough duration of the model's one call, for the progress estimate only."""
    rate = _MODEL_PIXELS_PER_SECOND.get(getattr(device, "type", str(device)),
                                        _GPU_PIXELS_PER_SECOND)
    return render[0] * render[1] / rate


def _colorize(request: Request, stdin: BinaryIO, channel: Channel) -> None:
    import numpy as np

    pixels, mask, hints = _read_payload(request, stdin)
    cancel: CancelCallback = CancelWatcher(stdin, channel)
    channel.tracker.cancel = cancel
    image = _model_input(pixels, mask)

    # The pipeline's public stages (what Colorizer.colorize runs), so that each reports its own
    # progress and the one model call gets an estimated, moving bar.
    with channel.estimating("loading", _LOADING_ESTIMATE_SECONDS):
        from chromatize.pipeline import Colorizer

        colorizer = Colorizer.from_options(request.options)
    if hints is not None:
        colorizer.refuse_hints_unless_accepted()
    channel.tracker.check()
    prepared = colorizer.prepare(image, mask=mask, cancel=cancel,
                                 progress=channel.span("preparing"))
    channel.tracker.check()
    with channel.estimating("colorizing", _model_seconds(prepared.render, colorizer.device)):
        prediction = colorizer.predict(prepared, hints=hints)
    channel.tracker.check()
    out = colorizer.finish(prepared, prediction, hints=hints, cancel=cancel,
                           progress=channel.span("finishing"))
    del prepared, prediction
    out = np.ascontiguousarray(out, dtype=pixels.dtype)
    if mask is not None:
        out = _pass_through(out, pixels, mask)
    channel.progress(1.0, "finishing")
    channel.final(
        {"type": "result", "width": request.width, "height": request.height,
         "channels": int(out.shape[2]), "dtype": request.dtype, "nbytes": int(out.nbytes),
         "model": colorizer.model_name, "device": str(colorizer.device),
         "hints": 0 if hints is None else len(hints)},
        memoryview(out).cast("B"),
    )


def _error_context(failure: Failure, request: Request | None) -> dict[str, Any]:
    """Facts a plug-in needs to phrase a ``model_missing`` error in its own words: the model,
    where its weights stand (:func:`chromatize.weights.model_status`), whether a weights file
    was given and whether downloading was allowed."""
    if failure.kind != "model_missing" or request is None or request.op != "colorize":
        return {}
    options = request.options
    context: dict[str, Any] = {"model": options.model, "weights_given": options.weights is not None,
                               "allow_download": options.allow_download}
    try:
        from chromatize.weights import model_status

        context["model_status"] = model_status(options.model)
    except Exception:  # an unknown model has no status
        context["model_status"] = "unknown"
    return context


def serve(stdin: BinaryIO, stdout: BinaryIO, log: IO[str] | None = None) -> int:
    """Answer one request read from ``stdin`` on ``stdout``; returns the exit code."""
    channel = Channel(stdout)
    channel.send({"type": "hello", "protocol": PROTOCOL_VERSION,
                  "protocols": list(SUPPORTED_PROTOCOLS), "chromatize": __version__,
                  "pid": os.getpid(), "cancel_on_eof": True})
    request: Request | None = None
    try:
        line = stdin.readline(MAX_HEADER_BYTES)
        if not line:
            raise RequestError("no request: stdin was closed before a header line arrived")
        if not line.endswith(b"\n"):
            raise RequestError("the request header line is too long or not terminated by \\n")
        request = parse_header(line)
        if request.op == "info":
            channel.final(_info())
        else:
            _colorize(request, stdin, channel)
        return 0
    except BaseException as exc:  # every failure becomes one structured error message
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        failure = describe(exc)
        detail = traceback.format_exc() if failure.kind == "internal" else None
        if log is not None and detail:
            log.write(detail)
        try:
            channel.error(failure, detail, _error_context(failure, request))
        except OSError:
            pass  # the client went away; nothing left to tell
        return 1


def _private_stdout() -> BinaryIO:
    """Keep the real stdout for the protocol and point fd 1 at stderr for everything else."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "wb", buffering=0)


def die_with_parent() -> bool:
    """On Linux, ask the kernel to send this process SIGTERM when its parent dies
    (``prctl(PR_SET_PDEATHSIG)``); returns whether that is in place (False elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        if libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError, TypeError):
        return False
    return True


def main(argv: list[str] | None = None,
         serve_fn: Callable[[BinaryIO, BinaryIO, IO[str] | None], int] = serve) -> int:
    """Entry point: serve one request (``--help``, ``--version`` print and exit)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv and argv[0] == "--version":
        print(f"chromatize worker {__version__}, protocol {PROTOCOL_VERSION}")
        return 0
    die_with_parent()
    protocol_out = _private_stdout()
    return serve_fn(sys.stdin.buffer, protocol_out, sys.stderr)


if __name__ == "__main__":
    _code = main()
    # End without interpreter shutdown: the cancel watcher may still be blocked reading stdin,
    # and finalizing Python with a daemon thread inside a buffered read aborts the process.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_code)
