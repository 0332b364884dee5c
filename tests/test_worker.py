"""``python -m chromatize.worker``: the stdin/stdout protocol, run as a real subprocess.

Also drives the plug-in's worker client (``chromatize_client``, the code GIMP runs) against the
real worker: success with progress, crash, timeout, missing Python.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from worker_helpers import (
    PLUGIN_SOURCE,
    WORKER_COMMAND,
    WORKER_ENV,
    gray_test_image,
    lab,
    lightness_of_gray,
    mean_chroma,
    random_eccv16_weights,
    random_mobile_weights,
)

from chromatize import worker
from chromatize.errors import (
    Cancelled,
    InputImageError,
    ModelUnavailableError,
    OutputError,
    WeightsError,
)
from chromatize.failures import FailureKind
from chromatize.options import OptionError
from chromatize.worker import ERROR_KINDS, PROTOCOL_VERSION, RequestError, describe

sys.path.insert(0, str(PLUGIN_SOURCE))
import chromatize_client  # noqa: E402


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_eccv16_weights(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def mobile_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_mobile_weights(tmp_path_factory.getbasetemp())


def parse_output(out: bytes) -> tuple[list[dict[str, Any]], bytes | None]:
    """Split the worker's stdout into JSON messages and the raw result block."""
    messages: list[dict[str, Any]] = []
    payload = None
    pos = 0
    while pos < len(out):
        end = out.index(b"\n", pos)
        message = json.loads(out[pos:end])
        messages.append(message)
        pos = end + 1
        if message["type"] == "result":
            payload = out[pos:pos + message["nbytes"]]
            pos += message["nbytes"]
    return messages, payload


def run_worker(stdin: bytes, timeout: float = 300, close_stdin: bool = False
               ) -> tuple[list[dict[str, Any]], bytes | None, int]:
    """Run the worker on ``stdin``, keeping the pipe open until it answers (end of stdin is a
    cancel) unless ``close_stdin`` (for truncated requests)."""
    proc = subprocess.Popen(WORKER_COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=WORKER_ENV)
    assert proc.stdin is not None and proc.stdout is not None

    def feed() -> None:
        try:
            proc.stdin.write(stdin)  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            if close_stdin:
                proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        out = proc.stdout.read()  # the worker closes stdout when it exits
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        writer.join(5)
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
    messages, payload = parse_output(out)
    return messages, payload, proc.returncode


def request(header: dict[str, Any], *blocks: np.ndarray) -> bytes:
    return (json.dumps(header) + "\n").encode() + b"".join(
        np.ascontiguousarray(b).tobytes() for b in blocks)


def colorize_header(weights: Path, image: np.ndarray, dtype: str, **extra: Any) -> dict[str, Any]:
    h, w = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    return {"protocol": PROTOCOL_VERSION, "op": "colorize", "width": w, "height": h,
            "channels": channels, "dtype": dtype, "model": "eccv16", "weights": str(weights),
            "render_size": 32, "device": "cpu", **extra}


def test_gray_float32_is_colorized_with_lightness_kept(weights: Path) -> None:
    gray = gray_test_image()
    messages, payload, code = run_worker(request(colorize_header(weights, gray, "float32"), gray))
    assert code == 0, messages
    assert messages[0]["type"] == "hello" and messages[0]["protocol"] == PROTOCOL_VERSION
    result = messages[-1]
    assert result["type"] == "result"
    assert (result["width"], result["height"], result["channels"]) == (32, 24, 3)
    assert result["model"] == "eccv16" and result["device"] == "cpu"
    fractions = [m["fraction"] for m in messages if m["type"] == "progress"]
    assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0
    stages = [m["stage"] for m in messages if m["type"] == "progress"]
    assert sorted(set(stages), key=stages.index) == list(worker.STAGES)  # every stage, in order
    assert all(m["text"] == worker.STAGES[m["stage"]][0]
               for m in messages if m["type"] == "progress")
    out = np.frombuffer(payload, dtype="<f4").reshape(24, 32, 3)
    assert mean_chroma(out) > 2.0  # no longer gray
    assert np.abs(lab(out)[..., 0] - lightness_of_gray(gray)).max() < 0.05


