"""The GIMP 3 plug-in through GIMP's real GUI: ``gimp-3.0`` under Xvfb + openbox in the cached
Debian 13 chroot, driven like a user would with ``xdotool``, screenshots with ImageMagick's
``import`` (see ``../shared/notes/gimp-gui-under-xvfb.md``).

One GIMP session (module fixture) opens a real photo; then, in order:

1. the dialog opens in interactive run mode from GIMP's action search ("/", the same entry as
   Colors > Colorize (AI)…); its screenshot is checked for size and content, and GIMP logs
   no mnemonic clash for it;
2. OK starts a long run (``eccv16`` at render size 1024, the dialog's values seeded through
   GIMP's last-values file), which is cancelled mid-run with the Cancel button of GIMP's
   progress bar: no chromatize process is left 2 s later and the image is unchanged;
3. the dialog again, now with the defaults (model ``mobile``): its preview shows the colours
   (a small rendering in the dialog), then OK runs it and the result layer appears (the
   window title counts the layers).

GIMP's settings live in a scratch home inside the test folder, so runs do not leak. Needs root,
the chroot (``tests/gimp_chroot.py``) and, on the host, Xvfb, openbox, xdotool and ImageMagick
(``.ci/run`` installs them); locally a machine without them skips, in CI (CI set) it fails.

``python tests/test_gimp_gui.py --screenshot docs/gimp-dialog.png`` makes the README's
screenshot of the dialog the same way.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gimp_chroot
import numpy as np
import pytest
from PIL import Image
from worker_helpers import random_eccv16_weights

from chromatize_gimp.install import install

pytestmark = [pytest.mark.gimp, pytest.mark.slow]

HOST_TOOLS = ("Xvfb", "openbox", "xdotool", "import")
SCREEN = (1600, 1000)
DIALOG_TITLE = "Colorize (AI)"
IMAGE_WINDOW = r"\[photo\].*GIMP"
#: Where GIMP 3.0.4's default Layers dock lists the layers (thumbnail and name) in a 1500x920
#: image window at the screen's top left: (left, top, right, bottom) in screen pixels.
LAYERS_LIST = (1290, 690, 1500, 800)
#: Where GIMP 3.0.4 puts the progress bar's Cancel button in a 1500x920 image window with the
#: default docks (pixels from the window's right and bottom edges).
CANCEL_FROM_RIGHT, CANCEL_FROM_BOTTOM = 273, 18


def why_unusable() -> str | None:
    """Why the GUI test cannot run here, or None."""
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    if missing:
        return ("missing on the host: " + ", ".join(missing)
                + " (apt-get install xvfb openbox xdotool imagemagick)")
    root = gimp_chroot.cache_root()
    if not gimp_chroot.is_ready(root):
        return gimp_chroot.why_unbuildable() or "the GIMP chroot is not built yet"
    if not (root / "usr/bin" / gimp_chroot.GIMP_GUI).exists():
        return "the chroot has no gimp-3.0"
    return gimp_chroot.why_unrunnable()


def _free_display() -> str:
    for number in range(91, 140):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and \
                not Path(f"/tmp/.X{number}-lock").exists():
            return f":{number}"
    raise RuntimeError("no free X display number")


def photo(path: Path) -> None:
    """A gray 'photo' (soft shapes and a gradient), 640x426."""
    y, x = np.mgrid[0:426, 0:640].astype(np.float64)
    value = 0.45 + 0.3 * np.sin(x / 37.0) * np.cos(y / 29.0) + 0.2 * (x / 640.0 - 0.5)
    value -= 0.25 * np.exp(-((x - 320) ** 2 + (y - 200) ** 2) / (2 * 70.0 ** 2))
    Image.fromarray(np.clip(value * 255, 0, 255).astype(np.uint8), "L").save(path)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _processes() -> dict[int, tuple[int, str]]:
    """``{pid: (parent pid, command line)}`` of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                "utf-8", "replace")
        except OSError:
            continue
        table[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmdline)
    return table


