"""The ``chromatize`` console script: argument parsing, sub-command dispatch, error reporting.

Each sub-command lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func=run`` (``run(args) -> int``, the exit code). Other
packages add sub-commands the same way through the ``chromatize.commands`` entry-point group
(``name = "module:register"``; the GIMP plug-in's ``gimp`` command comes from there); one that
cannot be loaded is left out with a warning on stderr, the other commands still work. Expected
failures (:class:`~chromatize.errors.ChromatizeError`) are printed as
``chromatize: error: <message>`` without a traceback and exit with status 1; Ctrl-C exits 130,
a closed output pipe 141 (as a shell reports SIGPIPE).
Sub-command modules import torch-heavy code inside ``run`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from chromatize import __version__
from chromatize.cli import colorize, eval, models, sample
from chromatize.errors import ChromatizeError

PROG = "chromatize"
#: Entry-point group through which other packages add sub-commands.
COMMANDS_GROUP = "chromatize.commands"


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Automatic photo colorization with a 313-bin classification colorizer.",
        epilog="Run 'chromatize COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in (colorize, models, eval, sample):
        module.register(subparsers)
    register_plugin_commands(subparsers)
    return parser


def register_plugin_commands(subparsers: Any) -> None:
    """Register the sub-commands of the ``chromatize.commands`` entry points, skipping (with a
    warning on stderr) any that cannot be loaded or registered."""
    from importlib.metadata import entry_points

    seen: set[str] = set()
    for entry in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        if entry.name in seen:  # the same distribution found twice on sys.path
            continue
        seen.add(entry.name)
        try:
            entry.load()(subparsers)
        except Exception as exc:  # a broken plug-in must not take the other commands down
            print(f"{PROG}: warning: command {entry.name!r} ({entry.value}) is unavailable: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the console script; returns the exit status (0 success, 1 failure, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args))
    except ChromatizeError as exc:
        from chromatize.failures import describe_failure

        print(f"{PROG}: error: {describe_failure(exc, 'cli').message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped early (e.g. `| head`)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the exit-time flush stays quiet
        return 141


def console_main() -> int:
    """The ``chromatize`` executable (and ``python -m chromatize``): :func:`main`, then a quicker
    exit. ``gc.freeze()`` moves everything still alive into the permanent generation, so the
    interpreter's shutdown does not walk torch's whole object graph once more: ~0.2 s of every
    run, a tenth of a small batch. Nothing is left open by then: outputs, the manifest and the
    worker pools are closed inside :func:`main`, and shutdown still flushes and joins as usual."""
    status = main()
    import gc

    gc.freeze()
    return status