def test_uint8_rgba_keeps_alpha_and_uint16_gray_keeps_dtype(weights: Path) -> None:
    rng = np.random.default_rng(1)
    rgba = (rng.random((16, 24, 4)) * 255).astype(np.uint8)
    rgba[..., 3] = np.arange(24, dtype=np.uint8)[None, :] * 10
    messages, payload, code = run_worker(request(colorize_header(weights, rgba, "uint8"), rgba))
    assert code == 0, messages
    assert messages[-1]["channels"] == 4 and messages[-1]["dtype"] == "uint8"
    out = np.frombuffer(payload, dtype=np.uint8).reshape(16, 24, 4)
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])

    gray16 = (gray_test_image(16, 24) * 65535).astype("<u2")
    messages, payload, code = run_worker(request(colorize_header(weights, gray16, "uint16"),
                                                 gray16))
    assert code == 0, messages
    out16 = np.frombuffer(payload, dtype="<u2").reshape(16, 24, 3)
    assert np.count_nonzero(out16 % 257) > out16.size // 2  # 16-bit values, not 8-bit * 257
    got = lab(out16 / 65535.0)[..., 0]
    assert np.abs(got - lightness_of_gray(gray16 / 65535.0)).max() < 0.05


def test_mask_zero_returns_input_bit_exact(weights: Path) -> None:
    gray = gray_test_image()
    gray[0, 0] = 1.5  # out of range (32-bit float images may hold such values): kept as is
    gray[0, 20] = np.nan  # where colorized, non-finite/out-of-range input is clamped first
    mask = np.zeros(gray.shape, np.float32)
    mask[:, 16:] = 1.0
    header = colorize_header(weights, gray, "float32", mask=True)
    messages, payload, code = run_worker(request(header, gray, mask))
    assert code == 0, messages
    out = np.frombuffer(payload, dtype="<f4").reshape(24, 32, 3)
    np.testing.assert_array_equal(out[:, :16], np.repeat(gray[:, :16, None], 3, axis=2))
    assert np.isfinite(out[:, 16:]).all() and out.min() >= 0.0
    assert mean_chroma(out[1:, 16:]) > 2.0


def test_info_lists_models_and_devices() -> None:
    messages, _, code = run_worker(request({"protocol": PROTOCOL_VERSION, "op": "info"}))
    assert code == 0
    info = messages[-1]
    assert info["type"] == "info" and info["protocol"] == PROTOCOL_VERSION
    assert {m["name"] for m in info["models"]} >= {"mobile", "eccv16"}
    assert "cpu" in info["devices"]


@pytest.mark.parametrize(
    ("stdin", "needle"),
    [
        (b"this is not json\n", "not valid JSON"),
        (b'{"protocol": 99, "op": "colorize"}\n', "chromatize gimp install"),
        (b'{"protocol": 1, "op": "colorize", "width": 4, "height": 4, "channels": 1, '
         b'"hints": {"channels": 4}}\n', "colour hints need worker protocol 2"),
        (b'{"protocol": 2, "op": "colorize", "width": 4, "height": 4, "channels": 1, '
         b'"hints": {"channels": 3}}\n', "hints.channels must be 4 (RGBA) or 2"),
        (b'{"protocol": 2, "op": "colorize", "width": 4, "height": 4, "channels": 1, '
         b'"hints": {"channels": 4, "depth": 8}}\n', "unknown field(s) in hints: depth"),
        (b'{"protocol": 2, "op": "colorize", "width": 2, "height": 2, "channels": 1, '
         b'"dtype": "uint8", "hints": {"channels": 4}}\n' + b"\0" * 4 + b"\0" * 6,
         "truncated hint data: expected 16 bytes, got 6"),
        (b'{"protocol": 1, "op": "colorize", "width": 4, "height": 4, "channels": 5}\n',
         "channels must be 1 to 4"),
        (b'{"protocol": 1, "op": "colorize", "width": 4, "height": 4, "channels": 1, '
         b'"dtype": "float32"}\n' + b"\0" * 10, "truncated pixel data: expected 64 bytes, got 10"),
        (b"", "stdin was closed"),
    ],
)
def test_bad_requests_are_reported_not_crashed(stdin: bytes, needle: str) -> None:
    messages, _, code = run_worker(stdin, timeout=60, close_stdin=True)
    assert code == 1
    assert messages[0]["type"] == "hello"
    error = messages[-1]
    assert error["type"] == "error" and error["kind"] == "bad_request"
    assert needle in error["message"]


