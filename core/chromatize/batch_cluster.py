"""Colorizing a batch on a Dask distributed cluster (``chromatize colorize --scheduler``).

The client plans exactly as the one-machine run does (:func:`chromatize.batch.plan_run`), then:

1. :func:`connect` reaches the scheduler (``tcp://HOST:PORT``, a scheduler file, or ``local:N``
   for a :class:`distributed.LocalCluster` of N worker processes on this machine), checks that
   every worker runs this version of chromatize, and registers :class:`ColorizerPlugin`, which
   loads the model once per worker process. All of that happens before any file is touched:
   an unreachable scheduler, a worker without chromatize or with another version, or a model
   that cannot load is a :class:`~chromatize.errors.ChromatizeError` that names the problem.
2. :meth:`Cluster.execute` sends the jobs in tasks of a few dozen consecutive files; a worker
   colorizes a task with :func:`chromatize.batch.execute` (reader threads, the model batched by
   render shape, writer threads) and the plugin's Colorizer, reading and writing through the
   file system all machines share (paths are sent absolute: mount it at the same place).
   Outcomes come back to the client, which records them in the output folder's manifest as
   tasks complete, so the manifest, ``--skip-existing`` and the final report are the
   one-machine run's.

Faults: a worker that dies mid-task has its task re-run elsewhere by the scheduler. Outputs are
written atomically (:func:`chromatize.imageio.write_image`: temporary name, then a hard link
that never replaces a file), and the re-run keeps every output an earlier attempt of the task
already put in place (it tells them from files that were there before the run by the output's
size and mtime at planning, :class:`ClusterJob`), so each output is written exactly once.
A client that dies leaves finished outputs and the manifest lines it had received; re-running
with ``--skip-existing`` colorizes the rest.

Needs the ``cluster`` extra (``distributed``) on the client and on every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker

from chromatize import __version__
from chromatize.batch import describe_file_failure, execute, remove_stale_temporaries
from chromatize.batch_jobs import BatchSettings, Job, Outcome
from chromatize.batch_manifest import Manifest, file_id
from chromatize.batch_runner import available_cpus
from chromatize.errors import ChromatizeError, InputImageError
from chromatize.imageio import read_image
from chromatize.options import ColorizeOptions

__all__ = ["PLUGIN_NAME", "Cluster", "ClusterJob", "ColorizerPlugin", "colorize_task", "connect",
           "parse_scheduler", "task_sizes"]

PLUGIN_NAME = "chromatize-colorizer"
#: A task holds at most this many files (more when the batch size is larger).
MAX_TASK_FILES = 32
#: How long :func:`connect` waits for a first worker to join a scheduler that has none.
WORKER_WAIT_S = 60.0
#: How long reaching the scheduler may take.
CONNECT_TIMEOUT_S = 10.0


# ------------------------------------------------------------------------------- the worker side


@dataclass(frozen=True)
class ClusterJob:
    """A job as a task carries it: paths absolute, and the output's (size, mtime in ns) as
    planning found it (None: absent). A different file in its place during the run is one an
    earlier attempt of the task wrote (its worker died afterwards): kept, not written again."""

    job: Job
    before: tuple[int, int] | None


class ColorizerPlugin(WorkerPlugin):
    """Loads the run's Colorizer once in each worker process (workers that join later too).

    ``threads``: intra-op threads of the network; None gives each task its share of the
    machine's cores: the cores ÷ the Dask threads of all workers on that machine (so one
    ``dask worker --nthreads 1`` per machine uses them all for one task at a time).
    """

    def __init__(self, options: ColorizeOptions, max_pixels: int, threads: int | None = None,
                 version: str = __version__) -> None:
        self.options, self.max_pixels, self.version = options, max_pixels, version
        self.requested_threads = threads
        self.threads = 1
        self.colorizer: Any = None

    async def setup(self, worker: Any) -> None:
        if self.version != __version__:
            raise ChromatizeError(f"this Dask worker runs chromatize {__version__}, the client "
                                  f"{self.version}; install the same version on both")
        self.threads = self.requested_threads or max(
            1, available_cpus() // await _dask_threads_on_host(worker))
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its threads
        import torch

        from chromatize.pipeline import Colorizer

        torch.set_num_threads(self.threads)
        self.colorizer = Colorizer.from_options(self.options, max_pixels=self.max_pixels)


async def _dask_threads_on_host(worker: Any) -> int:
    """The Dask threads of the workers on ``worker``'s machine, itself included (as the
    scheduler knows them now): they share its cores."""
    own = max(1, int(getattr(worker.state, "nthreads", 1)))
    try:
        known = (await worker.scheduler.identity()).get("workers", {})
    except Exception:  # an older or busy scheduler: count this worker alone
        return own
    others = sum(int(info.get("nthreads", 0)) for address, info in known.items()
                 if info.get("host") == worker.ip and address != worker.address)
    return own + others


def colorize_task(items: Sequence[ClusterJob], options: ColorizeOptions,
                  settings: BatchSettings, progress: tuple[str, int] | None = None,
                  ) -> tuple[str, list[Outcome]]:
    """Colorize one task's files on this worker; returns (engine, outcomes).

    Outputs an earlier attempt of this task already wrote are reported done and left alone.
    ``progress`` = (topic, task index): each file this attempt finishes is announced on that
    Dask event topic as it happens, so that the client's progress bar moves file by file (the
    outcomes themselves travel with the task's result).
    """
    import torch

    worker = get_worker()
    plugin = worker.plugins.get(PLUGIN_NAME)
    if not isinstance(plugin, ColorizerPlugin) or plugin.colorizer is None:
        raise ChromatizeError("this Dask worker has not loaded the model (its log says why)")
    torch.set_num_threads(plugin.threads)  # per thread: this is the task's thread
    earlier = [item for item in items if _written_by_this_run(item)]
    todo = [item for item in items if item not in earlier]
    outcomes = [Outcome(item.job, "done") for item in earlier]
    if todo:
        announce = None if progress is None else (
            lambda _outcome: worker.log_event(progress[0], progress[1]))
        results = execute([item.job for item in todo], options, settings,
                          colorizer=plugin.colorizer, on_outcome=announce)
        by_job = {item.job: item for item in todo}
        outcomes += [Outcome(o.job, "done") if o.status == "failed"
                     and _written_by_this_run(by_job[o.job]) else o for o in results]
    return plugin.colorizer.engine, outcomes


def _written_by_this_run(item: ClusterJob) -> bool:
    """Whether ``item``'s output is a complete file that was not there at planning."""
    current = file_id(item.job.target)
    if current is None or current == item.before:
        return False
    try:
        read_image(item.job.target, max_pixels=None)
    except (InputImageError, OSError):
        return False
    return True


