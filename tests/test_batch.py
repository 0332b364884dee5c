"""Colorizing folders: resume after a kill, skip-existing, the manifest, the Python API.

Real components throughout: the ``chromatize`` console script as a subprocess, the shipped
``mobile`` model, real JPEG files made here.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_cli import chromatize_command, run_cli

from chromatize import batch
from chromatize.batch import MANIFEST_NAME, BatchSettings, Job, Outcome
from chromatize.options import ColorizeOptions

RNG = np.random.default_rng(5)


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = dict(os.environ)
    env.update(CHROMATIZE_CACHE_DIR=str(tmp_path_factory.mktemp("cache")), PYTHONUNBUFFERED="1")
    return env


def make_photos(folder: Path, count: int, size: tuple[int, int] = (96, 64)) -> list[str]:
    """``count`` small grayscale JPEGs (smooth random fields, so they compress like photos)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        small = RNG.integers(0, 256, (4, 6), dtype=np.uint8)
        image = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
        if i % 5 == 4:
            image = image.transpose(Image.Transpose.ROTATE_90)  # a portrait among them
        name = f"scan_{i:03d}.jpg"
        image.save(folder / name, quality=90)
        names.append(name)
    return names


def colorized(stdout: str) -> set[str]:
    """Input names the run reports as colorized (``IN -> OUT`` lines)."""
    return {Path(line.split(" -> ")[0]).name for line in stdout.splitlines() if " -> " in line}


def manifest_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]