class GimpGui:
    """Xvfb + openbox + GIMP 3 in the chroot, and the xdotool/import calls that drive them."""

    def __init__(self, work: Path, files: list[str]) -> None:
        self.work = work
        self.display = _free_display()
        self.env = {**os.environ, "DISPLAY": self.display}
        self.log = open(work / "gimp.log", "w")  # noqa: SIM115  (closed in close())
        self._procs: list[subprocess.Popen[bytes]] = []
        self._start(["Xvfb", self.display, "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24",
                     "-nolisten", "tcp"])
        number = self.display[1:]
        self._wait(lambda: Path(f"/tmp/.X11-unix/X{number}").exists(), 20, "Xvfb")
        self._start(["openbox"])
        command = gimp_chroot.gimp_gui_command(
            gimp_chroot.cache_root(), files, display=self.display, home=str(work / "home"),
            gimprc=str(work / "gimprc"), binds=[(str(work), False)],
            extra_env=("OMP_NUM_THREADS=1",))
        self.gimp = self._start(["nice", "-n", "5", *command])

    def _start(self, command: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(command, env=self.env, stdout=self.log, stderr=self.log,
                                start_new_session=True)
        self._procs.append(proc)
        return proc

    @staticmethod
    def _wait(condition: Any, seconds: float, what: str) -> Any:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out after {seconds} s waiting for {what}")

    def xdotool(self, *args: str) -> str:
        proc = subprocess.run(["xdotool", *args], env=self.env, capture_output=True, text=True,
                              timeout=30)
        return proc.stdout.strip()

    def windows(self, pattern: str) -> list[str]:
        return [w for w in self.xdotool("search", "--name", pattern).split() if w]

    def window(self, pattern: str, seconds: float = 30) -> str:
        return self._wait(lambda: (self.windows(pattern) or [None])[0], seconds,
                          f"a window named {pattern!r}")

    def title(self, window: str) -> str:
        return self.xdotool("getwindowname", window)

    def geometry(self, window: str) -> tuple[int, int, int, int]:
        out = self.xdotool("getwindowgeometry", "--shell", window)
        values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        return (int(values["X"]), int(values["Y"]), int(values["WIDTH"]),
                int(values["HEIGHT"]))

    def activate(self, window: str) -> None:
        self.xdotool("windowactivate", "--sync", window)
        time.sleep(0.2)

    def key(self, *keys: str) -> None:
        self.xdotool("key", "--delay", "60", *keys)

    def screenshot(self, path: Path, window: str | None = None) -> Image.Image:
        """The screen (or ``window``) as a PNG at ``path``."""
        subprocess.run(["import", "-display", self.display, "-window", window or "root",
                        str(path)], check=True, timeout=60, env=self.env)
        return Image.open(path).convert("RGB")

    def close(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(10)
        self.log.close()

    # ----------------------------------------------------------------- GIMP

    def image_window(self) -> str:
        return self.window(IMAGE_WINDOW, 120)

    def ready(self) -> str:
        """Wait for the photo's window, close the welcome dialog, give the window a fixed
        size; returns the image window."""
        window = self.image_window()
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:  # GIMP 3 greets a new version's first start
            welcome = self.windows("Welcome to GIMP")
            if welcome:
                self.xdotool("windowclose", welcome[0])
                break
            time.sleep(0.3)
        self.xdotool("windowmove", window, "0", "0")
        self.xdotool("windowsize", window, "1500", "920")
        time.sleep(1.0)
        return window

    def open_dialog(self, window: str) -> str:
        """Colorize (AI)… through GIMP's action search (the menu entry's action); returns the
        dialog's window."""
        self.activate(window)
        self.xdotool("mousemove", "700", "500")
        self.key("slash")
        self.window("^Search Actions$", 15)
        self.xdotool("type", "--delay", "50", "colorize (ai")
        time.sleep(1.0)
        self.key("Return")
        return self.window("^" + re.escape(DIALOG_TITLE) + "$", 30)

    def press_ok(self, dialog: str) -> None:
        self.activate(dialog)
        self.key("alt+o")

    def plugin_and_workers(self) -> tuple[list[int], list[int]]:
        """PIDs of the running plug-in processes of this GIMP and of their chromatize workers."""
        table = _processes()

        def under_gimp(pid: int) -> bool:
            seen = 0
            while pid > 1 and seen < 50:
                if pid == self.gimp.pid:
                    return True
                pid, seen = table.get(pid, (0, ""))[0], seen + 1
            return False

        plugins = [pid for pid, (_, cmd) in table.items()
                   if "chromatize-colorize.py" in cmd and under_gimp(pid)]
        workers = [pid for pid, (parent, cmd) in table.items()
                   if "chromatize.worker" in cmd and (parent in plugins or under_gimp(pid))]
        return plugins, workers


def _write_inputs(work: Path) -> None:
    photo(work / "photo.png")
    (work / "home").mkdir()
    install("3", work / "plug-ins", command_prefix=gimp_chroot.HOST_WORKER_PREFIX)
    (work / "gimprc").write_text(
        f'(plug-in-path "${{gimp_dir}}/plug-ins:${{gimp_plug_in_dir}}/plug-ins:{work}/plug-ins")'
        "\n(show-welcome-dialog no)\n")


@pytest.fixture(scope="module")
def gui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GimpGui]:
    reason = why_unusable()
    if reason:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            f"cannot run GIMP's GUI here: {reason}")
    work = tmp_path_factory.mktemp("gimp-gui")
    _write_inputs(work)
    shutil.copyfile(random_eccv16_weights(tmp_path_factory.getbasetemp()),
                    work / "eccv16_random.pth")
    session = GimpGui(work, [str(work / "photo.png")])
    try:
        session.state = {}  # type: ignore[attr-defined]
        yield session
    finally:
        session.close()


