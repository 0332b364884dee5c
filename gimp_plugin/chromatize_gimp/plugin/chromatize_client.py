# -*- coding: utf-8 -*-
"""Client of ``python -m chromatize.worker`` for editor plug-ins (Python 2.7 and 3, no numpy).

GIMP's own Python has no torch (often not even numpy), so the plug-in starts the worker with the
Python that ``chromatize gimp install`` recorded in ``chromatize-worker.json`` beside the
plug-in, writes one request (JSON header + raw pixel bytes) and reads progress lines, then either
an error message or the result header followed by the raw result bytes. The protocol is
described in the docstring of ``chromatize/worker.py``.

Every failure becomes a :class:`WorkerError` with a ``kind`` and a message written for the
user: ``not_installed``, ``worker_missing``, ``timeout``, ``crashed``, ``protocol`` and the
worker's own kinds (``model_missing``, ``out_of_memory``, ``bad_request``, ...).

The worker never outlives its client: when a request ends without a result (an error, the
user's cancel, an exception in the plug-in) the client writes ``{"op": "cancel"}``, closes the
worker's stdin (end of file cancels too) and kills it if it has not ended 2 s later; if the
plug-in itself is killed (GIMP's Cancel kills the plug-in process), the closed pipe, Linux's
parent-death signal and the plug-in's own process group (:func:`own_process_group`, which GIMP
kills as a whole) end the worker.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import subprocess
import sys
import threading
import time

try:  # Python 3
    import queue  # novm
except ImportError:  # Python 2.7
    import Queue as queue  # noqa: N813  # novm

PROTOCOL_VERSION = 2
CONFIG_NAME = "chromatize-worker.json"
DEFAULT_TIMEOUT = 1800.0
DEFAULT_STARTUP_TIMEOUT = 120.0
STDERR_TAIL = 4000
# Variables GIMP (or its bundle) may set for its own Python; they would break another Python.
_PYTHON_ENV = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE",
               "PYTHONNOUSERSITE", "PYTHONUSERBASE", "__PYVENV_LAUNCHER__")
# Library paths of self-contained GIMP bundles (macOS app, AppImage) point at GIMP's own copies
# of system libraries, which the worker's Python must not pick up.
_BUNDLE_LIBRARY_ENV = ("DYLD_LIBRARY_PATH", "DYLD_FALLBACK_LIBRARY_PATH", "DYLD_FRAMEWORK_PATH",
                       "DYLD_INSERT_LIBRARIES")
_CREATE_NO_WINDOW = 0x08000000  # Windows: no console window flashing up for the worker


def own_process_group():
    """Make the plug-in's process the leader of its own process group (POSIX; a no-op
    elsewhere). GIMP ends a plug-in (its Cancel button, quitting) with SIGKILL, sent to the
    plug-in's whole process group when it has one of its own, so the worker, which inherits the
    group, is killed with the plug-in. Returns whether the group is in place."""
    if not hasattr(os, "setpgid"):
        return False
    try:
        if os.getpgid(0) != os.getpid():
            os.setpgid(0, 0)
    except OSError:
        return False
    return True


class WorkerError(Exception):
    """A failure to show to the user: ``kind`` says what happened, ``message`` what to do;
    ``fields`` holds the worker's error message as sent (e.g. ``model_status``)."""

    def __init__(self, kind, message, detail=None, fields=None):
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message
        self.detail = detail
        self.fields = dict(fields or {})

    def __str__(self):
        return self.message


def load_config(plugin_dir):
    """Read ``chromatize-worker.json`` from the plug-in folder (written by the installer)."""
    path = os.path.join(plugin_dir, CONFIG_NAME)
    try:
        with open(path, "rb") as handle:
            config = json.loads(handle.read().decode("utf-8"))
    except (IOError, OSError):
        raise WorkerError(
            "not_installed",
            "The chromatize plug-in has no worker configuration (%s is missing). Run "
            "`chromatize gimp install` in the Python environment where chromatize is "
            "installed, then restart GIMP." % path)
    except ValueError as exc:
        raise WorkerError(
            "not_installed",
            "The chromatize worker configuration %s is damaged (%s). Run "
            "`chromatize gimp install` again." % (path, exc))
    command = config.get("command")
    if not isinstance(command, list) or not command or not all(
            isinstance(part, (type(u""), str)) for part in command):
        raise WorkerError(
            "not_installed",
            "The chromatize worker configuration %s has no valid \"command\". Run "
            "`chromatize gimp install` again." % path)
    return config


