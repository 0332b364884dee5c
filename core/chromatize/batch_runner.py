"""Running a batch of file jobs with overlapped stages (:func:`chromatize.batch.execute`).

Reader threads decode files and compute the full-resolution lightness
(:meth:`~chromatize.pipeline.Colorizer.prepare`) ahead of the model; the calling thread groups
prepared images by render shape and runs the model on up to ``batch_size`` of them at once;
writer threads bring the colour to full size (:meth:`~chromatize.pipeline.Colorizer.finish`)
and encode. At most a few images per core are in flight, so memory stays bounded whatever the
number of files. Outcomes are reported from the calling thread, in completion order.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chromatize.batch_jobs import BatchSettings, Job, Outcome
from chromatize.errors import ChromatizeError, OutputError
from chromatize.imageio import LoadedImage, read_image, write_image
from chromatize.options import ColorizeOptions

#: What a single file can fail with (anything else is a bug and stops the run).
FILE_ERRORS = (ChromatizeError, MemoryError, RuntimeError, OSError, ValueError)


def available_cpus() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass
class _Item:
    job: Job
    image: LoadedImage
    prepared: Any
    notes: tuple[tuple[str, str], ...]
    #: the file's colour hints (chromatize.hints.Hints), upright and checked, or None
    hints: Any = None


class Runner:
    """One run over a list of jobs with one Colorizer (see the module docstring)."""

    def __init__(self, colorizer: Any, options: ColorizeOptions, settings: BatchSettings,
                 mask: Any, record: Callable[[Outcome], None]) -> None:
        self.colorizer, self.options, self.settings = colorizer, options, settings
        self.mask, self.record = mask, record
        cpus = available_cpus()
        self.batch = options.batch_size
        self.ahead = max(2 * self.batch, 2 * cpus, 4)
        self.reader_count = max(1, cpus // 2)
        self.writer_count = max(1, cpus)

    def run(self, jobs: list[Job]) -> None:
        """Colorize ``jobs``; each outcome goes to ``record`` as soon as it is known."""
        readers = ThreadPoolExecutor(self.reader_count, thread_name_prefix="chromatize-read")
        writers = ThreadPoolExecutor(self.writer_count, thread_name_prefix="chromatize-write")
        reads: deque[Future[_Item | Outcome]] = deque()
        writes: deque[Future[Outcome]] = deque()
        buckets: dict[tuple[int, int], list[_Item]] = {}
        pending = iter(jobs)
        try:
            self._fill(readers, reads, pending)
            while reads:
                item = reads.popleft().result()
                self._fill(readers, reads, pending)
                if isinstance(item, Outcome):
                    self.record(item)
                    continue
                bucket = buckets.setdefault(item.prepared.render, [])
                bucket.append(item)
                if len(bucket) >= self.batch or sum(map(len, buckets.values())) > self.ahead:
                    self._predict(buckets.pop(max(buckets, key=lambda k: len(buckets[k]))),
                                  writers, writes)
                self._drain(writes, keep=self.ahead)
            for bucket in list(buckets.values()):
                self._predict(bucket, writers, writes)
            self._drain(writes, keep=0)
        finally:
            readers.shutdown(wait=True, cancel_futures=True)
            writers.shutdown(wait=True, cancel_futures=True)

    def _fill(self, pool: ThreadPoolExecutor, reads: deque[Future[_Item | Outcome]],
              pending: Iterator[Job]) -> None:
        while len(reads) < self.ahead:
            job = next(pending, None)
            if job is None:
                return
            reads.append(pool.submit(self._read, job))

    def _drain(self, writes: deque[Future[Outcome]], keep: int) -> None:
        """Report finished writes; wait until at most ``keep`` are still running."""
        while writes:
            if len(writes) > keep:
                wait(list(writes), return_when=FIRST_COMPLETED)
            done = [f for f in writes if f.done()]
            if not done:
                return
            for future in done:
                writes.remove(future)
                self.record(future.result())
            if len(writes) <= keep:
                return

    def _read(self, job: Job) -> _Item | Outcome:
        """Decode ``job``'s input and prepare it (reader thread)."""
        try:
            image = read_image(job.source, max_pixels=self.settings.max_pixels or None)
            notes = tuple((str(job.source), note) for note in image.notes)
            prepared = self.colorizer.prepare(image.pixels, self.options, mask=self.mask)
            hints = self._hints(job, prepared)
        except FILE_ERRORS as exc:
            return self._failed(job, exc)
        return _Item(job, image, prepared, notes, hints)

    def _hints(self, job: Job, prepared: Any) -> Any:
        """The hints for ``job`` (``--hints``, or its file in ``--hints-dir``), or None."""
        path = hints_file_for(job.source, self.settings)
        if path is None:
            return None
        from chromatize.hints import load_hints

        return load_hints(path, image_path=job.source).validate(prepared.layout, where=str(path))

    def _predict(self, items: list[_Item], writers: ThreadPoolExecutor,
                 writes: deque[Future[Outcome]]) -> None:
        """Run the model on ``items`` (one render shape) and queue their finishing; on a
        problem, retry one by one to pin down the file that has it."""
        hints = [i.hints for i in items]
        try:
            predictions = self.colorizer.predict(
                [i.prepared for i in items], self.options,
                hints=hints if any(h is not None for h in hints) else None,
            )
        except FILE_ERRORS as exc:
            if len(items) == 1:
                self.record(self._failed(items[0].job, exc))
                return
            for item in items:
                self._predict([item], writers, writes)
            return
        for item, prediction in zip(items, predictions, strict=True):
            writes.append(writers.submit(self._write, item, prediction))

    def _write(self, item: _Item, prediction: Any) -> Outcome:
        """Finish and encode one image (writer thread)."""
        job, image = item.job, item.image
        try:
            result = self.colorizer.finish(item.prepared, prediction, self.options,
                                           hints=item.hints)
            job.target.parent.mkdir(parents=True, exist_ok=True)
            notes = write_image(job.target, result, icc_profile=image.icc_profile,
                                exif=image.exif, dpi=image.dpi,
                                overwrite=self.settings.overwrite or job.replace)
        except OutputError as exc:
            return self._failed(job, exc)
        except OSError as exc:
            return Outcome(job, "failed", f"cannot write {job.target}: {exc.strerror or exc}")
        except FILE_ERRORS as exc:
            return self._failed(job, exc)
        return Outcome(job, "done", notes=item.notes + tuple((str(job.target), n) for n in notes))

    def _failed(self, job: Job, exc: BaseException) -> Outcome:
        return Outcome(job, "failed", describe_file_failure(exc, self.settings.front_end))


def hints_file_for(source: Path, settings: BatchSettings) -> Path | None:
    """The hints file of input ``source``: ``settings.hints``, or ``<stem>.png`` /
    ``<stem>.json`` in ``settings.hints_dir`` where one is there (None without hints)."""
    if settings.hints is not None:
        return Path(settings.hints)
    if settings.hints_dir is None:
        return None
    folder = Path(settings.hints_dir)
    found = [folder / (source.stem + ext) for ext in (".png", ".json")
             if (folder / (source.stem + ext)).exists()]
    if len(found) > 1:
        raise ChromatizeError(f"both {found[0]} and {found[1]} are hints for {source.name}; "
                              "keep one")
    return found[0] if found else None


def describe_file_failure(exc: BaseException, front_end: Any = "cli") -> str:
    """The message of a per-file failure, in the words of ``front_end``."""
    from chromatize.failures import describe_failure

    failure = describe_failure(exc, front_end)
    if failure.kind == "internal":
        return f"colorization failed ({type(exc).__name__}: {exc})"
    return failure.message
