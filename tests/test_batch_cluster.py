"""Batches on a Dask cluster (``chromatize colorize --scheduler``, chromatize.batch_cluster).

Real Dask processes on 127.0.0.1 started here (``LocalCluster(processes=True)`` and ``dask
worker`` commands), the shipped ``mobile`` model at a small render size, real JPEG files.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_cli import chromatize_command

from chromatize import batch
from chromatize.batch import MANIFEST_NAME, BatchSettings
from chromatize.cli import main
from chromatize.errors import ChromatizeError
from chromatize.options import ColorizeOptions

distributed = pytest.importorskip("distributed", reason="needs the cluster extra (distributed)")
psutil = pytest.importorskip("psutil")
from chromatize import batch_cluster  # noqa: E402  (needs distributed)

RNG = np.random.default_rng(17)
SMALL = ["--render-size", "64"]


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One weights/ONNX cache for the module, in the environment so that worker processes
    (which inherit it) use it too; the first one-machine run fills it."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHROMATIZE_CACHE_DIR", str(cache))
        patch.setenv("OMP_WAIT_POLICY", "PASSIVE")
        yield cache


def make_photos(folder: Path, count: int, size: tuple[int, int] = (96, 64),
                extension: str = ".jpg") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        small = RNG.integers(0, 256, (4, 6), dtype=np.uint8)
        image = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
        if i % 5 == 4:
            image = image.transpose(Image.Transpose.ROTATE_90)  # another render shape
        name = f"scan_{i:03d}{extension}"
        image.save(folder / name, **({"quality": 90} if extension == ".jpg" else {}))
        names.append(name)
    return names


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def file_lines(out: Path) -> list[dict]:
    lines = [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]
    return [line for line in lines if "run" not in line]


def colorized(stdout: str) -> set[str]:
    return {Path(line.split(" -> ")[0]).name for line in stdout.splitlines() if " -> " in line}


def children() -> set[int]:
    """This process's descendants, less multiprocessing's resource tracker (one per process,
    started by the first spawned child and kept until the end)."""
    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(child.cmdline()):
                found.add(child.pid)
        except psutil.Error:  # gone meanwhile
            pass
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_local_cluster_writes_what_one_machine_writes(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    # PNG: lossless, so the comparison sees the colorization, not JPEG's rounding of it
    names = make_photos(tmp_path / "in", 8, extension=".png")
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    before = children()
    assert main(["colorize", str(tmp_path / "in"), "--out-dir", str(tmp_path / "one"), *SMALL]) == 1
    alone = capsys.readouterr()
    code = main(["colorize", str(tmp_path / "in"), "--out-dir", str(tmp_path / "dask"), *SMALL,
                 "--scheduler", "local:2"])
    on_dask = capsys.readouterr()

    assert code == 1  # the broken file, as in the one-machine run
    assert colorized(on_dask.out) == colorized(alone.out) == set(names)
    summary = [line for line in on_dask.err.splitlines() if line.startswith("chromatize: ")]
    assert summary == [line for line in alone.err.splitlines() if line.startswith("chromatize: ")]
    assert "1 of 9 inputs failed (8 colorized)" in on_dask.err
    for name in names:
        difference = np.abs(pixels(tmp_path / "dask" / name) - pixels(tmp_path / "one" / name))
        assert difference.max() <= 1, name
    lines = file_lines(tmp_path / "dask")
    assert sorted(Path(line["output"]).name for line in lines if line["status"] == "done") == names
    assert [Path(line["input"]).name for line in lines if line["status"] == "failed"] == [
        "broken.png"]
    assert not list((tmp_path / "dask").glob(".*.tmp"))
    deadline = time.monotonic() + 20
    while children() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not children() - before, "local:N leaves no process behind"


@pytest.fixture
def two_workers() -> Iterator[distributed.LocalCluster]:
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    try:
        yield cluster
    finally:
        cluster.close()


def test_a_killed_worker_s_tasks_run_elsewhere_and_each_output_is_written_once(
        tmp_path: Path, two_workers: distributed.LocalCluster) -> None:
    # PNG: lossless, so outputs compare to 1/255 although tasks batch other files together
    names = make_photos(tmp_path / "in", 24, (480, 320), ".png")
    options = ColorizeOptions(render_size=64)
    reference = batch.colorize_folder(tmp_path / "in", tmp_path / "one", options=options)
    assert not reference.failures
    settings = BatchSettings()
    out = tmp_path / "dask"
    work = batch.plan_run([tmp_path / "in"], options, settings, out_dir=str(out))
    cluster = batch_cluster.connect(two_workers.scheduler_address, options, settings)
    outcomes: list = []
    problems: list[BaseException] = []

    def run() -> None:
        try:
            batch.prepare_outputs(work, str(out))
            outcomes.extend(cluster.execute(work.jobs, options, settings, manifest=work.manifest,
                                            files_per_task=2))
        except BaseException as exc:  # reported by the test thread
            problems.append(exc)
        finally:
            work.manifest.close()

    runner = threading.Thread(target=run)
    with distributed.Client(two_workers.scheduler_address) as watcher:
        runner.start()
        victim, deadline = None, time.monotonic() + 120
        while victim is None and time.monotonic() < deadline and runner.is_alive():
            if len(list(out.glob("*.png"))) >= 2:
                busy = [w for w, keys in watcher.processing().items()
                        if any("chromatize-colorize" in str(k) for k in keys)]
                victim = busy[0] if busy else None
            time.sleep(0.01)
        assert victim is not None, "the kill must land while a worker runs a task"
        pid = watcher.run(os.getpid, workers=[victim])[victim]
        written = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*.png")}
        os.kill(pid, signal.SIGKILL)
        runner.join(120)  # with the watcher open: closing a second client upsets the first
    cluster.close()
    assert not problems, problems
    assert len(written) < len(names), "the kill must land before the end"

    assert sorted(o.job.source.name for o in outcomes) == names  # each job reported once
    assert {o.status for o in outcomes} == {"done"}
    for name in names:
        difference = np.abs(pixels(out / name) - pixels(tmp_path / "one" / name))
        assert difference.max() <= 1, name
    for name, identity in written.items():  # outputs in place before the kill: never rewritten
        assert ((out / name).stat().st_ino, (out / name).stat().st_mtime_ns) == identity
    lines = file_lines(out)
    assert sorted(Path(line["output"]).name for line in lines) == names
    assert not list(out.glob(".*.tmp"))


def test_the_progress_moves_file_by_file_inside_a_task(
        tmp_path: Path, two_workers: distributed.LocalCluster) -> None:
    """Workers announce each finished file (Dask events), so one big task does not hold the
    progress bar still until it ends; the position never goes backwards and ends at the total."""
    make_photos(tmp_path / "in", 8, (480, 320), ".png")
    options, settings = ColorizeOptions(render_size=64), BatchSettings()
    work = batch.plan_run([tmp_path / "in"], options, settings, out_dir=str(tmp_path / "out"))
    batch.prepare_outputs(work, str(tmp_path / "out"))
    positions: list[float] = []
    with batch_cluster.connect(two_workers.scheduler_address, options, settings) as cluster:
        outcomes = cluster.execute(work.jobs, options, settings, manifest=work.manifest,
                                   on_progress=positions.append, files_per_task=8)
    work.manifest.close()
    assert [o.status for o in outcomes] == ["done"] * 8
    assert positions == sorted(positions) and positions[-1] == 8.0
    assert any(0 < p < 8 for p in positions), positions  # before the one task's result came


def test_a_killed_client_is_finished_by_skip_existing(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    names = make_photos(tmp_path / "in", 40, (480, 320))
    out = tmp_path / "out"
    command = [*chromatize_command(), "colorize", str(tmp_path / "in"), "--out-dir", str(out),
               *SMALL, "-q", "--scheduler", "local:2"]
    client = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and client.poll() is None:
        if len(list(out.glob("*.jpg"))) >= 4:
            break
        time.sleep(0.01)
    workers = {p.pid for p in psutil.Process(client.pid).children(recursive=True)}
    client.send_signal(signal.SIGKILL)
    client.wait(30)
    assert workers, "the client must be killed while its workers run"
    deadline = time.monotonic() + 30
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
              for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in workers if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE], \
        "the worker processes of local:N end with their client"
    finished = {p.name for p in out.glob("*.jpg")}
    assert 4 <= len(finished) < len(names), "the client must be killed mid-way"

    code = main(["colorize", str(tmp_path / "in"), "--out-dir", str(out), *SMALL,
                 "--skip-existing", "--scheduler", "local:2"])
    again = capsys.readouterr()
    assert code == 0, again.err
    assert colorized(again.out) == set(names) - finished  # exactly the rest
    assert f"{len(finished)} already done (skipped)" in again.err
    for name in names:
        pixels(out / name)  # decodes
    assert not list(out.glob(".*.tmp"))


def test_an_unreachable_scheduler_is_a_clear_error_before_anything_is_touched(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_photos(tmp_path / "in", 2)
    out = tmp_path / "out"
    out.mkdir()
    leftover = out / ".scan_000.jpg.0123abcd.tmp"  # what a killed run leaves; planning removes it
    leftover.write_bytes(b"partial")
    address = f"tcp://127.0.0.1:{free_port()}"
    code = main(["colorize", str(tmp_path / "in"), "--out-dir", str(out), "--scheduler", address])
    err = capsys.readouterr().err
    assert code == 1
    assert f"chromatize: error: cannot reach the Dask scheduler at {address}" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == [leftover.name]  # nothing touched


def test_no_workers_or_workers_without_chromatize_or_with_another_version_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_photos(tmp_path / "in", 2)
    fake = tmp_path / "fake" / "chromatize"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('__version__ = "0.0.1"\n')
    site_packages = Path(distributed.__file__).parents[1]
    worker = [sys.executable, "-m", "distributed.cli.dask_worker", "--nthreads", "1",
              "--no-nanny", "--no-dashboard"]
    with distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        with pytest.raises(ChromatizeError, match="has no workers .*dask worker"):
            batch_cluster.connect(address, ColorizeOptions(), BatchSettings(), worker_wait=0.5)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        # without site (-S) the editable install's path hook is not read: no chromatize
        bare = subprocess.Popen([sys.executable, "-S", *worker[1:], address], cwd=tmp_path,
                                env={**env, "PYTHONPATH": str(site_packages)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        other = subprocess.Popen([*worker, address], cwd=tmp_path,
                                 env={**env, "PYTHONPATH": str(fake.parent)},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with distributed.Client(address) as client:
                client.wait_for_workers(2, timeout=60)
            code = main(["colorize", str(tmp_path / "in"), "--out-dir", str(tmp_path / "out"),
                         "--scheduler", address])
        finally:
            for process in (bare, other):
                process.terminate()
                process.wait(30)
    err = capsys.readouterr().err
    assert code == 1
    assert f"the Dask cluster at {address} cannot run this batch" in err
    assert "has no chromatize" in err and "runs chromatize 0.0.1" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_scheduler_values() -> None:
    assert batch_cluster.parse_scheduler("local:3") == ("local", 3)
    assert batch_cluster.parse_scheduler("10.0.0.5:8786") == ("address", "tcp://10.0.0.5:8786")
    assert batch_cluster.parse_scheduler("tls://h:1") == ("address", "tls://h:1")
    for bad in ("local:0", "local:x", "nonsense"):
        with pytest.raises(ChromatizeError, match="--scheduler"):
            batch_cluster.parse_scheduler(bad)
    assert batch_cluster.task_sizes(1000, 2, 8) == 32
    assert batch_cluster.task_sizes(10, 4, 8) == 8
    assert batch_cluster.task_sizes(10, 4, 1) == 1