def client_from_config(config):
    """A :class:`WorkerClient` for a loaded configuration."""
    return WorkerClient(
        [str(part) for part in config["command"]],
        timeout=float(config.get("timeout_seconds") or DEFAULT_TIMEOUT),
        startup_timeout=float(config.get("startup_timeout_seconds") or DEFAULT_STARTUP_TIMEOUT),
    )


def _describe_exit(code):
    if code is None:
        return "did not exit"
    if code < 0:
        signal_number = -code
        if signal_number == 9:
            return ("was killed (signal 9), most likely by the system because it ran out of "
                    "memory")
        return "was stopped by signal %d" % signal_number
    return "exited with code %d" % code


class _Reader(threading.Thread):
    """Parses the worker's stdout into messages on a queue (raw result bytes included)."""

    def __init__(self, stream, messages):
        threading.Thread.__init__(self, name="chromatize-worker-reader")
        self.daemon = True
        self._stream = stream
        self._messages = messages

    def run(self):
        try:
            while True:
                line = self._stream.readline()
                if not line:
                    self._messages.put(("eof", None, None))
                    return
                try:
                    message = json.loads(line.decode("utf-8"))
                except ValueError:
                    self._messages.put(("garbage", line[:200], None))
                    return
                if not isinstance(message, dict):
                    self._messages.put(("garbage", line[:200], None))
                    return
                payload = None
                if message.get("type") == "result":
                    nbytes = int(message.get("nbytes", 0))
                    payload = self._read_exact(nbytes)
                    if payload is None:
                        self._messages.put(("eof", None, None))
                        return
                self._messages.put(("message", message, payload))
        except (IOError, OSError, ValueError) as exc:
            self._messages.put(("garbage", str(exc), None))

    def _read_exact(self, nbytes):
        chunks = []
        remaining = nbytes
        while remaining > 0:
            chunk = self._stream.read(min(remaining, 1 << 22))
            if not chunk:
                return None
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)


class _TailCollector(threading.Thread):
    """Drains stderr (so the worker never blocks on it) and keeps its tail for messages."""

    def __init__(self, stream):
        threading.Thread.__init__(self, name="chromatize-worker-stderr")
        self.daemon = True
        self._stream = stream
        self._tail = b""
        self._lock = threading.Lock()

    def run(self):
        try:
            while True:
                chunk = self._stream.read(4096) if hasattr(self._stream, "read") else b""
                if not chunk:
                    return
                with self._lock:
                    self._tail = (self._tail + chunk)[-STDERR_TAIL:]
        except (IOError, OSError, ValueError):
            return

    def text(self):
        with self._lock:
            return self._tail.decode("utf-8", "replace").strip()


class _Writer(threading.Thread):
    """Writes the request without blocking the reader (the pipe may be smaller than the image)."""

    def __init__(self, stream, chunks):
        threading.Thread.__init__(self, name="chromatize-worker-writer")
        self.daemon = True
        self._stream = stream
        self._chunks = chunks
        self.error = None

    def run(self):
        try:
            for chunk in self._chunks:
                view = memoryview(chunk)
                step = 1 << 22
                for start in range(0, len(view), step):
                    self._stream.write(view[start:start + step].tobytes())
            self._stream.flush()
        except (IOError, OSError, ValueError) as exc:
            self.error = exc

    def send_line(self, obj):
        """Write a control line; only call once :meth:`run` has finished."""
        line = (json.dumps(obj) + "\n").encode("utf-8")
        try:
            self._stream.write(line)
            self._stream.flush()
        except (IOError, OSError, ValueError):
            pass


