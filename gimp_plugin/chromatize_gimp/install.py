"""Installing chromatize's GIMP plug-in into a GIMP plug-ins folder, and removing it again.

The plug-in (package ``chromatize_gimp``) is copied to ``<plug-ins>/chromatize-colorize/``:
the entry script as ``chromatize-colorize.py`` (executable; GIMP 3 requires the file stem to
equal the folder name), its helper modules, and ``chromatize-worker.json``, which records

- the absolute path of the Python running this code (``sys.executable``, or ``python=``): GIMP's
  own Python has no torch, so the plug-in starts ``<that python> -m chromatize.worker`` for the
  work;
- ``"settings"``: :func:`plugin_settings`, the colorization settings' defaults, labels, help
  texts, ranges and choices from :func:`chromatize.options.options_schema` (GIMP's Python cannot
  import chromatize, so the dialog reads them from here instead of writing its own).

For GIMP installed from Flathub, the sandboxed plug-in cannot run a Python of the host
directly; ``flatpak=True`` installs into the Flatpak's config folder and records the worker
command behind ``flatpak-spawn --host --watch-bus`` (the user must allow it once with
``flatpak override --user --talk-name=org.freedesktop.Flatpak org.gimp.GIMP``).

The folder is assembled next to its final place and renamed into it. A folder of that name
that was not installed by chromatize is never replaced or deleted unless ``force`` is given.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from chromatize import __version__
from chromatize.errors import ChromatizeError, OutputError
from chromatize.options import options_schema
from chromatize_gimp import PLUGIN_NAME, plugin_files, plugin_source_dir

GIMP_VERSIONS: tuple[str, ...] = ("3", "2.10")
CONFIG_NAME = "chromatize-worker.json"
CONFIG_VERSION = 2
INSTALLED_BY = "chromatize"
FLATPAK_APP_ID = "org.gimp.GIMP"
#: ``--watch-bus``: the host side ends the worker when flatpak-spawn (killed with the plug-in's
#: process group by GIMP's Cancel) goes away; the worker's stdin end of file does too.
FLATPAK_SPAWN: tuple[str, ...] = ("flatpak-spawn", "--host", "--watch-bus")
DEFAULT_TIMEOUT_SECONDS = 1800
DEFAULT_STARTUP_TIMEOUT_SECONDS = 120
_CONFIG_DIR_NAMES = {"3": "3.0", "2.10": "2.10"}
_DIRECTORY_ENV = {"3": "GIMP3_DIRECTORY", "2.10": "GIMP2_DIRECTORY"}


class GimpInstallError(ChromatizeError):
    """The plug-in cannot be installed or removed (bad version, foreign folder, ...)."""


@dataclass(frozen=True)
class InstallResult:
    """Where the plug-in went and the worker command it records."""

    plugin_dir: Path
    entry: Path
    config: Path
    command: list[str]
    gimp_version: str


def _check_version(gimp_version: str) -> str:
    version = str(gimp_version).strip()
    if version in ("3.0", "3.x"):
        version = "3"
    if version not in GIMP_VERSIONS:
        raise GimpInstallError(
            f"unknown GIMP version {gimp_version!r}; choose {' or '.join(GIMP_VERSIONS)}"
        )
    return version


def gimp_config_dir(gimp_version: str = "3", flatpak: bool = False) -> Path:
    """GIMP's per-user configuration folder on this platform (where ``plug-ins`` lives)."""
    version = _check_version(gimp_version)
    name = _CONFIG_DIR_NAMES[version]
    home = Path.home()
    if flatpak:
        return home / ".var" / "app" / FLATPAK_APP_ID / "config" / "GIMP" / name
    override = os.environ.get(_DIRECTORY_ENV[version])
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        appdata = os.environ.get("APPDATA") or str(home / "AppData" / "Roaming")
        return Path(appdata) / "GIMP" / name
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "GIMP" / name
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(home / ".config")
    return Path(config_home) / "GIMP" / name


def default_plugins_dir(gimp_version: str = "3", flatpak: bool = False) -> Path:
    """The user's GIMP plug-ins folder (``<config>/plug-ins``)."""
    return gimp_config_dir(gimp_version, flatpak) / "plug-ins"


