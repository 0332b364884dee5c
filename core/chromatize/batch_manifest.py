"""The manifest of an output folder: what each output was made from, and with which settings.

``.chromatize-manifest.jsonl`` in the output folder holds one JSON object per line, appended as
a run goes (a line is written once its output file is in place, so a crash or kill loses at
most the lines of files in flight; a torn last line is ignored):

- a *run* line when a run starts: ``{"run": <UTC time>, "chromatize": <version>,
  "options": {...}, "fingerprint": <hash of those options>, "engine": "onnx"|"torch"}``;
- one line per file: ``{"input", "size", "mtime" (input size in bytes and mtime in ns),
  "options" (the run's fingerprint), "engine", "status" ("done"|"failed"), "output",
  "output_size", "error"}``, paths absolute.

The options recorded are those that change the colours (:data:`OUTPUT_SETTINGS`, the model's
defaults filled in); the device, batch size and engine are recorded but do not count as other
settings (engines agree within one unit of 8-bit output).
"""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

from chromatize import __version__
from chromatize.batch_jobs import Job, Outcome
from chromatize.errors import ChromatizeError
from chromatize.options import ColorizeOptions, setting_token

MANIFEST_NAME = ".chromatize-manifest.jsonl"
#: The settings that change an output's colours.
OUTPUT_SETTINGS = ("model", "weights", "temperature", "saturation", "render_size", "upsample",
                   "decode")

FileState = Literal["done", "stale", "unknown"]


def output_options(options: ColorizeOptions, mask: str | None = None) -> dict[str, Any]:
    """The colour-changing settings of ``options`` as JSON values, model defaults filled in."""
    from chromatize.registry import MODELS

    values = {name: getattr(options, name) for name in OUTPUT_SETTINGS}
    spec = MODELS.get(options.model)
    if spec is not None:
        if values["temperature"] is None:
            values["temperature"] = spec.default_temperature
        if values["render_size"] is None:
            values["render_size"] = spec.default_input_size
    if values["weights"] is not None:
        values["weights"] = str(Path(values["weights"]).expanduser().resolve())
    values["mask"] = None if mask is None else str(Path(mask).resolve())
    return values


def fingerprint_options(options: ColorizeOptions, mask: str | None = None) -> str:
    """A short hash of :func:`output_options` (equal settings, equal fingerprint)."""
    text = json.dumps(output_options(options, mask), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_id(path: Path) -> tuple[int, int] | None:
    """(size, mtime in ns) of ``path``, or None when it cannot be read: what the manifest
    records to recognise a file again."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class _Entry(NamedTuple):
    """What planning needs of one file line."""

    done: bool
    source: object
    size: object
    mtime: object
    options: object
    output_size: object

    @classmethod
    def of(cls, item: dict[str, Any]) -> _Entry:
        return cls(item.get("status") == "done", item.get("input"), item.get("size"),
                   item.get("mtime"), item.get("options"), item.get("output_size"))


class Manifest:
    """The manifest of one output folder (read at planning, appended to while running)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / MANIFEST_NAME
        #: fingerprint -> the options it stands for
        self.runs: dict[str, dict[str, Any]] = {}
        #: resolved output path -> its latest file line, kept small (millions of files)
        self.entries: dict[str, _Entry] = {}
        self._fingerprint = ""
        self._current: dict[str, Any] = {}
        self._handle: IO[str] | None = None
        self._lock = threading.Lock()

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        """The manifest of ``folder`` (empty if there is none yet)."""
        manifest = cls(folder)
        try:
            with open(manifest.path, encoding="utf-8") as fh:
                for line in fh:
                    manifest._read_line(line)
        except (FileNotFoundError, NotADirectoryError):  # no manifest (yet)
            pass
        except OSError as exc:
            raise ChromatizeError(f"cannot read {manifest.path}: {exc.strerror or exc}") from None
        return manifest

    def _read_line(self, line: str) -> None:
        try:
            item = json.loads(line)
        except ValueError:  # a line torn by a crash
            return
        if not isinstance(item, dict):
            return
        if "run" in item and isinstance(item.get("options"), dict):
            self.runs[str(item.get("fingerprint"))] = item["options"]
        elif isinstance(item.get("output"), str):
            self.entries[item["output"]] = _Entry.of(item)

    def state(self, source: Path, target: Path) -> FileState:
        """``done``: the manifest says ``target`` was made from ``source`` as it is now and the
        file is still the one written; ``stale``: it was made from an older version of
        ``source``; ``unknown`` otherwise (no line, a failure, or the file was changed)."""
        entry = self.entries.get(str(target.resolve()))
        if entry is None or not entry.done or entry.source != str(source.resolve()):
            return "unknown"
        if file_id(source) != (entry.size, entry.mtime):
            return "stale"
        current = file_id(target)
        return "done" if current is not None and current[0] == entry.output_size else "unknown"

    def refuse_mixing(self, fingerprint: str, rewritten: set[Path]) -> None:
        """Raise if the folder keeps outputs made with settings other than ``fingerprint``'s
        that this run does not rewrite (``rewritten``: resolved targets of its jobs)."""
        others = [entry for output, entry in self.entries.items()
                  if entry.done and entry.options != fingerprint
                  and Path(output) not in rewritten and Path(output).exists()]
        if not others:
            return
        theirs = self.runs.get(str(others[0].options), {})
        raise ChromatizeError(
            f"{self.folder} holds {len(others)} output{'s' if len(others) != 1 else ''} made "
            f"with other settings ({_differences(theirs, self._current)}); continue with the "
            f"same settings, choose another output folder, or pass «allow_mixed_options» to mix "
            f"them (the settings of each output are in {self.path})")

    def expect(self, options: ColorizeOptions, mask: str | None) -> None:
        """Remember the current run's options (for messages and :meth:`start_run`)."""
        self._current = output_options(options, mask)
        self._fingerprint = fingerprint_options(options, mask)

    def start_run(self, options: ColorizeOptions, mask: str | None, engine: str) -> None:
        """Append the run line (opening the manifest for appending)."""
        self.expect(options, mask)
        self.runs[self._fingerprint] = self._current
        self._append({"run": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "chromatize": __version__, "options": self._current,
                      "fingerprint": self._fingerprint, "engine": engine,
                      "device": options.device})

    def record(self, outcome: Outcome, engine: str) -> None:
        """Append the line of one finished job (skipped jobs are not recorded again)."""
        if outcome.status == "skipped":
            return
        job: Job = outcome.job
        size, mtime = file_id(job.source) or (None, None)
        written = file_id(job.target) if outcome.status == "done" else None
        entry = {"input": str(job.source.resolve()), "size": size, "mtime": mtime,
                 "options": self._fingerprint, "engine": engine, "status": outcome.status,
                 "output": str(job.target.resolve()),
                 "output_size": None if written is None else written[0]}
        if outcome.message:
            entry["error"] = outcome.message
        self.entries[entry["output"]] = _Entry.of(entry)
        self._append(entry)

    def _append(self, item: dict[str, Any]) -> None:
        line = json.dumps(item, sort_keys=True) + "\n"
        with self._lock:
            if self._handle is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            self._handle.write(line)
            self._handle.flush()

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


def _differences(theirs: dict[str, Any], ours: dict[str, Any]) -> str:
    """``--saturation 1.3 instead of 1.0, ...`` for the settings that differ."""
    parts = []
    for name in sorted(set(theirs) | set(ours)):
        if theirs.get(name) != ours.get(name):
            parts.append(f"{setting_token(name)} {theirs.get(name)} there, "
                         f"{ours.get(name)} now")
    return "; ".join(parts) or "unknown settings"