def test_model_and_device_errors_have_their_kinds(tmp_path: Path) -> None:
    gray = gray_test_image(8, 8)
    missing = tmp_path / "nope.pth"
    messages, _, code = run_worker(request(colorize_header(missing, gray, "float32"), gray))
    assert code == 1
    assert messages[-1]["kind"] == "model_missing"
    assert str(missing) in messages[-1]["message"]

    header = colorize_header(missing, gray, "float32", device="no-such-device")
    messages, _, code = run_worker(request(header, gray))
    assert code == 1
    assert messages[-1]["kind"] == "device_unavailable"
    assert "no-such-device" in messages[-1]["message"]


def test_cancel_line_stops_the_job(weights: Path) -> None:
    gray = gray_test_image()
    stdin = request(colorize_header(weights, gray, "float32"), gray) + b'{"op": "cancel"}\n'
    messages, payload, code = run_worker(stdin)
    assert code == 1 and payload is None
    assert messages[-1]["kind"] == "cancelled"


def test_exceptions_are_classified() -> None:
    assert describe(MemoryError()).kind == "out_of_memory"
    failure = describe(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert failure.kind == "out_of_memory" and "smaller 'Render size'" in failure.message
    assert describe(RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate "
                                 "memory: you tried to allocate 1 bytes")).kind \
        == "out_of_memory"
    assert describe(Cancelled("x")).kind == "cancelled"
    assert describe(ModelUnavailableError("x")).kind == "model_missing"
    assert describe(WeightsError("x")).kind == "model_missing"
    assert describe(InputImageError("x")).kind == "bad_image"
    assert describe(OutputError("x")).kind == "bad_output"
    assert describe(RequestError("x")).kind == "bad_request"
    assert describe(OptionError("saturation", "x")).kind == "bad_request"
    assert describe(KeyError("boom")).kind == "internal"
    assert all(describe(e).kind in ERROR_KINDS
               for e in (MemoryError(), KeyError(), Cancelled()))


def test_error_kinds_are_the_failure_kinds_and_documented() -> None:
    assert set(ERROR_KINDS) == set(typing.get_args(FailureKind))
    for kind in ERROR_KINDS:
        assert f"``{kind}``" in worker.__doc__


def test_settings_are_checked_by_colorize_options(weights: Path) -> None:
    gray = gray_test_image(8, 8)
    for extra, needle in [({"saturation": -1}, "'Saturation' must be"),
                          ({"temperature": "hot"}, "'Temperature' must be a number"),
                          ({"colour": 2}, "unknown setting 'colour'"),
                          ({"upsample": "cubic"}, "unknown 'Upsampling' 'cubic'")]:
        messages, _, code = run_worker(request(colorize_header(weights, gray, "float32",
                                                               **extra), gray), timeout=60)
        assert code == 1
        assert messages[-1]["kind"] == "bad_request", messages[-1]
        assert needle in messages[-1]["message"]


def test_null_settings_take_the_defaults() -> None:
    line = json.dumps({"protocol": 1, "op": "colorize", "width": 2, "height": 2, "channels": 1,
                       "temperature": None, "render_size": None, "weights": None,
                       "saturation": None, "model": None}).encode() + b"\n"
    parsed = worker.parse_header(line)
    assert parsed.options == worker.ColorizeOptions()
    assert (parsed.dtype, parsed.mask) == ("float32", False)


def test_stray_prints_do_not_corrupt_the_protocol(tmp_path: Path) -> None:
    """Anything printed by libraries goes to stderr, never into the protocol stream."""
    script = (
        "import sys\n"
        "from chromatize import worker\n"
        "def noisy(stdin, stdout, log):\n"
        "    print('chatty library output')\n"
        "    return worker.serve(stdin, stdout, log)\n"
        "sys.exit(worker.main([], serve_fn=noisy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, env=WORKER_ENV,
                          input=request({"protocol": PROTOCOL_VERSION, "op": "info"}), timeout=120)
    assert proc.returncode == 0
    assert b"chatty library output" in proc.stderr
    messages, _ = parse_output(proc.stdout)
    assert [m["type"] for m in messages] == ["hello", "info"]