def worker_command(python: str | os.PathLike[str] | None = None, flatpak: bool = False,
                   prefix: Sequence[str] = ()) -> list[str]:
    """The argument list the plug-in runs: ``[*prefix, python, "-m", "chromatize.worker"]``.

    ``prefix`` wraps the interpreter (``flatpak=True`` means ``flatpak-spawn --host``); the
    real-GIMP tests use ``chroot /host`` to reach the host's Python from their GIMP chroot.
    """
    interpreter = os.path.abspath(os.fspath(python) if python is not None else sys.executable)
    wrapper = [*FLATPAK_SPAWN] if flatpak else []
    return [*wrapper, *prefix, interpreter, "-m", "chromatize.worker"]


def _model_entries() -> list[dict[str, Any]]:
    """The registry's models as the dialog needs them: name, description, defaults, whether
    they accept colour hints (``accepts_hints``), whether
    their weights are here (``status`` of :func:`chromatize.weights.model_status` at install
    time) and the files that make them ready (``weights_files``: the user cache, the shipped
    copy), which the plug-in checks again each time its dialog opens."""
    from chromatize.registry import list_models
    from chromatize.weights import model_status
    from chromatize.weights.finding import cached_path

    entries = []
    for spec in list_models():
        shipped = spec.shipped_path()
        entries.append({
            "name": spec.name, "description": spec.description,
            "status": model_status(spec.name), "downloadable": bool(spec.url),
            "weights_files": [str(cached_path(spec))] + ([str(shipped)] if shipped else []),
            "default_temperature": round(float(spec.default_temperature), 4),
            "default_input_size": int(spec.default_input_size),
            "accepts_hints": spec.accepts_hints,
        })
    return entries


def plugin_settings() -> dict[str, dict[str, Any]]:
    """What the plug-in's dialog shows, by setting: :func:`chromatize.options.options_schema`
    with the registry's models as the model's choices (``choice_labels``: their descriptions)
    and, for numbers the library leaves unbounded above, ``slider_maximum`` (a slider needs an
    end)."""
    schema = options_schema()
    models = _model_entries()
    schema["model"]["choices"] = [entry["name"] for entry in models]
    schema["model"]["choice_labels"] = {entry["name"]: entry["description"] for entry in models}
    schema["model"]["models"] = models
    for entry in schema.values():
        if entry["maximum"] is None and entry["slider_max"] is not None:
            entry["slider_maximum"] = entry["slider_max"]
    return schema


def _is_ours(folder: Path) -> bool:
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("installed_by") == INSTALLED_BY