def _engine_of(dask_worker: Any) -> str:
    """The engine this worker's plugin runs (``client.run`` passes the worker)."""
    plugin = dask_worker.plugins.get(PLUGIN_NAME)
    return getattr(getattr(plugin, "colorizer", None), "engine", "?")


# ------------------------------------------------------------------------------- the client side


def parse_scheduler(value: str) -> tuple[str, Any]:
    """(``"local"``, N workers) for ``local`` / ``local:N``; (``"file"``, path) for an existing
    scheduler file (``dask scheduler --scheduler-file``); (``"address"``, address) otherwise
    (``HOST:PORT`` means ``tcp://HOST:PORT``)."""
    text = value.strip()
    if text == "local" or text.startswith("local:"):
        count = text.partition(":")[2] or str(max(1, available_cpus() // 2))
        if not count.isdigit() or int(count) < 1:
            raise ChromatizeError(f"--scheduler {value}: local:N needs a number of worker "
                                  "processes N >= 1 (for example local:4)")
        return "local", int(count)
    if text.endswith(".json") and Path(text).is_file():
        return "file", text
    if "://" not in text:
        host, _, port = text.rpartition(":")
        if not host or not port.isdigit():
            raise ChromatizeError(f"--scheduler {value}: give the scheduler's address "
                                  "(tcp://HOST:PORT), its scheduler file (.json), or local:N")
        text = f"tcp://{text}"
    return "address", text


def task_sizes(count: int, workers: int, batch_size: int,
               files_per_task: int | None = None) -> int:
    """Files per task: about four tasks per worker (so a slow or lost worker delays little),
    at least a model batch, at most :data:`MAX_TASK_FILES` (or the batch size, if larger)."""
    if files_per_task is not None:
        return max(1, files_per_task)
    most = max(MAX_TASK_FILES, batch_size)
    return max(1, min(most, max(batch_size, math.ceil(count / (4 * max(1, workers))))))


def _check_reachable(address: str) -> None:
    """Fail fast, with the reason, when nothing listens at a ``tcp://`` address."""
    if not address.startswith("tcp://"):
        return
    host, _, port = address[len("tcp://"):].rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ChromatizeError(f"cannot reach the Dask scheduler at {address} ({reason}); check "
                              "the address and that the scheduler runs (dask scheduler)"
                              ) from None


class Cluster:
    """A connected Dask client whose workers are checked and have the model loaded."""

    def __init__(self, client: Client, where: str, local: LocalCluster | None = None) -> None:
        self.client, self.where, self.local = client, where, local
        self.engines: dict[str, str] = {}

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client and, for ``local:N``, stop its worker processes."""
        with contextlib.suppress(Exception):
            self.client.close()
        if self.local is not None:
            with contextlib.suppress(Exception):
                self.local.close()

    @property
    def workers(self) -> int:
        return max(1, len(self.client.nthreads()))

    def execute(self, jobs: Sequence[Job], options: ColorizeOptions, settings: BatchSettings, *,
                manifest: Manifest | None = None,
                on_outcome: Callable[[Outcome], None] | None = None,
                on_progress: Callable[[float], None] | None = None,
                files_per_task: int | None = None) -> list[Outcome]:
        """Colorize ``jobs`` on the cluster: what :func:`chromatize.batch.execute` does, with
        the same outcomes (each outcome's job is the caller's), manifest lines and callbacks."""
        originals = {_absolute(job): job for job in jobs}
        items = [ClusterJob(absolute, file_id(absolute.target)) for absolute in originals]
        size = task_sizes(len(items), self.workers, options.batch_size, files_per_task)
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        worker_options, worker_settings = _for_workers(options, settings)
        if manifest is not None:
            manifest.start_run(options, settings.mask, self._engine())
        run = uuid.uuid4().hex[:8]
        shown = _FileProgress([len(chunk) for chunk in chunks], on_progress)
        topic = f"chromatize-progress-{run}"
        if on_progress is not None:
            self.client.subscribe_topic(topic, shown.file_done)
        futures = {self.client.submit(colorize_task, chunk, worker_options, worker_settings,
                                      (topic, i) if on_progress is not None else None,
                                      key=f"chromatize-colorize-{run}-{i}", pure=False,
                                      retries=0): (i, chunk) for i, chunk in enumerate(chunks)}
        outcomes: list[Outcome] = []
        try:
            # our client's loop, not the default client's: with a second client open in the
            # process (a notebook's, a dashboard watcher) as_completed would otherwise bind to
            # that one's loop and fail ("bound to a different event loop", dask/distributed#4317)
            for future in as_completed(list(futures), loop=self.client.loop):
                index, chunk = futures.pop(future)
                engine, results = self._results(future, chunk, settings)
                for result in results:
                    outcome = replace(result, job=originals[result.job])
                    outcomes.append(outcome)
                    if manifest is not None:
                        manifest.record(outcome, engine)
                    if on_outcome is not None:
                        on_outcome(outcome)
                shown.task_done(index)
                future.release()
        finally:
            if futures:  # interrupted: nothing more is sent
                self.client.cancel(list(futures))
            if on_progress is not None:
                self.client.unsubscribe_topic(topic)
        remove_stale_temporaries(list(jobs))  # left by workers that died while writing
        return outcomes

    def _engine(self) -> str:
        engines = set(self.engines.values())
        return engines.pop() if len(engines) == 1 else "+".join(sorted(engines)) or "?"

    def _results(self, future: Any, chunk: list[ClusterJob],
                 settings: BatchSettings) -> tuple[str, list[Outcome]]:
        """A task's (engine, outcomes); a task that failed as a whole fails its files."""
        if future.status == "finished":
            return future.result()
        if future.status != "error":  # cancelled or lost: the scheduler went away
            raise ChromatizeError(f"the Dask scheduler at {self.where} dropped the work "
                                  f"({future.status}: lost or restarted?); run the command "
                                  "again with --skip-existing to colorize the rest")
        exc = future.exception()
        message = describe_file_failure(exc, settings.front_end)
        if type(exc).__name__ == "KilledWorker":
            message = ("every Dask worker that tried this file died (out of memory?); "
                       f"{exc}")
        return "?", [Outcome(item.job, "failed", message) for item in chunk]


class _FileProgress:
    """The client's count of finished files: whole tasks as their results arrive, plus the
    files that running tasks have announced (Dask events, which arrive on the client's own
    thread); what it reports never goes backwards."""

    def __init__(self, sizes: list[int], on_progress: Callable[[float], None] | None) -> None:
        self.sizes, self.on_progress = sizes, on_progress
        self.finished: set[int] = set()
        self.announced: dict[int, int] = {}
        self.shown = 0.0
        self.lock = threading.Lock()

    def file_done(self, event: tuple[float, Any]) -> None:
        """Handler of the progress topic: one file of task ``event[1]`` is in place."""
        index = int(event[1])
        with self.lock:
            if index in self.finished:
                return
            # a retried task announces again what its first attempt did not finish: capped
            self.announced[index] = min(self.announced.get(index, 0) + 1, self.sizes[index] - 1)
            self._show()

    def task_done(self, index: int) -> None:
        with self.lock:
            self.finished.add(index)
            self.announced.pop(index, None)
            self._show()

    def _show(self) -> None:
        done = sum(self.sizes[i] for i in self.finished) + sum(self.announced.values())
        if self.on_progress is not None and done > self.shown:
            self.shown = float(done)
            self.on_progress(self.shown)


def _absolute(job: Job) -> Job:
    return Job(job.source.absolute(), job.target.absolute(), job.replace)


def _for_workers(options: ColorizeOptions,
                 settings: BatchSettings) -> tuple[ColorizeOptions, BatchSettings]:
    """The run's options and settings with their file paths absolute (workers have other
    working folders)."""
    def absolute(path: str | None) -> str | None:
        return None if path is None else str(Path(path).expanduser().absolute())

    if options.weights is not None:
        options = options.replace(weights=absolute(options.weights))
    return options, replace(settings, mask=absolute(settings.mask),
                            hints=absolute(settings.hints), hints_dir=absolute(settings.hints_dir))


def connect(scheduler: str, options: ColorizeOptions, settings: BatchSettings, *,
            worker_wait: float = WORKER_WAIT_S, threads: int | None = None) -> Cluster:
    """Reach (or, for ``local:N``, start) the cluster, check its workers and load the model on
    each; raises ChromatizeError, touching no file, if any of that fails."""
    kind, value = parse_scheduler(scheduler)
    local = None
    try:
        if kind == "local":
            local = LocalCluster(n_workers=value, threads_per_worker=1, processes=True,
                                 dashboard_address=None, silence_logs=logging.ERROR)
            client = Client(local)
            threads = threads or max(1, available_cpus() // value)
            where = f"local:{value}"
        else:
            if kind == "address":
                _check_reachable(value)
            target = {"scheduler_file": value} if kind == "file" else {"address": value}
            where = value
            try:
                client = Client(**target, timeout=CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                raise ChromatizeError(f"cannot reach the Dask scheduler at {value} ({exc}); "
                                      "check the address and that the scheduler runs") from None
    except BaseException:
        if local is not None:
            local.close()
        raise
    cluster = Cluster(client, where, local)
    try:
        _wait_for_workers(client, where, worker_wait)
        _check_versions(client, where)
        plugin = ColorizerPlugin(options, settings.max_pixels or 2**62, threads)
        try:
            client.register_plugin(plugin, name=PLUGIN_NAME)
        except ChromatizeError as exc:
            raise ChromatizeError(f"a Dask worker cannot run this batch: {exc}") from None
        except Exception as exc:  # the model failed to load on a worker
            raise ChromatizeError(
                f"a Dask worker could not load the model: "
                f"{describe_file_failure(exc, settings.front_end)}") from None
        cluster.engines = client.run(_engine_of)
    except BaseException:
        cluster.close()
        raise
    return cluster


def _wait_for_workers(client: Client, where: str, timeout: float) -> None:
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise ChromatizeError(f"the Dask scheduler at {where} has no workers (waited "
                              f"{timeout:.0f} s); start some, for example "
                              f"`dask worker {where} --nthreads 1`") from None


def _check_versions(client: Client, where: str) -> None:
    """Refuse workers without chromatize or with another version than this client's.

    Asked of each worker by a probe that travels by value (a worker without chromatize can run
    it), not of the installed distributions' metadata (``Client.get_versions``), which can
    disagree with what the worker imports.
    """
    versions = client.run(_version_probe(), on_error="return")
    problems = []
    for address, theirs in sorted(versions.items()):
        if isinstance(theirs, BaseException) or theirs is None:
            problems.append(f"{address} has no chromatize")
        elif theirs != __version__:
            problems.append(f"{address} runs chromatize {theirs}")
    if problems:
        raise ChromatizeError(
            f"the Dask cluster at {where} cannot run this batch: {'; '.join(problems)}; install "
            f"chromatize {__version__} (this client's version) with the cluster extra in the "
            "workers' environment and restart them")


def _version_probe() -> Callable[[], str | None]:
    """A function returning the worker's ``chromatize.__version__`` (None without it); nested,
    so that it is pickled by value and needs no chromatize to arrive."""

    def probe() -> str | None:
        try:
            import chromatize
        except ImportError:
            return None
        return str(getattr(chromatize, "__version__", "unknown"))

    return probe