def _log(gui: GimpGui) -> str:
    return (gui.work / "gimp.log").read_text(errors="replace")[-4000:]


@pytest.fixture()
def fresh_gui(tmp_path: Path) -> Iterator[GimpGui]:
    """A GIMP session of its own on the gray photo (the module's session changes its image)."""
    reason = why_unusable()
    if reason:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            f"cannot run GIMP's GUI here: {reason}")
    _write_inputs(tmp_path)
    random_eccv16_weights(tmp_path)  # eccv16_random.pth, where GIMP sees it
    session = GimpGui(tmp_path, [str(tmp_path / "photo.png")])
    try:
        yield session
    finally:
        session.close()


def test_layers_thumbnail_shows_the_colours_after_an_in_place_run(fresh_gui: GimpGui) -> None:
    """Issue 18 item 9: after an in-place run on a grayscale photo (converted to RGB in the
    same undo step) the Layers dialog's thumbnail stayed gray for minutes while the canvas was
    in colour. It must show the colours right away."""
    gui = fresh_gui
    window = gui.ready()
    seed_last_values(gui, model='"eccv16"', device='"cpu"', render_size="64",
                     output='"in-place"',
                     weights=f'"{(gui.work / "eccv16_random.pth").as_uri()}"')

    def thumbnail_colour(name: str) -> float:
        return colorful_share(gui.screenshot(gui.work / f"{name}.png").crop(LAYERS_LIST))

    assert thumbnail_colour("layers-before") == 0.0  # the gray photo's thumbnail
    gui.press_ok(gui.open_dialog(window))
    gui._wait(lambda: "RGB color" in gui.title(window) and "1 layer" in gui.title(window), 90,
              "the in-place result (title: " + gui.title(window) + ")\n" + _log(gui))
    gui._wait(lambda: gui.plugin_and_workers() == ([], []), 20, "the plug-in to end")
    gui._wait(lambda: thumbnail_colour("layers-after") > 0.01, 5,
              "the Layers thumbnail to show the colours (see layers-after.png)")