def _check_python(python: str) -> None:
    """Make sure another interpreter can run the worker before recording it."""
    try:
        proc = subprocess.run([python, "-m", "chromatize.worker", "--version"],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GimpInstallError(f"cannot run {python} ({exc}); pass a working Python") from None
    if proc.returncode != 0:
        raise GimpInstallError(
            f"{python} cannot run chromatize's worker (is chromatize installed there?): "
            + (proc.stderr.strip().splitlines() or ["no output"])[-1]
        )


def _target_root(version: str, plugins_dir: str | os.PathLike[str] | None,
                 flatpak: bool) -> Path:
    root = (Path(plugins_dir).expanduser() if plugins_dir is not None
            else default_plugins_dir(version, flatpak))
    return root.absolute()


def _config(version: str, command: list[str], flatpak: bool,
            timeout_seconds: int) -> dict[str, Any]:
    """The contents of ``chromatize-worker.json``."""
    from chromatize.worker import PROTOCOL_VERSION

    return {
        "config_version": CONFIG_VERSION,
        "installed_by": INSTALLED_BY,
        "chromatize": __version__,
        "protocol": PROTOCOL_VERSION,
        "gimp_version": version,
        "installed": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": command[-3],
        "command": command,
        "flatpak": flatpak,
        "timeout_seconds": int(timeout_seconds),
        "startup_timeout_seconds": DEFAULT_STARTUP_TIMEOUT_SECONDS,
        "models": _model_entries(),
        "settings": plugin_settings(),
    }


#: The help domain of the GIMP 3 plug-in (``gimp3_plugin.HELP_DOMAIN``) and its page's id.
HELP_FOLDER = "help"
HELP_ID = "plug-in-chromatize-colorize"


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"\*(.+?)\*", r"<i>\1</i>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def help_html(markdown: str) -> str:
    """The plug-in's help page from its Markdown (headings, paragraphs, lists: all it uses)."""
    body: list[str] = []
    paragraph: list[str] = []
    in_list = False

    def flush() -> None:
        nonlocal in_list
        if paragraph:
            tag = "li" if in_list else "p"
            body.append(f"<{tag}>{_inline(' '.join(paragraph))}</{tag}>")
            paragraph.clear()

    for raw in markdown.splitlines():
        line = raw.strip()
        if not line:
            flush()
            if in_list:
                body.append("</ul>")
                in_list = False
        elif line.startswith("#"):
            flush()
            level = min(3, len(line) - len(line.lstrip("#")))
            body.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("- "):
            flush()
            if not in_list:
                body.append("<ul>")
                in_list = True
            paragraph.append(line[2:])
        else:
            paragraph.append(line)
    flush()
    if in_list:
        body.append("</ul>")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Colorize (AI)</title>"
            "</head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _write_help(folder: Path) -> None:
    """``help/en/``: GIMP's index of the plug-in's help domain and its one page."""
    source = plugin_source_dir().parent / "help.md"
    target = folder / HELP_FOLDER / "en"
    target.mkdir(parents=True)
    (target / "index.html").write_text(help_html(source.read_text(encoding="utf-8")),
                                       encoding="utf-8")
    (target / "gimp-help.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<gimp-help>\n'
        f'  <help-item id="{HELP_ID}" ref="index.html" title="Colorize (AI)"/>\n'
        '</gimp-help>\n', encoding="utf-8")


def _write_folder(folder: Path, files: dict[str, Path], config: dict[str, Any]) -> None:
    """Assemble the plug-in next to ``folder`` and rename it into place (replacing any old one)."""
    target_root = folder.parent
    try:
        target_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=target_root))
    except OSError as exc:
        raise OutputError(f"cannot write to the plug-ins folder {target_root}: {exc}") from None
    try:
        for name, source in files.items():
            shutil.copyfile(source, staging / name)
        entry = staging / f"{PLUGIN_NAME}.py"
        entry.chmod(entry.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        _write_help(staging)
        staging.chmod(0o755)
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=target_root))
            os.replace(folder, old / folder.name)
        os.replace(staging, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(f"cannot install the plug-in into {folder}: {exc}") from None


def install(gimp_version: str = "3", plugins_dir: str | os.PathLike[str] | None = None, *,
            python: str | os.PathLike[str] | None = None, flatpak: bool = False,
            force: bool = False, timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS,
            command_prefix: Sequence[str] = ()) -> InstallResult:
    """Install (or update) the plug-in; returns where it went and the recorded command.

    ``command_prefix`` is put before the interpreter in the recorded worker command (see
    :func:`worker_command`).
    """
    version = _check_version(gimp_version)
    folder = _target_root(version, plugins_dir, flatpak) / PLUGIN_NAME
    if python is not None and os.path.abspath(os.fspath(python)) != os.path.abspath(
            sys.executable):
        _check_python(os.path.abspath(os.fspath(python)))
    command = worker_command(python, flatpak, command_prefix)
    if folder.exists() and not force and not _is_ours(folder):
        raise GimpInstallError(
            f"{folder} exists but was not installed by chromatize; move it away or pass --force "
            "to replace it"
        )
    files = plugin_files(version)
    missing = [str(src) for src in files.values() if not src.is_file()]
    if missing:
        raise GimpInstallError(f"this chromatize build lacks plug-in files: {', '.join(missing)}")
    _write_folder(folder, files, _config(version, command, flatpak, timeout_seconds))
    return InstallResult(plugin_dir=folder, entry=folder / f"{PLUGIN_NAME}.py",
                         config=folder / CONFIG_NAME, command=command, gimp_version=version)


def uninstall(gimp_version: str = "3", plugins_dir: str | os.PathLike[str] | None = None, *,
              flatpak: bool = False, force: bool = False) -> Path | None:
    """Remove the plug-in folder; returns it, or None when nothing was installed there."""
    version = _check_version(gimp_version)
    folder = _target_root(version, plugins_dir, flatpak) / PLUGIN_NAME
    if not folder.exists():
        return None
    if not force and not _is_ours(folder):
        raise GimpInstallError(
            f"{folder} was not installed by chromatize (no {CONFIG_NAME} from chromatize); "
            "remove it yourself or pass --force"
        )
    try:
        shutil.rmtree(folder)
    except OSError as exc:
        raise OutputError(f"cannot remove {folder}: {exc}") from None
    return folder