def test_a_killed_run_resumes_exactly_where_it_stopped(tmp_path: Path,
                                                       cli_env: dict[str, str]) -> None:
    names = make_photos(tmp_path / "in", 60, (480, 320))
    out = tmp_path / "out"
    run_cli(cli_env, "colorize", tmp_path / "in" / names[0], "-o", tmp_path / "warm.jpg")  # export
    process = subprocess.Popen([*chromatize_command(), "colorize", str(tmp_path / "in"),
                                "--out-dir", str(out), "-q"], env=cli_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if out.is_dir() and len(list(out.glob("*.jpg"))) >= 5:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(60)
    finished = {p.name for p in out.glob("*.jpg")}
    assert 5 <= len(finished) < len(names), "the run must be killed mid-way"

    again = run_cli(cli_env, "colorize", tmp_path / "in", "--out-dir", out, "--skip-existing")
    assert again.returncode == 0, again.stderr
    assert colorized(again.stdout) == set(names) - finished  # exactly the rest
    assert "already done (skipped)" in again.stderr and f"{len(finished)} already" in again.stderr
    assert {p.name for p in out.glob("*.jpg")} == set(names)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    done = {Path(e["output"]).name for e in manifest_lines(out) if e.get("status") == "done"}
    assert done >= set(names) - finished

    third = run_cli(cli_env, "colorize", tmp_path / "in", "--out-dir", out, "--skip-existing")
    assert third.returncode == 0 and colorized(third.stdout) == set()
    assert f"{len(names)} already done (skipped)" in third.stderr


def test_without_skip_existing_finished_outputs_are_failures(tmp_path: Path,
                                                             cli_env: dict[str, str]) -> None:
    make_photos(tmp_path / "in", 3)
    out = tmp_path / "out"
    assert run_cli(cli_env, "colorize", tmp_path / "in", "--out-dir", out).returncode == 0
    again = run_cli(cli_env, "colorize", tmp_path / "in", "--out-dir", out)
    assert again.returncode == 1
    assert "already exists; not replacing it (pass --skip-existing" in again.stderr
    both = run_cli(cli_env, "colorize", tmp_path / "in", "--out-dir", out, "--skip-existing",
                   "--overwrite")
    assert both.returncode == 1 and "contradict" in both.stderr


def test_other_settings_are_refused_unless_mixing_is_allowed(tmp_path: Path,
                                                             cli_env: dict[str, str]) -> None:
    names = make_photos(tmp_path / "in", 4)
    (tmp_path / "in" / names[3]).rename(tmp_path / names[3])  # added later
    out = tmp_path / "out"
    first = run_cli(cli_env, "colorize", tmp_path / "in", "--out-dir", out, "--saturation", "1.3")
    assert first.returncode == 0, first.stderr
    (tmp_path / names[3]).rename(tmp_path / "in" / names[3])
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.jpg")}

    refused = run_cli(cli_env, "colorize", tmp_path / "in", "--out-dir", out, "--skip-existing")
    assert refused.returncode == 1
    message = refused.stderr.strip()
    assert message.startswith("chromatize: error: ") and "\n" not in message
    assert "holds 3 outputs made with other settings" in message
    assert "--saturation 1.3 there, 1.0 now" in message and "--allow-mixed-options" in message
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.jpg")} == before  # untouched

    same = run_cli(cli_env, "colorize", tmp_path / "in", "--out-dir", out, "--skip-existing",
                   "--saturation", "1.3")
    assert same.returncode == 0 and colorized(same.stdout) == {names[3]}
    (out / names[3]).unlink()
    mixed = run_cli(cli_env, "colorize", tmp_path / "in", "--out-dir", out, "--skip-existing",
                    "--allow-mixed-options")
    assert mixed.returncode == 0 and colorized(mixed.stdout) == {names[3]}
    runs = [line for line in manifest_lines(out) if "run" in line]
    assert [r["options"]["saturation"] for r in runs] == [1.3, 1.3, 1.0]
    assert all(r["engine"] in ("onnx", "torch") for r in runs)


def test_a_half_written_or_damaged_output_never_counts_as_done(tmp_path: Path,
                                                               cli_env: dict[str, str]) -> None:
    names = make_photos(tmp_path / "in", 3)
    out = tmp_path / "out"
    assert run_cli(cli_env, "colorize", tmp_path / "in", "--out-dir", out).returncode == 0
    whole = (out / names[0]).read_bytes()
    (out / names[0]).write_bytes(whole[: len(whole) // 3])  # torn by a crash or a bad copy
    (out / names[1]).unlink()
    stale = out / f".{names[1]}.0123abcd.tmp"  # what a kill during writing leaves
    stale.write_bytes(whole[:100])
    again = run_cli(cli_env, "colorize", tmp_path / "in", "--out-dir", out, "--skip-existing")
    assert again.returncode == 0, again.stderr
    assert colorized(again.stdout) == {names[0], names[1]}
    assert "cannot be read (damaged or incomplete); colorizing" in again.stderr
    assert not stale.exists()
    with Image.open(out / names[0]) as im:
        im.load()

    # an output made before its input was changed is not done either
    source = tmp_path / "in" / names[2]
    os.utime(source, ns=(time.time_ns(), time.time_ns() + 10**9))
    third = run_cli(cli_env, "colorize", tmp_path / "in", "--out-dir", out, "--skip-existing")
    assert third.returncode == 0 and colorized(third.stdout) == {names[2]}
    assert "older version of the input" in third.stderr


def test_python_api_and_picklable_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHROMATIZE_CACHE_DIR", str(tmp_path / "cache"))
    names = make_photos(tmp_path / "in", 5)
    report = batch.colorize_folder(tmp_path / "in", tmp_path / "out", engine="torch")
    assert sorted(j.source.name for j in report.colorized) == names
    assert report.engine == "torch" and not report.failures and not report.skipped
    again = batch.colorize_folder(tmp_path / "in", tmp_path / "out", engine="torch",
                                  skip_existing=True)
    assert len(again.skipped) == 5 and not again.colorized
    entries = [e for e in manifest_lines(tmp_path / "out") if "status" in e]
    assert {e["engine"] for e in entries} == {"torch"} and len(entries) == 5
    assert {"input", "size", "mtime", "options", "status", "output"} <= set(entries[0])

    job = Job(tmp_path / "in" / names[0], tmp_path / "elsewhere" / "x.png")
    shipped = pickle.loads(pickle.dumps(([job], ColorizeOptions(engine="torch"),
                                         BatchSettings())))
    (outcome,) = batch.colorize_jobs(*shipped)
    assert outcome == pickle.loads(pickle.dumps(outcome))
    assert outcome.status == "done" and job.target.is_file()
    bad = Job(tmp_path / "missing.jpg", tmp_path / "elsewhere" / "y.png")
    (failed,) = batch.colorize_jobs([bad], ColorizeOptions(engine="torch"))
    assert isinstance(failed, Outcome) and failed.status == "failed" and failed.message
