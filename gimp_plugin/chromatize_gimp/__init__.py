"""chromatize's GIMP plug-in, shipped as package data and installed by `chromatize gimp install`.

The files in :mod:`chromatize_gimp.plugin` run inside GIMP, not in this Python: GIMP 3's Python
(``gimp3_plugin.py`` + ``chromatize_shim_gimp3.py``) or GIMP 2.10's Python 2.7 ``gimpfu``
(``gimp2_plugin.py`` + ``chromatize_shim_gimpfu.py``), sharing the host-neutral layer
(``chromatize_shim.py``), the colorize flow (``chromatize_flow.py``) and the worker client
(``chromatize_client.py``). :func:`plugin_files` says which files make up each variant.

:mod:`chromatize_gimp.install` copies them into GIMP's plug-ins folder with the worker's command
and chromatize's settings schema, and :mod:`chromatize_gimp.command` is the ``chromatize gimp``
sub-command (an entry point of the ``chromatize.commands`` group). This package imports
chromatize; chromatize never imports it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PLUGIN_NAME = "chromatize-colorize"
SHARED_MODULES: tuple[str, ...] = ("chromatize_shim.py", "chromatize_flow.py",
                                   "chromatize_client.py")
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    # GIMP version -> (entry script, host-specific modules)
    "3": ("gimp3_plugin.py", ("chromatize_shim_gimp3.py",)),
    "2.10": ("gimp2_plugin.py", ("chromatize_shim_gimpfu.py",)),
}


def plugin_source_dir() -> Path:
    """The folder holding the plug-in sources inside the installed package."""
    return Path(str(resources.files("chromatize_gimp").joinpath("plugin")))


def plugin_files(gimp_version: str) -> dict[str, Path]:
    """``{installed file name: source path}`` for one GIMP version ("3" or "2.10").

    The entry script is installed as ``chromatize-colorize.py`` (GIMP 3 requires the file stem
    to equal its folder's name); helper modules keep their names.
    """
    try:
        entry, host_modules = VARIANTS[gimp_version]
    except KeyError:
        raise ValueError(f"unknown GIMP version {gimp_version!r}; choose 3 or 2.10") from None
    source = plugin_source_dir()
    files = {f"{PLUGIN_NAME}.py": source / entry}
    for name in SHARED_MODULES + host_modules:
        files[name] = source / name
    return files
