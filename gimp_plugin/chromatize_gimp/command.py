"""``chromatize gimp install|uninstall``: add the "Colorize (AI)…" plug-in to GIMP or remove it.

Registered with the ``chromatize`` console script through the ``chromatize.commands`` entry-point
group (``gimp = "chromatize_gimp.command:register"`` in pyproject.toml), so that the core never
imports the GIMP package.
"""

from __future__ import annotations

import argparse
from typing import Any

from chromatize_gimp.install import (
    DEFAULT_TIMEOUT_SECONDS,
    FLATPAK_APP_ID,
    GIMP_VERSIONS,
    default_plugins_dir,
    install,
    uninstall,
)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gimp-version", choices=GIMP_VERSIONS, default="3",
                        help="GIMP 3 (Python 3, default) or GIMP 2.10 (Python-Fu / gimpfu)")
    parser.add_argument("--plug-ins-dir", metavar="DIR",
                        help="plug-ins folder to use instead of the user's default "
                        "(e.g. one listed in GIMP's Preferences > Folders > Plug-ins)")
    parser.add_argument("--flatpak", action="store_true",
                        help=f"GIMP from Flathub ({FLATPAK_APP_ID}): use its config folder and "
                        "start the worker on the host with flatpak-spawn --host --watch-bus")
    parser.add_argument("--force", action="store_true",
                        help="replace/remove a 'chromatize-colorize' folder not made by chromatize")


def register(subparsers: Any) -> None:
    """Add the ``gimp`` sub-command (actions ``install`` and ``uninstall``) to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "gimp",
        help="install or remove the GIMP plug-in (Colors > Colorize (AI)…)",
        description="Install the GIMP plug-in into your GIMP plug-ins folder. It records the "
        "Python running this command: GIMP's own Python has no torch, so the plug-in starts "
        "'<this python> -m chromatize.worker' to colorize. Restart GIMP afterwards.",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", dest="gimp_action")
    inst = actions.add_parser("install", help="install or update the plug-in",
                              description="Install or update the plug-in.")
    _common(inst)
    inst.add_argument("--python", metavar="PATH",
                      help="Python that runs the worker (default: the one running this command)")
    inst.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_SECONDS, metavar="SECONDS",
                      help="stop a colorization that takes longer than this "
                      f"(default {DEFAULT_TIMEOUT_SECONDS})")
    rm = actions.add_parser("uninstall", help="remove the plug-in",
                            description="Remove the plug-in folder installed by chromatize.")
    _common(rm)
    parser.set_defaults(func=run, gimp_parser=parser)


def _install(args: argparse.Namespace) -> int:
    result = install(args.gimp_version, args.plug_ins_dir, python=args.python,
                     flatpak=args.flatpak, force=args.force, timeout_seconds=args.timeout)
    print(f"installed the GIMP {result.gimp_version} plug-in in {result.plugin_dir}")
    print(f"worker command: {' '.join(result.command)}")
    if args.flatpak:
        print("allow the sandboxed GIMP to start the worker on the host, once:\n"
              f"  flatpak override --user --talk-name=org.freedesktop.Flatpak {FLATPAK_APP_ID}")
    if args.plug_ins_dir is None and not args.flatpak:
        flatpak_dir = default_plugins_dir(args.gimp_version, flatpak=True)
        if flatpak_dir.parent.exists():
            print(f"note: a Flatpak GIMP is configured in {flatpak_dir.parent}; for it run "
                  "'chromatize gimp install --flatpak'")
    print("restart GIMP, then use Colors > Colorize (AI)…")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``chromatize gimp ACTION``; returns the exit code."""
    action = getattr(args, "gimp_action", None)
    if action == "install":
        return _install(args)
    if action == "uninstall":
        removed = uninstall(args.gimp_version, args.plug_ins_dir, flatpak=args.flatpak,
                            force=args.force)
        if removed is None:
            print("the plug-in is not installed there; nothing to remove")
        else:
            print(f"removed {removed}")
        return 0
    args.gimp_parser.print_help()
    return 2
