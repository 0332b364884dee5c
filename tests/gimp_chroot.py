"""A cached Debian 13 (trixie) root with GIMP 3, for running the GIMP plug-in tests headless.

Debian 12 ships GIMP 2.10 without Python-Fu, so the real-GIMP tests run GIMP 3.0 from trixie in a
chroot. The root is built once with ``debootstrap --variant=minbase`` plus
``apt-get install --no-install-recommends gimp gir1.2-gegl-0.4 gir1.2-babl-0.1 python3-numpy``
and cached OUTSIDE the clone, in ``<user cache dir>/chromatize/gimp-chroot/trixie-gimp3``
(override with ``CHROMATIZE_GIMP_CHROOT``); later runs reuse it (a marker file says it is
complete). Building needs root, ``debootstrap`` (apt package) and access to a Debian mirror
(the one named in the host's apt sources, or ``CHROMATIZE_DEBIAN_MIRROR``).

GIMP runs in a private mount namespace (``unshare --mount``) with /proc, /dev and a fresh /tmp
mounted; nothing is mounted on the host. chromatize's worker Python lives OUTSIDE the chroot:
the host's whole tree is bound read-only at ``/host`` inside, and the plug-in's recorded worker
command is ``chroot /host <host python> -m chromatize.worker``, so the worker runs in the host's
own userland (its libc, its venv, its editable install) whatever Python made the venv: a pyenv
build (the dev machine) as well as Debian's /usr/bin/python3 (CI), which could not simply be
bound at its own path because the chroot's /usr/bin/python3 is GIMP's Python 3.13. The test
folder (images, plug-in, weights) is bound read-write at its own path.

Command line (used by CI to pre-build): ``python tests/gimp_chroot.py build`` / ``path``.
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

SUITE = "trixie"
PACKAGES = ("gimp", "gir1.2-gegl-0.4", "gir1.2-babl-0.1", "python3-numpy")
READY_MARKER = ".chromatize-gimp-chroot-ready"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
GIMP_CONSOLE = "gimp-console-3.0"
CLEAN_ENV = ("HOME=/root", "PATH=/usr/bin:/bin:/usr/sbin:/sbin", "LANG=C.UTF-8")
#: Where the host's root is bound (read-only) inside the chroot.
HOST_MOUNT = "/host"
#: Prefix of the worker command that runs the host's Python from inside the chroot.
HOST_WORKER_PREFIX = ("/usr/sbin/chroot", HOST_MOUNT)


class ChrootUnavailable(RuntimeError):
    """The chroot cannot be built on this machine (not root, no debootstrap, ...)."""


def cache_root() -> Path:
    """Where the chroot lives: ``$CHROMATIZE_GIMP_CHROOT`` or the user cache dir."""
    override = os.environ.get("CHROMATIZE_GIMP_CHROOT")
    if override:
        return Path(override).resolve()
    try:
        from platformdirs import user_cache_dir

        base = Path(user_cache_dir("chromatize"))
    except ImportError:  # platformdirs is a dependency, but keep the script usable without it
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chromatize"
    return base / "gimp-chroot" / f"{SUITE}-gimp3"


def is_ready(root: Path) -> bool:
    return (root / READY_MARKER).is_file() and (root / "usr/bin" / GIMP_CONSOLE).exists()


def why_unrunnable() -> str | None:
    """A reason GIMP cannot be run in the chroot here, or None when it can."""
    if os.geteuid() != 0:
        return "running GIMP in the chroot needs root (chroot, mount namespaces)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return ("private mount namespaces are not permitted here (a container without "
                f"CAP_SYS_ADMIN?): unshare --mount said {probe.stderr.strip()!r}")
    return None


def why_unbuildable() -> str | None:
    """A reason the chroot cannot be built (or run) here, or None when it can."""
    reason = why_unrunnable()
    if reason is None and shutil.which("debootstrap") is None:
        reason = "debootstrap is not installed (apt-get install debootstrap)"
    return reason


def host_mirror() -> str:
    """The Debian mirror named in the host's apt sources (deb822 or one-line format)."""
    env = os.environ.get("CHROMATIZE_DEBIAN_MIRROR")
    if env:
        return env
    candidates: list[Path] = [Path("/etc/apt/sources.list")]
    sources_d = Path("/etc/apt/sources.list.d")
    if sources_d.is_dir():
        candidates += sorted(sources_d.glob("*.sources")) + sorted(sources_d.glob("*.list"))
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(r"^\s*(?:URIs:|deb)\s+(\S+)", text, re.MULTILINE):
            uri = match.group(1).rstrip("/")
            if re.search(r"/debian$", uri) and "security" not in uri:
                return uri
    return DEFAULT_MIRROR


def _run(cmd: Sequence[str], log: list[str], timeout: float) -> None:
    log.append("$ " + shlex.join(cmd))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    log.append(proc.stdout[-4000:])
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {shlex.join(cmd)}\n"
                           + proc.stdout[-4000:])