def test_dialog_opens_for_a_real_image_and_looks_right(gui: GimpGui) -> None:
    window = gui.ready()
    # the values the next test's long run needs, as if the user had chosen them before
    seed_last_values(gui, model='"eccv16"', device='"cpu"', render_size="1024",
                     weights=f'"{(gui.work / "eccv16_random.pth").as_uri()}"')
    assert "1 layer" in gui.title(window)
    dialog = gui.open_dialog(window)
    gui.xdotool("mousemove", str(SCREEN[0] - 5), str(SCREEN[1] - 5))  # no tooltip in the shot
    time.sleep(1.5)
    shot = gui.screenshot(gui.work / "dialog.png", dialog)
    assert colorful_share(shot) < 0.02  # the preview is still being computed: gray
    width, height = shot.size
    assert 380 <= width <= 1200 and 300 <= height <= 1000, shot.size
    pixels = np.asarray(shot, dtype=np.float64)
    assert pixels.std() > 15  # text and controls, not an empty or unpainted window
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 30
    assert "duplicate mnemonic" not in _log(gui), _log(gui)
    gui.state["dialog"] = dialog  # type: ignore[attr-defined]


def _settings_file(gui: GimpGui) -> Path:
    """GIMP's last values of the procedure (read when the dialog opens for an image that has
    no values of its own yet; a successful run also stores them in the image)."""
    folder = gui.work / "home" / ".config" / "GIMP" / "3.0" / "plug-in-settings"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "GimpProcedureConfigRun-plug-in-chromatize-colorize.last"


def seed_last_values(gui: GimpGui, **values: str) -> None:
    """Write GIMP's last-values file with ``values`` (GIMP's config syntax per setting)."""
    lines = "".join(f"({name.replace('_', '-')} {value})\n" for name, value in values.items())
    _settings_file(gui).write_text(f"# settings\n\n{lines}\n# end of settings\n")


def test_cancel_mid_run_leaves_no_worker_and_the_image_unchanged(gui: GimpGui) -> None:
    dialog = gui.state.get("dialog")  # type: ignore[attr-defined]
    if dialog is None:
        pytest.fail("the dialog did not open (see the test before)")
    window = gui.image_window()
    gui.press_ok(dialog)
    gui._wait(lambda: gui.plugin_and_workers()[1], 30, "the worker to start\n" + _log(gui))
    # A few seconds in: the model loaded and the network running. eccv16 at 1024 takes minutes in
    # torch on one core but well under 12 s in ONNX Runtime, so do not wait longer than this.
    time.sleep(4.0)
    plugins, workers = gui.plugin_and_workers()
    gui.screenshot(gui.work / "running.png")
    assert plugins and workers, "the run ended before it could be cancelled\n" + _log(gui)
    # GIMP's own Cancel: the button at the right end of the progress bar, under the canvas
    # (left of the docks; the window has the fixed size ready() gave it)
    _, _, width, height = gui.geometry(window)
    gui.xdotool("mousemove", "--window", window, str(width - CANCEL_FROM_RIGHT),
                str(height - CANCEL_FROM_BOTTOM), "click", "1")
    cancelled = time.monotonic()
    how = "GIMP's Cancel button"
    try:
        gui._wait(lambda: not any(_alive(pid) for pid in plugins), 3, "GIMP to end the plug-in")
    except AssertionError:  # the button was not where we clicked: end it as GIMP does
        how = "SIGKILL to the plug-in (as GIMP's Cancel does)"
        for pid in plugins:
            os.kill(pid, signal.SIGKILL)
        cancelled = time.monotonic()
    deadline = cancelled + 2.0
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.05)
    left = [pid for pid in workers + plugins if _alive(pid)]
    assert not left, f"still running 2 s after {how}: {left}"
    time.sleep(1.0)
    title = gui.title(window)
    assert "1 layer" in title and "Grayscale" in title, title  # not even converted to RGB
    assert gui.gimp.poll() is None  # GIMP itself is fine
    gui.screenshot(gui.work / "after-cancel.png")
    gui.state["cancelled_by"] = how  # type: ignore[attr-defined]
    print(f"\ncancelled with {how}")