class WorkerClient(object):
    """Runs one worker process per request.

    ``command`` is the argument list starting the worker (``[python, "-m",
    "chromatize.worker"]``, possibly behind ``flatpak-spawn --host``). ``timeout`` bounds the
    whole request in seconds, ``startup_timeout`` the wait for the worker's hello line.
    """

    def __init__(self, command, timeout=DEFAULT_TIMEOUT, startup_timeout=DEFAULT_STARTUP_TIMEOUT,
                 env=None):
        self.command = list(command)
        self.timeout = float(timeout)
        self.startup_timeout = float(startup_timeout)
        self.env = env
        #: The worker process of the current or last request (for diagnostics).
        self.process = None

    def _environment(self):
        env = dict(os.environ if self.env is None else self.env)
        for name in _PYTHON_ENV:
            env.pop(name, None)
        if sys.platform == "darwin":
            for name in _BUNDLE_LIBRARY_ENV:
                env.pop(name, None)
        if env.get("APPIMAGE") or env.get("APPDIR"):
            env.pop("LD_LIBRARY_PATH", None)
        return env

    def _start(self):
        extra = {}
        if sys.platform == "win32":
            extra["creationflags"] = _CREATE_NO_WINDOW
        else:
            extra["close_fds"] = True
        try:
            return subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=self._environment(), bufsize=0, **extra)
        except (OSError, IOError) as exc:
            raise WorkerError(
                "worker_missing",
                "Cannot start the chromatize worker %r (%s). The Python environment recorded "
                "by `chromatize gimp install` may have moved or been deleted: run "
                "`chromatize gimp install` again from the environment where chromatize is "
                "installed." % (" ".join(self.command), exc))

    def info(self):
        """Ask the worker for versions, models and devices (``op: info``)."""
        message, _ = self._run({"protocol": PROTOCOL_VERSION, "op": "info"}, [], None, "info")
        return message

    def colorize(self, pixels, width, height, channels, dtype, options, progress=None,
                 stage=None, hints=None):
        """Colorize raw pixels; returns ``(result_bytes, result_channels)``.

        ``pixels`` holds ``width*height*channels`` little-endian samples of ``dtype``
        (``"float32"``, ``"uint8"`` or ``"uint16"``); ``options`` holds the request's settings
        (JSON values by setting name, null = the default; the worker checks them);
        ``progress`` is called with fractions in [0, 1], ``stage`` with the words of each new
        stage ("Loading the model", "Colorizing", ...). The editor applies its selection
        itself, so no mask is sent. ``hints`` is None or ``(data, channels, dtype)``: a hint
        image of the same size (``channels`` 4 = R'G'B'A or 2 = Y'A), whose pixels with alpha
        above 0 are colour hints (protocol 2).
        """
        itemsize = {"float32": 4, "uint8": 1, "uint16": 2}[dtype]
        expected = width * height * channels * itemsize
        if len(pixels) != expected:
            raise WorkerError("bad_request", "internal error: %d pixel bytes for a %dx%dx%d %s "
                              "image (expected %d)" % (len(pixels), width, height, channels,
                                                       dtype, expected))
        header = dict(options)
        header.update({"protocol": PROTOCOL_VERSION, "op": "colorize", "width": int(width),
                       "height": int(height), "channels": int(channels), "dtype": dtype})
        blocks = [pixels]
        if hints is not None:
            hint_data, hint_channels, hint_dtype = hints
            hint_expected = width * height * hint_channels * {
                "float32": 4, "uint8": 1, "uint16": 2}[hint_dtype]
            if len(hint_data) != hint_expected:
                raise WorkerError("bad_request", "internal error: %d hint bytes for a %dx%dx%d "
                                  "%s hint image (expected %d)" % (
                                      len(hint_data), width, height, hint_channels, hint_dtype,
                                      hint_expected))
            header["hints"] = {"width": int(width), "height": int(height),
                               "channels": int(hint_channels), "dtype": hint_dtype}
            blocks.append(hint_data)
        message, payload = self._run(header, blocks, progress, "result", stage)
        out_channels = int(message.get("channels", 0))
        if (message.get("width") != width or message.get("height") != height
                or out_channels not in (3, 4)
                or len(payload) != width * height * out_channels * itemsize):
            raise WorkerError("protocol", "The chromatize worker answered with a result that "
                              "does not match the request (%r)." % (message,))
        return payload, out_channels

    def _run(self, header, blocks, progress, final_type, stage=None):
        process = self._start()
        self.process = process
        messages = queue.Queue()
        reader = _Reader(process.stdout, messages)
        errors = _TailCollector(process.stderr)
        request = [(json.dumps(header) + "\n").encode("utf-8")] + list(blocks)
        writer = _Writer(process.stdin, request)
        reader.start()
        errors.start()
        writer.start()
        started = time.time()
        said_hello = False
        succeeded = False
        stage_text = None
        try:
            while True:
                now = time.time()
                limit = (started + self.startup_timeout) if not said_hello else (
                    started + self.timeout)
                if now >= limit:
                    raise self._timeout(said_hello, errors)
                try:
                    kind, message, payload = messages.get(timeout=min(0.5, limit - now))
                except queue.Empty:
                    continue
                if kind == "eof":
                    raise self._crash(process, errors, said_hello)
                if kind == "garbage":
                    raise WorkerError(
                        "protocol",
                        "The chromatize worker printed something that is not part of its "
                        "protocol (%r). Is `%s` really chromatize's worker?%s"
                        % (message, " ".join(self.command), self._stderr_note(errors)))
                mtype = message.get("type")
                if mtype == "hello":
                    said_hello = True
                    if PROTOCOL_VERSION not in (message.get("protocols")
                                                or [message.get("protocol")]):
                        raise WorkerError(
                            "protocol",
                            "The chromatize worker speaks protocol %r but this plug-in speaks "
                            "%d: run `chromatize gimp install` again to update the plug-in."
                            % (message.get("protocol"), PROTOCOL_VERSION))
                elif mtype == "progress":
                    text = message.get("text")
                    if stage is not None and text and text != stage_text:
                        stage_text = text
                        stage(text)
                    if progress is not None:
                        try:
                            fraction = float(message.get("fraction", 0.0))
                        except (TypeError, ValueError):
                            fraction = 0.0
                        progress(min(1.0, max(0.0, fraction)))
                elif mtype == "error":
                    raise WorkerError(message.get("kind") or "failed",
                                      message.get("message") or "the worker failed",
                                      message.get("detail"), message)
                elif mtype == final_type:
                    succeeded = True
                    return message, payload
        finally:
            self._finish(process, writer, succeeded)

    def _stderr_note(self, errors):
        tail = errors.text()
        if not tail:
            return ""
        lines = tail.splitlines()[-12:]
        return "\n\nLast output of the worker:\n" + "\n".join(lines)

    def _timeout(self, said_hello, errors):
        if not said_hello:
            return WorkerError(
                "timeout",
                "The chromatize worker did not start within %g seconds (%s).%s"
                % (self.startup_timeout, " ".join(self.command), self._stderr_note(errors)))
        return WorkerError(
            "timeout",
            "Colorization took longer than %g seconds and was stopped. Try a smaller render "
            "size or image, or raise \"timeout_seconds\" in %s." % (self.timeout, CONFIG_NAME))

    def _crash(self, process, errors, said_hello):
        code = self._wait(process, 10.0)
        tail = errors.text()
        if not said_hello and ("No module named" in tail or code == 127):
            return WorkerError(
                "worker_missing",
                "The Python recorded for the chromatize worker (%s) cannot run it: chromatize "
                "is not installed there anymore. Run `chromatize gimp install` again from the "
                "environment where chromatize is installed.%s"
                % (self.command[0], self._stderr_note(errors)))
        kind = "out_of_memory" if code == -9 else "crashed"
        return WorkerError(
            kind, "The chromatize worker stopped unexpectedly: it %s.%s"
            % (_describe_exit(code), self._stderr_note(errors)))

    @staticmethod
    def _wait(process, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            code = process.poll()
            if code is not None:
                return code
            time.sleep(0.02)
        return process.poll()

    def _finish(self, process, writer, succeeded):
        if process.poll() is None:
            # After a result the worker exits by itself; otherwise ask it to stop (a cancel
            # line, then end of file), then kill. A writer still blocked on a full pipe holds
            # the stream: kill right away then.
            if not succeeded and not writer.is_alive():
                writer.send_line({"op": "cancel"})
                try:
                    process.stdin.close()
                except (IOError, OSError, ValueError):
                    pass
            if writer.is_alive() or self._wait(process, 5.0 if succeeded else 2.0) is None:
                try:
                    process.kill()
                except OSError:
                    pass
                self._wait(process, 5.0)
        for stream in (process.stdin, process.stdout, process.stderr):
            try:
                stream.close()
            except (IOError, OSError, ValueError):
                pass