# ---------------------------------------------------------------- the plug-in's client


def client(**kwargs: Any) -> chromatize_client.WorkerClient:
    return chromatize_client.WorkerClient(kwargs.pop("command", WORKER_COMMAND),
                                          env=WORKER_ENV, **kwargs)


def test_client_colorizes_and_reports_progress(weights: Path) -> None:
    gray = gray_test_image()
    seen: list[float] = []
    data, channels = client().colorize(
        gray.tobytes(), 32, 24, 1, "float32",
        {"model": "eccv16", "weights": str(weights), "render_size": 32, "device": "cpu",
         "saturation": 1.0, "temperature": None},
        progress=seen.append)
    assert channels == 3
    out = np.frombuffer(data, dtype="<f4").reshape(24, 32, 3)
    assert mean_chroma(out) > 2.0
    assert seen and seen == sorted(seen) and seen[-1] == 1.0


def test_client_reports_worker_errors_with_kind(tmp_path: Path) -> None:
    gray = gray_test_image(8, 8)
    with pytest.raises(chromatize_client.WorkerError) as info:
        client().colorize(gray.tobytes(), 8, 8, 1, "float32",
                          {"model": "eccv16", "weights": str(tmp_path / "missing.pth")})
    assert info.value.kind == "model_missing"
    assert "missing.pth" in info.value.message


def test_client_reports_a_killed_worker(weights: Path) -> None:
    """SIGKILL (what the out-of-memory killer sends) mid-run becomes a clear message."""
    worker = client()
    gray = gray_test_image()

    def kill_on_first_progress(fraction: float) -> None:
        os.kill(worker.process.pid, signal.SIGKILL)

    with pytest.raises(chromatize_client.WorkerError) as info:
        worker.colorize(gray.tobytes(), 32, 24, 1, "float32",
                        {"model": "eccv16", "weights": str(weights), "device": "cpu"},
                        progress=kill_on_first_progress)
    assert info.value.kind == "out_of_memory"
    assert "killed (signal 9)" in info.value.message
    assert worker.process.poll() is not None


def test_client_times_out_and_kills_the_worker(weights: Path) -> None:
    worker = client(timeout=0.5, startup_timeout=60)
    gray = gray_test_image()
    with pytest.raises(chromatize_client.WorkerError) as info:
        worker.colorize(gray.tobytes(), 32, 24, 1, "float32",
                        {"model": "eccv16", "weights": str(weights), "device": "cpu"})
    assert info.value.kind == "timeout"
    assert "longer than 0.5 seconds" in info.value.message
    assert worker.process.poll() is not None


def test_client_explains_a_missing_or_wrong_python(tmp_path: Path) -> None:
    gray = gray_test_image(4, 4).tobytes()
    with pytest.raises(chromatize_client.WorkerError) as info:
        client(command=[str(tmp_path / "gone" / "python"), "-m", "chromatize.worker"]).colorize(
            gray, 4, 4, 1, "float32", {})
    assert info.value.kind == "worker_missing"
    assert "chromatize gimp install" in info.value.message

    # A Python without chromatize (isolated mode hides this environment's packages).
    bare = [sys.executable, "-I", "-S", "-m", "chromatize.worker"]
    with pytest.raises(chromatize_client.WorkerError) as info:
        client(command=bare).colorize(gray, 4, 4, 1, "float32", {})
    assert info.value.kind == "worker_missing"
    assert "No module named" in info.value.message


def test_client_reads_the_installed_config(tmp_path: Path) -> None:
    with pytest.raises(chromatize_client.WorkerError) as info:
        chromatize_client.load_config(str(tmp_path))
    assert info.value.kind == "not_installed"
    (tmp_path / chromatize_client.CONFIG_NAME).write_text('{"command": []}')
    with pytest.raises(chromatize_client.WorkerError):
        chromatize_client.load_config(str(tmp_path))
    (tmp_path / chromatize_client.CONFIG_NAME).write_text(
        json.dumps({"command": WORKER_COMMAND, "timeout_seconds": 12}))
    made = chromatize_client.client_from_config(chromatize_client.load_config(str(tmp_path)))
    assert made.command == WORKER_COMMAND and made.timeout == 12.0