def _namespace_script(root: Path, inner: str, binds: Iterable[tuple[str, bool]] = (),
                      host_root: bool = False) -> str:
    """Shell code for ``unshare --mount``: mount things under ``root``, then run ``inner``.

    /proc, /dev and a fresh /tmp always; ``binds`` = (host path, read_only) mounted at the same
    path inside; ``host_root`` binds the host's whole tree read-only at ``/host``.
    """
    q = shlex.quote
    lines = ["set -e"]
    if host_root:  # first, so that the copy of the mount tree holds none of the mounts below
        target = q(str(root / HOST_MOUNT.lstrip("/")))
        lines += [f"mkdir -p {target}", f"mount --rbind / {target}",
                  f"mount -o remount,bind,ro {target}"]
    lines += [f"mount -t proc proc {q(str(root / 'proc'))}",
              f"mount --rbind /dev {q(str(root / 'dev'))}",
              f"mount -t tmpfs tmpfs {q(str(root / 'tmp'))}"]
    for path, read_only in binds:
        target = q(str(root / path.lstrip("/")))
        if Path(path).is_dir():
            lines.append(f"mkdir -p {target}")
        else:
            lines.append(f"mkdir -p $(dirname {target}) && touch {target}")
        lines.append(f"mount --bind {q(path)} {target}")
        if read_only:
            lines.append(f"mount -o remount,bind,ro {target}")
    lines.append(inner)
    return "\n".join(lines)


def build(root: Path | None = None, *, log: list[str] | None = None) -> Path:
    """Build the chroot if it is not cached yet; returns its path. Safe to call concurrently."""
    root = root or cache_root()
    log = log if log is not None else []
    if is_ready(root):
        return root
    reason = why_unbuildable()
    if reason:
        raise ChrootUnavailable(reason)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_ready(root):
            return root
        partial = root.with_name(root.name + ".partial")
        if partial.exists():
            shutil.rmtree(partial)
        _run(["debootstrap", "--variant=minbase", SUITE, str(partial), host_mirror()], log, 1800)
        shutil.copyfile("/etc/resolv.conf", partial / "etc/resolv.conf")
        apt_env = "env -i " + " ".join(CLEAN_ENV) + " DEBIAN_FRONTEND=noninteractive"
        inner = (f"chroot {shlex.quote(str(partial))} {apt_env} apt-get update -q && "
                 f"chroot {shlex.quote(str(partial))} {apt_env} apt-get install -y -q "
                 f"--no-install-recommends {' '.join(PACKAGES)} && "
                 f"chroot {shlex.quote(str(partial))} apt-get clean")
        _run(["unshare", "--mount", "sh", "-c", _namespace_script(partial, inner)], log, 3600)
        (partial / READY_MARKER).write_text(" ".join(PACKAGES) + "\n")
        if root.exists():
            shutil.rmtree(root)
        os.replace(partial, root)
    return root


def gimp_command(root: Path, code: str, *, gimprc: str | None = None,
                 binds: Iterable[tuple[str, bool]] = (), host_root: bool = True,
                 timeout: float = 240.0, extra_env: Sequence[str] = (),
                 home: str | None = None) -> list[str]:
    """The host command running GIMP 3 headless in the chroot on a python-fu-eval batch.

    With ``host_root`` the host's tree is visible read-only at :data:`HOST_MOUNT`, so a plug-in
    can start chromatize's worker in the host's own userland with
    :data:`HOST_WORKER_PREFIX` + the host's Python (see the module docstring). ``home`` gives
    GIMP a private configuration folder (a path inside a bound folder), so concurrent runs do
    not share the chroot's /root/.config/GIMP.
    """
    env = [*CLEAN_ENV, *([f"HOME={home}"] if home else []), *extra_env]
    gimp = ["chroot", str(root), "env", "-i", *env, GIMP_CONSOLE, "-i", "-n"]
    if gimprc:
        gimp += ["-g", gimprc]
    gimp += ["--batch-interpreter", "python-fu-eval", "-b", code, "--quit"]
    inner = "exec " + shlex.join(gimp)
    return ["timeout", "-k", "10", str(int(timeout)), "unshare", "--mount", "sh", "-c",
            _namespace_script(root, inner, binds, host_root)]


GIMP_GUI = "gimp-3.0"


def gimp_gui_command(root: Path, files: Sequence[str], *, display: str, home: str,
                     gimprc: str | None = None, binds: Iterable[tuple[str, bool]] = (),
                     extra_env: Sequence[str] = ()) -> list[str]:
    """The host command running GIMP 3's GUI (``gimp-3.0``) in the chroot on X ``display``
    (its socket folder /tmp/.X11-unix is bound into the chroot's fresh /tmp), opening
    ``files``. ``home`` is GIMP's private configuration folder (inside a bound folder), so that
    the dialog's last values and window positions do not leak between runs; the host's tree is
    at :data:`HOST_MOUNT` for the worker command."""
    env = ["HOME=" + home, "PATH=/usr/bin:/bin:/usr/sbin:/sbin", "LANG=C.UTF-8",
           "DISPLAY=" + display, "NO_AT_BRIDGE=1", *extra_env]
    gimp = ["chroot", str(root), "env", "-i", *env, GIMP_GUI, "--no-splash"]
    if gimprc:
        gimp += ["-g", gimprc]
    inner = "exec " + shlex.join([*gimp, *files])
    return ["unshare", "--mount", "sh", "-c",
            _namespace_script(root, inner, [*binds, ("/tmp/.X11-unix", False)], True)]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["path"]:
        print(cache_root())
        return 0
    if argv[:1] == ["build"]:
        log: list[str] = []
        try:
            root = build(log=log)
        except ChrootUnavailable as exc:
            print(f"cannot build the GIMP chroot: {exc}", file=sys.stderr)
            return 2
        except Exception:
            print("\n".join(log), file=sys.stderr)
            raise
        print(root)
        return 0
    print("usage: gimp_chroot.py build|path", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
