"""``python -m chromatize.worker``: colorize raw pixels sent over stdin, for editor plug-ins.

Editors (GIMP 3, GIMP 2.10) run their own Python, which may have neither torch nor numpy. Their
plug-ins stay thin: they start this worker with the Python that has chromatize installed, write
one request, and read the answer. The worker never opens a window and never prints anything but
protocol messages on stdout (stray output of libraries is redirected to stderr).

Protocol, version 1 (``PROTOCOL_VERSION``)
==========================================

All JSON is UTF-8, one object per line, terminated by ``\\n``. Raw pixel blocks are little-endian,
row-major, channels interleaved, without padding.

1. On start the worker writes a hello line before importing anything heavy::

       {"type": "hello", "protocol": 1, "chromatize": "0.1.0", "pid": 1234}

2. The client writes ONE request header line, then the raw blocks it announces.

   ``{"protocol": 1, "op": "colorize", ...}`` with

   ============== ==========================================================================
   width, height  image size in pixels (positive integers)
   channels       1 = gray, 2 = gray+alpha, 3 = RGB, 4 = RGBA (sRGB-encoded, "R'G'B'A")
   dtype          ``"float32"`` (values in [0, 1]; others are clamped, NaN counts as 0),
                  ``"uint8"`` or ``"uint16"``
   model          registry name (``"mobile"``, ``"eccv16"``); default ``"mobile"``
   weights        path of a weights file, or null for the model's own (cache / shipped)
   temperature    annealed-mean temperature > 0, or null for the model's default
   saturation     >= 0; 1 = model output, 0 = gray (default 1)
   render_size    network input size in pixels, or null for the model's default
   device         ``"auto"`` (default), ``"cpu"``, ``"cuda"``, ``"mps"``
   allow_download true to let a missing model be downloaded (default false)
   mask           true when a mask block follows the pixels (default false)
   ============== ==========================================================================

   followed by ``width*height*channels`` samples of ``dtype`` and, when ``mask`` is true,
   ``width*height`` mask samples of the same dtype (0 = keep input, 1 = colorized, between =
   blend; pixels with mask 0 are returned bit-identical to the input).

   ``{"protocol": 1, "op": "info"}`` (no payload) asks for versions, models and devices.

3. After the payload the client may write ``{"op": "cancel"}`` on stdin; the worker then stops
   at the next checkpoint and answers with an error of kind ``cancelled``. Closing stdin early
   does not cancel. Killing the process is always safe: it writes no files.

4. The worker writes any number of progress lines::

       {"type": "progress", "fraction": 0.42, "stage": "colorizing"}

   (``stage``: ``"loading"`` while the model loads, then ``"colorizing"``; fraction in [0, 1],
   non-decreasing), then exactly one final message and exits:

   - success (exit code 0)::

       {"type": "result", "width": W, "height": H, "channels": 3|4, "dtype": "...",
        "nbytes": N, "model": "mobile", "device": "cpu"}

     immediately followed by N raw bytes: the colorized image, same dtype as the request,
     3 channels (RGB) or 4 (RGBA; alpha passed through unchanged). Gray input gives RGB,
     gray+alpha gives RGBA.

   - ``{"type": "info", "protocol": 1, "chromatize": ..., "models": [...], "devices": [...]}``
     for the ``info`` op (exit code 0);

   - failure (exit code 1)::

       {"type": "error", "kind": "model_missing", "message": "...", "detail": "..."}

     ``message`` is meant for the user as is; ``detail`` (optional) carries a traceback for
     unexpected errors. Kinds (``ERROR_KINDS``): ``bad_request`` (malformed header, wrong
     protocol version, truncated payload), ``model_missing`` (unknown model, weights missing,
     unreadable or not fitting), ``device_unavailable``, ``bad_image``, ``out_of_memory``,
     ``cancelled``, ``failed`` (any other expected failure, message says why), ``internal`` (a
     bug: please report the detail).

If the process ends without a final message (killed, crashed), clients report a crash and show
the tail of its stderr.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
from collections.abc import Callable
from typing import IO, Any, BinaryIO

from chromatize import __version__
from chromatize.errors import (
    Cancelled,
    ChromatizeError,
    InputImageError,
    ModelUnavailableError,
    WeightsError,
)

PROTOCOL_VERSION = 1
ERROR_KINDS: tuple[str, ...] = (
    "bad_request",
    "model_missing",
    "device_unavailable",
    "bad_image",
    "out_of_memory",
    "cancelled",
    "failed",
    "internal",
)
DTYPES: dict[str, str] = {"float32": "<f4", "uint8": "|u1", "uint16": "<u2"}
MAX_HEADER_BYTES = 64 * 1024
#: Largest accepted image (pixels); far beyond any photo, it only stops nonsense headers.
MAX_PIXELS = 1 << 31


class RequestError(ChromatizeError):
    """The request is malformed; reported with kind ``bad_request``."""


class DeviceError(ChromatizeError):
    """The requested torch device is not usable here; kind ``device_unavailable``."""


class Channel:
    """Writes protocol messages (JSON lines and raw blocks) to the protocol stream."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._last_fraction = -1.0

    def send(self, message: dict[str, Any], payload: bytes | memoryview | None = None) -> None:
        line = (json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            self._stream.write(line)
            if payload is not None:
                self._stream.write(payload)
            self._stream.flush()

    def progress(self, fraction: float, stage: str) -> None:
        fraction = min(1.0, max(self._last_fraction, float(fraction)))
        if fraction - self._last_fraction < 0.005 and fraction < 1.0:
            return
        self._last_fraction = fraction
        self.send({"type": "progress", "fraction": round(fraction, 4), "stage": stage})

    def error(self, kind: str, message: str, detail: str | None = None) -> None:
        body: dict[str, Any] = {"type": "error", "kind": kind, "message": message}
        if detail:
            body["detail"] = detail
        self.send(body)


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


def _optional_number(header: dict[str, Any], key: str, kind: type, minimum: float,
                     strict: bool) -> Any:
    value = header.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{key} must be a number or null, got {value!r}")
    if kind is int and value != int(value):
        raise RequestError(f"{key} must be a whole number, got {value!r}")
    value = kind(value)
    if value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise RequestError(f"{key} must be {relation} {minimum:g}, got {value!r}")
    return value


def parse_header(line: bytes) -> dict[str, Any]:
    """Validate a request header line; returns it with defaults filled in."""
    try:
        header = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"the request header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise RequestError("the request header must be a JSON object")
    protocol = header.get("protocol")
    if protocol != PROTOCOL_VERSION:
        raise RequestError(
            f"the plug-in speaks worker protocol {protocol!r} but this chromatize "
            f"({__version__}) speaks {PROTOCOL_VERSION}; reinstall the plug-in with "
            "`chromatize gimp install` from the same environment"
        )
    op = header.get("op", "colorize")
    if op not in ("colorize", "info"):
        raise RequestError(f"unknown op {op!r}; expected 'colorize' or 'info'")
    header["op"] = op
    if op == "info":
        return header
    for key in ("width", "height", "channels"):
        value = header.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise RequestError(f"{key} must be a positive integer, got {value!r}")
    if header["channels"] > 4:
        raise RequestError(f"channels must be 1 to 4, got {header['channels']}")
    if header["width"] * header["height"] > MAX_PIXELS:
        raise RequestError(f"image of {header['width']}x{header['height']} pixels is too large")
    dtype = header.setdefault("dtype", "float32")
    if dtype not in DTYPES:
        raise RequestError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    model = header.setdefault("model", "mobile")
    if not isinstance(model, str) or not model:
        raise RequestError(f"model must be a model name, got {model!r}")
    weights = header.setdefault("weights", None)
    if weights is not None and (not isinstance(weights, str) or not weights):
        raise RequestError(f"weights must be a file path or null, got {weights!r}")
    header["temperature"] = _optional_number(header, "temperature", float, 0.0, strict=True)
    saturation = _optional_number(header, "saturation", float, 0.0, strict=False)
    header["saturation"] = 1.0 if saturation is None else saturation
    header["render_size"] = _optional_number(header, "render_size", int, 1, strict=False)
    device = header.setdefault("device", "auto")
    if not isinstance(device, str):
        raise RequestError(f"device must be a string, got {device!r}")
    for flag in ("mask", "allow_download"):
        value = header.setdefault(flag, False)
        if not isinstance(value, bool):
            raise RequestError(f"{flag} must be true or false, got {value!r}")
    return header


def classify_exception(exc: BaseException) -> tuple[str, str]:
    """Map an exception to ``(kind, user message)`` for an error message."""
    if isinstance(exc, RequestError):
        return "bad_request", str(exc)
    if isinstance(exc, Cancelled):
        return "cancelled", str(exc) or "colorization was cancelled"
    if isinstance(exc, (ModelUnavailableError, WeightsError)):
        return "model_missing", str(exc)
    if isinstance(exc, InputImageError):
        return "bad_image", str(exc)
    text = str(exc)
    lowered = text.lower()
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or (
        isinstance(exc, RuntimeError)
        and any(s in lowered for s in ("out of memory", "can't allocate memory",
                                       "not enough memory", "failed to allocate"))
    ):
        return "out_of_memory", (
            "not enough memory to colorize this image"
            + (f" ({text.splitlines()[0][:200]})" if text else "")
            + "; try a smaller render size, another device, or a smaller image or selection"
        )
    if isinstance(exc, DeviceError):
        return "device_unavailable", text
    if isinstance(exc, ChromatizeError):
        return "failed", text
    return "internal", f"unexpected error in the chromatize worker: {type(exc).__name__}: {text}"


def _info() -> dict[str, Any]:
    from chromatize.device import available_devices
    from chromatize.registry import list_models, model_status

    models = [
        {"name": spec.name, "description": spec.description, "status": model_status(spec.name),
         "default_temperature": spec.default_temperature,
         "default_input_size": spec.default_input_size}
        for spec in list_models()
    ]
    return {"type": "info", "protocol": PROTOCOL_VERSION, "chromatize": __version__,
            "python": sys.executable, "models": models, "devices": available_devices()}


class CancelWatcher:
    """Reads control lines from stdin after the payload; ``{"op": "cancel"}`` sets the flag."""

    def __init__(self, stream: BinaryIO) -> None:
        self.flag = threading.Event()
        self._stream = stream
        self._thread = threading.Thread(target=self._watch, name="chromatize-cancel", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        try:
            for line in self._stream:
                try:
                    message = json.loads(line.decode("utf-8"))
                except ValueError:
                    continue
                if isinstance(message, dict) and message.get("op") == "cancel":
                    self.flag.set()
                    return
        except (OSError, ValueError):
            return

    def __call__(self) -> bool:
        return self.flag.is_set()


def _colorize(header: dict[str, Any], stdin: BinaryIO, channel: Channel) -> None:
    import numpy as np

    width, height, channels = header["width"], header["height"], header["channels"]
    dtype = np.dtype(DTYPES[header["dtype"]])
    raw = _read_exact(stdin, width * height * channels * dtype.itemsize, "pixel data")
    pixels = np.frombuffer(raw, dtype=dtype).reshape(height, width, channels)
    mask = None
    if header["mask"]:
        raw_mask = _read_exact(stdin, width * height * dtype.itemsize, "mask data")
        mask = np.frombuffer(raw_mask, dtype=dtype).reshape(height, width).astype(np.float32)
        if dtype.kind == "u":
            mask /= float(np.iinfo(dtype).max)
        mask = np.clip(np.nan_to_num(mask, nan=0.0), 0.0, 1.0)
    cancel = CancelWatcher(stdin)

    image = pixels
    if dtype.kind == "f":
        # In place unless the originals are needed for the bit-exact pass-through below.
        image = pixels if mask is None else pixels.copy()
        np.nan_to_num(image, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
        np.clip(image, 0.0, 1.0, out=image)
    if channels == 1:
        image = image[:, :, 0]

    channel.progress(0.0, "loading")
    from chromatize.device import resolve_device
    from chromatize.pipeline import Colorizer

    try:
        resolve_device(header["device"])
    except ChromatizeError as exc:
        raise DeviceError(str(exc)) from None

    colorizer = Colorizer(model=header["model"], device=header["device"],
                          weights=header["weights"], allow_download=header["allow_download"])
    if cancel():
        raise Cancelled("colorization was cancelled")
    channel.progress(0.1, "loading")

    def report(fraction: float) -> None:
        channel.progress(0.1 + 0.9 * min(1.0, max(0.0, float(fraction))), "colorizing")

    out = colorizer.colorize(
        image, temperature=header["temperature"], saturation=header["saturation"],
        render_size=header["render_size"], mask=mask, progress=report, cancel=cancel,
    )
    out = np.ascontiguousarray(out, dtype=dtype)
    if mask is not None:
        # Bit-exact pass-through where nothing is selected (no float round trip).
        keep = mask <= 0.0
        if keep.any():
            source = pixels if channels >= 3 else np.repeat(pixels[:, :, :1], 3, axis=2)
            if channels == 2:
                source = np.concatenate([source, pixels[:, :, 1:2]], axis=2)
            out = out.copy() if not out.flags.writeable else out
            out[keep] = source[keep]
    channel.progress(1.0, "colorizing")
    device = getattr(colorizer, "device", None)
    channel.send(
        {"type": "result", "width": width, "height": height, "channels": int(out.shape[2]),
         "dtype": header["dtype"], "nbytes": int(out.nbytes),
         "model": getattr(colorizer, "model_name", header["model"]),
         "device": str(device) if device is not None else header["device"]},
        memoryview(out).cast("B"),
    )


def serve(stdin: BinaryIO, stdout: BinaryIO, log: IO[str] | None = None) -> int:
    """Answer one request read from ``stdin`` on ``stdout``; returns the exit code."""
    channel = Channel(stdout)
    channel.send({"type": "hello", "protocol": PROTOCOL_VERSION, "chromatize": __version__,
                  "pid": os.getpid()})
    try:
        line = stdin.readline(MAX_HEADER_BYTES)
        if not line:
            raise RequestError("no request: stdin was closed before a header line arrived")
        if not line.endswith(b"\n"):
            raise RequestError("the request header line is too long or not terminated by \\n")
        header = parse_header(line)
        if header["op"] == "info":
            channel.send(_info())
        else:
            _colorize(header, stdin, channel)
        return 0
    except BaseException as exc:  # every failure becomes one structured error message
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        kind, message = classify_exception(exc)
        detail = traceback.format_exc() if kind == "internal" else None
        if log is not None and detail:
            log.write(detail)
        try:
            channel.error(kind, message, detail)
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


def main(argv: list[str] | None = None,
         serve_fn: Callable[[BinaryIO, BinaryIO, IO[str] | None], int] = serve) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv and argv[0] == "--version":
        print(f"chromatize worker {__version__}, protocol {PROTOCOL_VERSION}")
        return 0
    protocol_out = _private_stdout()
    return serve_fn(sys.stdin.buffer, protocol_out, sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