# ---------------------------------------------------------------- a client that goes away


def _long_request(weights: Path) -> bytes:
    """A request whose one model call takes many seconds (render size 1024 on one thread)."""
    gray = gray_test_image()
    return request(colorize_header(weights, gray, "float32", render_size=1024), gray)


def _read_until_stage(stream: typing.IO[bytes], stage: str) -> list[dict[str, Any]]:
    seen = []
    while True:
        line = stream.readline()
        assert line, f"the worker ended before stage {stage!r}: {seen}"
        seen.append(json.loads(line))
        if seen[-1].get("stage") == stage:
            return seen


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _ends_within(pid: int, seconds: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if not _alive(pid):
            return time.monotonic() - started
        time.sleep(0.05)
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@contextlib.contextmanager
def _worker_colorizing(weights: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A worker given a long request, yielded once it reports the model running; killed and
    reaped afterwards whatever the test did."""
    proc = subprocess.Popen(WORKER_COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=WORKER_ENV)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(_long_request(weights))
        proc.stdin.flush()
        _read_until_stage(proc.stdout, "colorizing")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if not proc.stdin.closed:
            proc.stdin.close()
        proc.stdout.close()


def test_worker_ends_when_its_stdin_is_closed_mid_run(weights: Path) -> None:
    with _worker_colorizing(weights) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()  # the client went away (or cancelled by closing the pipe)
        assert _ends_within(proc.pid, 2.0) is not None, "worker kept running without a client"
        assert proc.wait(5) == worker.EXIT_CANCELLED
        assert b'"type":"result"' not in proc.stdout.read()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_worker_ends_when_its_client_is_killed_mid_run(weights: Path, tmp_path: Path) -> None:
    """The client (a process like GIMP's plug-in) is SIGKILLed while the model runs."""
    (tmp_path / "request.bin").write_bytes(_long_request(weights))
    script = (
        "import json, subprocess, sys, time\n"
        f"proc = subprocess.Popen({WORKER_COMMAND!r}, stdin=subprocess.PIPE,\n"
        "                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)\n"
        "proc.stdin.write(open(sys.argv[1], 'rb').read()); proc.stdin.flush()\n"
        "for line in proc.stdout:\n"
        "    if json.loads(line).get('stage') == 'colorizing':\n"
        "        print(proc.pid, flush=True)\n"
        "        break\n"
        "time.sleep(600)\n"
    )
    client_proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "request.bin")],
                                   stdout=subprocess.PIPE, env=WORKER_ENV, text=True)
    assert client_proc.stdout is not None
    worker_pid = 0
    try:
        worker_pid = int(client_proc.stdout.readline())
        assert _alive(worker_pid)
        client_proc.kill()
        client_proc.wait()
        assert _ends_within(worker_pid, 2.0) is not None, "worker outlived its client"
    finally:
        if client_proc.poll() is None:
            client_proc.kill()
            client_proc.wait()
        if worker_pid and _alive(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)
        client_proc.stdout.close()


def test_cancel_line_during_the_model_answers_within_the_grace(weights: Path) -> None:
    with _worker_colorizing(weights) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        started = time.monotonic()
        proc.stdin.write(b'{"op": "cancel"}\n')
        proc.stdin.flush()
        messages, _ = parse_output(proc.stdout.read())
        assert time.monotonic() - started < 2.0
        assert messages[-1]["type"] == "error" and messages[-1]["kind"] == "cancelled"
        assert proc.wait(5) == worker.EXIT_CANCELLED


def test_progress_moves_while_the_model_runs(weights: Path) -> None:
    """The one model call gets an estimated bar that moves (it used to stand still)."""
    messages, _, code = run_worker(request(colorize_header(
        weights, gray_test_image(), "float32", render_size=384), gray_test_image()))
    assert code == 0
    during = [m["fraction"] for m in messages
              if m["type"] == "progress" and m["stage"] == "colorizing"]
    assert len(set(during)) >= 3, during
    _, start, end = worker.STAGES["colorizing"]
    assert min(during) >= start and max(during) <= end