def mnemonic(setting: str) -> str:
    """The Alt+letter of a setting's control in the dialog (as the plug-in assigns them)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "gimp_plugin"
                           / "chromatize_gimp" / "plugin"))
    import chromatize_flow

    from chromatize_gimp.install import plugin_settings

    fields = chromatize_flow.dialog_fields(plugin_settings())
    labels = chromatize_flow.mnemonic_labels([field["label"] for field in fields])
    label = labels[[field["name"] for field in fields].index(setting)]
    return label[label.index("_") + 1].lower()


def colorful_share(shot: Image.Image) -> float:
    """The share of clearly coloured pixels (the dialog itself is gray)."""
    pixels = np.asarray(shot, dtype=np.int16)
    return float(((pixels.max(axis=2) - pixels.min(axis=2)) > 30).mean())


def test_preview_shows_the_colors_then_ok_adds_the_result_layer(gui: GimpGui) -> None:
    window = gui.image_window()
    seed_last_values(gui)  # the defaults: model mobile, its own render size
    dialog = gui.open_dialog(window)
    gui.xdotool("mousemove", str(SCREEN[0] - 5), str(SCREEN[1] - 5))
    shots = []

    def preview_shown() -> bool:
        shots.append(gui.screenshot(gui.work / "dialog-preview.png", dialog))
        return colorful_share(shots[-1]) > 0.02

    gui._wait(preview_shown, 60, "the colorized preview in the dialog\n" + _log(gui))
    # the preview follows the settings: saturation 0 (typed through its Alt+letter) is gray
    gui.activate(dialog)
    gui.key(f"alt+{mnemonic('saturation')}", "ctrl+a")
    gui.xdotool("type", "--delay", "60", "0")
    gui.key("Tab")
    gui._wait(lambda: colorful_share(gui.screenshot(gui.work / "dialog-gray.png", dialog))
              < 0.002, 60, "the preview to follow 'Saturation' 0\n" + _log(gui))
    started = time.monotonic()
    gui.press_ok(dialog)
    gui._wait(lambda: "2 layers" in gui.title(window), 90,
              "the colorized layer (title: " + gui.title(window) + ")\n" + _log(gui))
    print(f"\ndefault run took {time.monotonic() - started:.1f} s")
    assert "RGB" in gui.title(window)  # the gray photo was converted in the same step
    gui._wait(lambda: gui.plugin_and_workers() == ([], []), 20, "the plug-in to end")
    gui.screenshot(gui.work / "after-ok.png")


def main(argv: list[str]) -> int:
    """``--screenshot PATH``: open the dialog on the test photo and save its screenshot."""
    if len(argv) != 2 or argv[0] != "--screenshot":
        print("usage: python tests/test_gimp_gui.py --screenshot docs/gimp-dialog.png",
              file=sys.stderr)
        return 2
    reason = why_unusable()
    if reason:
        print(f"cannot run GIMP's GUI here: {reason}", file=sys.stderr)
        return 2
    import tempfile

    with tempfile.TemporaryDirectory(prefix="chromatize-gimp-shot-") as folder:
        work = Path(folder)
        _write_inputs(work)
        session = GimpGui(work, [str(work / "photo.png")])
        try:
            dialog = session.open_dialog(session.ready())
            session.xdotool("mousemove", str(SCREEN[0] - 5), str(SCREEN[1] - 5))
            session._wait(lambda: colorful_share(session.screenshot(work / "dialog.png",
                                                                    dialog)) > 0.02,
                          90, "the preview")
            time.sleep(1.0)
            session.screenshot(work / "dialog.png", dialog)
            shutil.copyfile(work / "dialog.png", argv[1])
        finally:
            session.close()
    print(f"wrote {argv[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