def test_die_with_parent_is_set_on_linux() -> None:
    """PR_SET_PDEATHSIG is in place (read back with PR_GET_PDEATHSIG, in a child process)."""
    script = ("import ctypes, sys\n"
              "from chromatize import worker\n"
              "print(worker.die_with_parent())\n"
              "if sys.platform.startswith('linux'):\n"
              "    sig = ctypes.c_int()\n"
              "    ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)\n"
              "    print(sig.value)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=WORKER_ENV, timeout=60, check=True).stdout.split()
    if sys.platform.startswith("linux"):
        assert out == ["True", str(int(signal.SIGTERM))]
    else:
        assert out == ["False"]


# ---------------------------------------------------------------- protocol 2: colour hints

#: Hint dots: (x, y), side, 8-bit sRGB colour (colours that exist at the photo's lightness
#: there: a hint's colour is kept as far as the gamut allows at the photo's own lightness).
HINT_DOTS = [((6, 5), 3, (70, 150, 70)), ((22, 16), 3, (185, 70, 60))]


def smooth_gray(height: int = 24, width: int = 32) -> np.ndarray:
    """A float32 gray ramp around mid-gray (L about 45 to 60)."""
    x = np.arange(width, dtype=np.float32)[None, :]
    return np.repeat(0.42 + 0.16 * x / (width - 1), height, axis=0).astype(np.float32)


def hint_image(height: int = 24, width: int = 32, dots: Any = HINT_DOTS) -> np.ndarray:
    """An RGBA uint8 hint image: transparent, with square dots painted."""
    image = np.zeros((height, width, 4), np.uint8)
    for (x, y), side, rgb in dots:
        top, left = y - side // 2, x - side // 2
        image[top:top + side, left:left + side] = (*rgb, 255)
    return image


def hints_header(weights: Path, image: np.ndarray, hints: np.ndarray, **extra: Any
                 ) -> dict[str, Any]:
    header = colorize_header(weights, image, "float32", model="mobile", engine="torch",
                             **extra)
    header["hints"] = {"width": hints.shape[1], "height": hints.shape[0],
                       "channels": hints.shape[2], "dtype": "uint8"}
    return header


def assert_hint_colours(out: np.ndarray, gray: np.ndarray, hints: np.ndarray) -> None:
    """Hint pixels carry the hint's colour (median |delta ab| <= 6) with the gray's lightness."""
    painted = hints[..., 3] > 0
    out_lab, hint_lab = lab(out), lab(hints[..., :3] / 255.0)
    delta_ab = np.hypot(*(out_lab[painted][:, 1:] - hint_lab[painted][:, 1:]).T)
    assert np.median(delta_ab) <= 6.0, delta_ab
    assert np.abs(out_lab[painted][:, 0] - lightness_of_gray(gray)[painted]).max() < 0.05


def test_hello_and_info_announce_protocol_2_and_hint_models() -> None:
    messages, _, code = run_worker(request({"protocol": 2, "op": "info"}))
    assert code == 0
    assert messages[0]["protocol"] == PROTOCOL_VERSION == 2
    assert messages[0]["protocols"] == [1, 2]
    accepts = {m["name"]: m["accepts_hints"] for m in messages[-1]["models"]}
    assert accepts["mobile"] is True and accepts["eccv16"] is False


def test_v2_request_with_a_hint_image_gets_the_hint_colours(mobile_weights: Path) -> None:
    gray = smooth_gray()
    hints = hint_image()
    header = hints_header(mobile_weights, gray, hints)
    messages, payload, code = run_worker(request(header, gray, hints))
    assert code == 0, messages
    assert messages[-1]["hints"] == int((hints[..., 3] > 0).sum()) == 18
    out = np.frombuffer(payload, dtype="<f4").reshape(24, 32, 3)
    assert_hint_colours(out, gray, hints)
    # the same request without hints gives other colours at those pixels
    del header["hints"]
    messages, plain_payload, code = run_worker(request(header, gray))
    assert code == 0 and messages[-1]["hints"] == 0
    plain = np.frombuffer(plain_payload, dtype="<f4").reshape(24, 32, 3)
    painted = hints[..., 3] > 0
    assert np.abs(lab(plain)[painted][:, 1:] - lab(out)[painted][:, 1:]).max() > 10.0


def test_v2_hints_with_a_mask_and_gray_alpha_hints(mobile_weights: Path) -> None:
    """Gray+alpha hint images work too, and masked-out pixels stay the input even at a hint."""
    gray = smooth_gray()
    rgba = hint_image(dots=[((6, 5), 3, (90, 90, 90)), ((22, 16), 3, (200, 30, 25))])
    gray_alpha = np.stack([rgba[..., 0], rgba[..., 3]], axis=2)  # first dot neutral gray
    mask = np.ones(gray.shape, np.float32)
    mask[:, 16:] = 0.0  # the red dot lies in the kept half
    header = hints_header(mobile_weights, gray, gray_alpha, mask=True)
    messages, payload, code = run_worker(request(header, gray, mask, gray_alpha))
    assert code == 0, messages
    out = np.frombuffer(payload, dtype="<f4").reshape(24, 32, 3)
    np.testing.assert_array_equal(out[:, 16:], np.repeat(gray[:, 16:, None], 3, axis=2))
    dot = lab(out[4:7, 5:8])
    assert np.hypot(dot[..., 1], dot[..., 2]).max() < 3.0  # a gray hint: gray there


def test_v1_requests_still_work_without_hints(weights: Path) -> None:
    gray = smooth_gray()
    header = colorize_header(weights, gray, "float32", protocol=1)
    messages, payload, code = run_worker(request(header, gray))
    assert code == 0, messages
    assert messages[-1]["type"] == "result" and payload is not None
    out = np.frombuffer(payload, dtype="<f4").reshape(24, 32, 3)
    assert np.abs(lab(out)[..., 0] - lightness_of_gray(gray)).max() < 0.05


@pytest.mark.parametrize(("case", "needle"), [
    ("eccv16", "the eccv16 model does not accept colour hints"),
    ("wrong size", "the hints layer: the hint image is 16x12 pixels but the image is 32x24"),
])
def test_unusable_hints_are_refused_clearly(weights: Path, mobile_weights: Path, case: str,
                                            needle: str) -> None:
    gray = smooth_gray()
    if case == "eccv16":
        hints = hint_image()
        header = colorize_header(weights, gray, "float32")
        header["hints"] = {"channels": 4, "dtype": "uint8"}  # width/height: the image's
    else:
        hints = hint_image(12, 16, dots=[((3, 3), 1, (0, 255, 0))])
        header = hints_header(mobile_weights, gray, hints)
    messages, payload, code = run_worker(request(header, gray, hints))
    assert code == 1 and payload is None
    assert messages[-1]["type"] == "error" and messages[-1]["kind"] == "failed"
    assert needle in messages[-1]["message"]


def test_a_hint_image_without_hint_pixels_is_no_hints(weights: Path) -> None:
    gray = smooth_gray()
    empty = np.zeros((24, 32, 4), np.uint8)
    header = colorize_header(weights, gray, "float32")  # eccv16: would refuse real hints
    header["hints"] = {"channels": 4, "dtype": "uint8"}
    messages, _, code = run_worker(request(header, gray, empty))
    assert code == 0, messages
    assert messages[-1]["hints"] == 0


def test_client_sends_hints(mobile_weights: Path) -> None:
    gray = smooth_gray()
    hints = hint_image()
    options = {"model": "mobile", "weights": str(mobile_weights), "render_size": 32,
               "device": "cpu", "engine": "torch"}
    data, channels = client().colorize(gray.astype("<f4").tobytes(), 32, 24, 1, "float32",
                                       options, hints=(hints.tobytes(), 4, "uint8"))
    assert channels == 3
    assert_hint_colours(np.frombuffer(data, dtype="<f4").reshape(24, 32, 3), gray, hints)
    with pytest.raises(chromatize_client.WorkerError, match="hint bytes"):
        client().colorize(gray.astype("<f4").tobytes(), 32, 24, 1, "float32", options,
                          hints=(hints.tobytes()[:-4], 4, "uint8"))
