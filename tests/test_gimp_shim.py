"""The plug-in's host-neutral layer and colorize flow without GIMP, and the GIMP 2.10 variant.

- A recording in-memory host (:class:`RecordingHost`) drives ``chromatize_flow`` with the real
  worker client and the real worker: refusals, one undo group holding every change (undoing the
  group restores the original), failures changing nothing, selections, progress.
- A fake ``gimpfu`` module (GIMP 2.10's Python-Fu is not installable on Debian 12/13) records
  what ``gimp2_plugin.py`` registers, and a small in-memory GIMP 2.10 (pixel regions with shadow
  tiles, PDB calls) runs the registered function with the real worker.
- The files GIMP 2.10 runs are checked to be Python 2.7 compatible with ``vermin``.
"""

from __future__ import annotations

import copy
import json
import os
import runpy
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from worker_helpers import (
    PLUGIN_SOURCE,
    WORKER_COMMAND,
    WORKER_ENV,
    gray_test_image,
    lab,
    lightness_of_gray,
    mean_chroma,
    random_eccv16_weights,
    random_mobile_weights,
)

from chromatize_gimp.install import install, plugin_settings

sys.path.insert(0, str(PLUGIN_SOURCE))
import chromatize_client  # noqa: E402
import chromatize_flow  # noqa: E402
import chromatize_shim  # noqa: E402

#: What the installer writes into chromatize-worker.json for the dialog.
SCHEMA = json.loads(json.dumps(plugin_settings()))
PY27_FILES = ["chromatize_shim.py", "chromatize_flow.py", "chromatize_client.py",
              "chromatize_shim_gimpfu.py", "gimp2_plugin.py"]


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_eccv16_weights(tmp_path_factory.getbasetemp())


def worker_client() -> chromatize_client.WorkerClient:
    return chromatize_client.WorkerClient(WORKER_COMMAND, env=WORKER_ENV)


def settings(weights: Path | str, **extra: Any) -> dict[str, Any]:
    return chromatize_flow.make_settings(SCHEMA, model="eccv16", weights=str(weights),
                                         render_size=32, device="cpu", **extra)


# ------------------------------------------------------------------ recording host


class RecordingHost(chromatize_shim.Host):
    """An in-memory image (float32 layers) that records every call and can undo one group."""

    sample_dtype = "float32"
    MUTATING = ("convert_to_rgb", "add_layer_above", "write_pixels", "set_visible")

    def __init__(self, mode: str, layers: list[dict[str, Any]],
                 selection: tuple[int, int, int, int] | None = None) -> None:
        self.mode = mode
        self.layers = layers  # top first; dicts with name, kind, pixels (H, W, C), offsets
        self.selection = selection  # image rectangle, or None = nothing selected
        self.calls: list[str] = []
        self.depth = 0
        self.groups = 0
        self.outside_group: list[str] = []
        self.progress: list[float] = []
        self.texts: list[str] = []
        self._snapshot: tuple[str, list[dict[str, Any]]] | None = None

    def _record(self, name: str) -> None:
        self.calls.append(name)
        if name in self.MUTATING and self.depth == 0:
            self.outside_group.append(name)

    def state(self) -> tuple[str, list[dict[str, Any]]]:
        return self.mode, copy.deepcopy(self.layers)

    def undo(self) -> None:
        """What Ctrl+Z does for a group: restore the state from before the group started."""
        assert self._snapshot is not None
        self.mode, self.layers = self._snapshot

    def image_mode(self) -> str:
        return self.mode

    def convert_to_rgb(self) -> None:
        self._record("convert_to_rgb")
        for layer in self.layers:
            px = layer["pixels"]
            if px.shape[2] in (1, 2):
                rgb = np.repeat(px[..., :1], 3, axis=2)
                layer["pixels"] = np.concatenate([rgb, px[..., 1:]], axis=2)
        self.mode = chromatize_shim.MODE_RGB

    def undo_group_start(self) -> None:
        self._record("undo_group_start")
        if self.depth == 0:
            self._snapshot = self.state()
        self.depth += 1
        self.groups += 1

    def undo_group_end(self) -> None:
        self._record("undo_group_end")
        self.depth -= 1

    def drawable_kind(self, drawable: dict[str, Any]) -> str:
        return drawable["kind"]

    def drawable_name(self, drawable: dict[str, Any]) -> str:
        return drawable["name"]

    def drawable_size(self, drawable: dict[str, Any]) -> tuple[int, int]:
        return drawable["pixels"].shape[1], drawable["pixels"].shape[0]

    def drawable_id(self, drawable: dict[str, Any]) -> int:
        return id(drawable)

    def has_alpha(self, drawable: dict[str, Any]) -> bool:
        return drawable["pixels"].shape[2] in (2, 4)

    def hint_pixels(self, hints_layer: dict[str, Any], drawable: dict[str, Any]) -> bytes:
        """The hints layer (float RGBA) as 8-bit RGBA over ``drawable``, transparent beyond."""
        self._record("hint_pixels")
        width, height = self.drawable_size(drawable)
        out = np.zeros((height, width, 4), np.uint8)
        source = np.round(hints_layer["pixels"] * 255).astype(np.uint8)
        dx = hints_layer["offsets"][0] - drawable["offsets"][0]
        dy = hints_layer["offsets"][1] - drawable["offsets"][1]
        sh, sw = source.shape[:2]
        x0, y0 = max(0, dx), max(0, dy)
        x1, y1 = min(width, dx + sw), min(height, dy + sh)
        if x1 > x0 and y1 > y0:
            out[y0:y1, x0:x1] = source[y0 - dy:y1 - dy, x0 - dx:x1 - dx]
        return out.tobytes()

    def set_visible(self, drawable: dict[str, Any], visible: bool) -> None:
        self._record("set_visible")
        drawable["visible"] = visible

    def read_pixels(self, drawable: dict[str, Any]) -> tuple[bytes, int]:
        self._record("read_pixels")
        px = drawable["pixels"]
        return px.astype("<f4").tobytes(), px.shape[2]

    def _mask(self, drawable: dict[str, Any]) -> np.ndarray:
        h, w = drawable["pixels"].shape[:2]
        if self.selection is None:
            return np.ones((h, w), bool)
        ox, oy = drawable["offsets"]
        sx, sy, sw, sh = self.selection
        y, x = np.mgrid[0:h, 0:w]
        return (x + ox >= sx) & (x + ox < sx + sw) & (y + oy >= sy) & (y + oy < sy + sh)

    def selection_bounds(self, drawable: dict[str, Any]) -> tuple[int, int, int, int] | None:
        mask = self._mask(drawable)
        if not mask.any():
            return None
        ys, xs = np.nonzero(mask)
        return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), \
            int(ys.max() - ys.min() + 1)

    def add_layer_above(self, drawable: dict[str, Any], name: str) -> dict[str, Any]:
        self._record("add_layer_above")
        layer = copy.deepcopy(drawable)
        layer["name"] = name
        self.layers.insert(self.layers.index(drawable), layer)
        return layer

    def write_pixels(self, drawable: dict[str, Any], rect: tuple[int, int, int, int],
                     data: bytes, channels: int) -> None:
        self._record("write_pixels")
        x, y, w, h = rect
        block = np.frombuffer(data, dtype="<f4").reshape(h, w, channels)
        mask = self._mask(drawable)[y:y + h, x:x + w]
        target = drawable["pixels"]
        assert target.shape[2] == channels
        target[y:y + h, x:x + w][mask] = block[mask]

    def progress_start(self, text: str) -> None:
        self.calls.append("progress_start")

    def progress_update(self, fraction: float) -> None:
        self.progress.append(fraction)

    def progress_end(self) -> None:
        self.calls.append("progress_end")

    def progress_set_text(self, text: str) -> None:
        self.texts.append(text)

    def message(self, text: str) -> None:
        self.calls.append("message")

    def flush(self) -> None:
        self.calls.append("flush")


def gray_layer(name: str, height: int = 24, width: int = 32, offsets=(0, 0)) -> dict[str, Any]:
    return {"name": name, "kind": chromatize_shim.KIND_LAYER, "offsets": offsets,
            "pixels": gray_test_image(height, width)[..., None].copy()}


def test_flow_puts_every_change_in_one_undo_group(weights: Path) -> None:
    bottom = gray_layer("bottom")
    top = gray_layer("top", 16, 20, offsets=(5, 3))
    host = RecordingHost(chromatize_shim.MODE_GRAY, [top, bottom])
    original = host.state()
    count = chromatize_flow.colorize_drawables(host, [bottom, top], settings(weights),
                                               worker_client())
    assert count == 2
    assert host.groups == 1 and host.outside_group == []
    group = host.calls[host.calls.index("undo_group_start"):host.calls.index("undo_group_end")]
    assert group[1] == "convert_to_rgb"  # the gray image is converted inside the group
    assert group.count("add_layer_above") == 2 and group.count("write_pixels") == 2
    assert "read_pixels" not in group  # everything was computed before the image changed
    assert [layer["name"] for layer in host.layers] == [
        "top (colorized)", "top", "bottom (colorized)", "bottom"]
    new = host.layers[2]["pixels"]
    assert mean_chroma(new) > 2.0
    assert np.abs(lab(new)[..., 0] - lightness_of_gray(bottom["pixels"][..., 0])).max() < 0.05
    assert host.progress == sorted(host.progress) and host.progress[-1] == 1.0
    assert host.calls[-2:] == ["progress_end", "flush"]
    # each stage is named next to the bar, the write into GIMP last
    assert host.texts[-1] == "Colorize (AI): Writing back…"
    assert any("Layer 1 of 2: Loading the model" in text for text in host.texts)
    assert any("Layer 2 of 2: Colorizing" in text for text in host.texts)

    host.undo()
    restored_mode, restored_layers = host.state()
    assert restored_mode == original[0]
    assert [layer["name"] for layer in restored_layers] == ["top", "bottom"]
    for got, expected in zip(restored_layers, original[1], strict=True):
        np.testing.assert_array_equal(got["pixels"], expected["pixels"])


def test_flow_worker_failure_changes_nothing(tmp_path: Path) -> None:
    layer = gray_layer("photo")
    host = RecordingHost(chromatize_shim.MODE_GRAY, [layer])
    original = host.state()
    with pytest.raises(chromatize_shim.PluginError) as info:
        chromatize_flow.colorize_drawables(host, [layer], settings(tmp_path / "missing.pth"),
                                           worker_client())
    assert info.value.kind == "model_missing" and "missing.pth" in info.value.message
    assert info.value.message.endswith("Choose another file in 'Weights file', or clear it to "
                                       "use the model's own weights.")
    assert not any(call in RecordingHost.MUTATING for call in host.calls)
    assert "undo_group_start" not in host.calls and "progress_end" in host.calls
    np.testing.assert_array_equal(host.layers[0]["pixels"], original[1][0]["pixels"])


@pytest.mark.parametrize(("kind", "needle"), [
    (chromatize_shim.KIND_GROUP, "is a layer group"),
    (chromatize_shim.KIND_CHANNEL, "is a channel"),
    (chromatize_shim.KIND_LAYER_MASK, "is a layer mask"),
])
def test_flow_refuses_non_layers_before_anything_happens(kind: str, needle: str) -> None:
    good, bad = gray_layer("good"), gray_layer("odd")
    bad["kind"] = kind
    host = RecordingHost(chromatize_shim.MODE_GRAY, [bad, good])
    with pytest.raises(chromatize_shim.PluginError) as info:
        chromatize_flow.colorize_drawables(host, [good, bad], settings("unused.pth"),
                                           client=None)
    assert f'"odd" {needle}' in info.value.message
    assert host.calls == []


def test_flow_refuses_a_selection_that_misses_the_layers() -> None:
    layer = gray_layer("photo")
    host = RecordingHost(chromatize_shim.MODE_GRAY, [layer], selection=(100, 100, 5, 5))
    with pytest.raises(chromatize_shim.PluginError, match="selection does not touch"):
        chromatize_flow.colorize_drawables(host, [layer], settings("unused.pth"), client=None)
    with pytest.raises(chromatize_shim.PluginError, match="Select a layer"):
        chromatize_flow.colorize_drawables(host, [], settings("unused.pth"), client=None)


# ------------------------------------------------------------------ colour hints


@pytest.fixture(scope="session")
def mobile_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_mobile_weights(tmp_path_factory.getbasetemp())


#: Dots on the hints layer, in image coordinates: (x, y), 8-bit sRGB colour (2x2 each).
HINT_DOTS = [((10, 8), (70, 150, 70)), ((17, 12), (185, 70, 60))]


def rgb_photo(name: str = "photo") -> dict[str, Any]:
    """A gray ramp around mid-gray in an RGB layer (where the hint colours exist)."""
    x = np.arange(32, dtype=np.float32)[None, :]
    gray = np.repeat(0.42 + 0.16 * x / 31, 24, axis=0)
    return {"name": name, "kind": chromatize_shim.KIND_LAYER, "offsets": (0, 0),
            "pixels": np.repeat(gray[..., None], 3, axis=2).astype(np.float32)}


def hints_layer(offsets: tuple[int, int] = (8, 6)) -> dict[str, Any]:
    """A transparent 30x24 RGBA layer at ``offsets`` with HINT_DOTS painted."""
    pixels = np.zeros((24, 30, 4), np.float32)
    for (x, y), rgb in HINT_DOTS:
        lx, ly = x - offsets[0], y - offsets[1]
        pixels[ly:ly + 2, lx:lx + 2] = (*(np.array(rgb) / 255.0), 1.0)
    return {"name": "hints", "kind": chromatize_shim.KIND_LAYER, "offsets": offsets,
            "pixels": pixels, "visible": True}


def hint_settings(weights: Path, layer: Any, **extra: Any) -> dict[str, Any]:
    return chromatize_flow.make_settings(SCHEMA, model="mobile", weights=str(weights),
                                         render_size=32, device="cpu", hints_layer=layer,
                                         **extra)


def test_flow_hints_layer_sets_colours_in_one_undo_group(mobile_weights: Path) -> None:
    photo, hints = rgb_photo(), hints_layer()
    host = RecordingHost(chromatize_shim.MODE_RGB, [hints, photo])
    original = host.state()
    settings_ = hint_settings(mobile_weights, hints, output="in-place", hide_hints=True)
    assert chromatize_flow.colorize_drawables(host, [photo], settings_, worker_client()) == 1
    out = photo["pixels"]
    source_l = lab(original[1][1]["pixels"])[..., 0]
    for (x, y), rgb in HINT_DOTS:  # the hint's colour, the photo's lightness
        got = lab(out[y:y + 2, x:x + 2])
        hint_ab = lab(np.array(rgb, np.float64)[None, None] / 255.0)[0, 0, 1:]
        assert np.median(np.hypot(*(got[..., 1:] - hint_ab).reshape(-1, 2).T)) <= 6.0
        assert np.abs(got[..., 0] - source_l[y:y + 2, x:x + 2]).max() < 0.05
    # the hints layer keeps its pixels; hidden (asked for) inside the one undo group
    np.testing.assert_array_equal(hints["pixels"], original[1][0]["pixels"])
    assert hints["visible"] is False
    assert host.groups == 1 and host.outside_group == []
    group = host.calls[host.calls.index("undo_group_start"):host.calls.index("undo_group_end")]
    assert group[-1] == "set_visible" and "hint_pixels" not in group
    host.undo()
    mode, layers = host.state()
    assert layers[0]["visible"] is True
    for got, expected in zip(layers, original[1], strict=True):
        np.testing.assert_array_equal(got["pixels"], expected["pixels"])


def test_flow_hints_layer_stays_visible_unless_asked(mobile_weights: Path) -> None:
    photo, hints = rgb_photo(), hints_layer(offsets=(-4, -2))  # partly outside the photo
    host = RecordingHost(chromatize_shim.MODE_RGB, [hints, photo])
    chromatize_flow.colorize_drawables(host, [photo], hint_settings(mobile_weights, hints),
                                       worker_client())
    assert hints["visible"] is True and "set_visible" not in host.calls
    assert [layer["name"] for layer in host.layers] == ["hints", "photo (colorized)", "photo"]


def test_flow_hints_outside_the_selection_change_nothing_there(mobile_weights: Path) -> None:
    photo, hints = rgb_photo(), hints_layer()
    original = photo["pixels"].copy()
    host = RecordingHost(chromatize_shim.MODE_RGB, [hints, photo], selection=(0, 0, 14, 24))
    chromatize_flow.colorize_drawables(host, [photo], hint_settings(mobile_weights, hints,
                                                                    output="in-place"),
                                       worker_client())
    (x, y), rgb = HINT_DOTS[0]  # inside the selection: the hint's colour
    hint_ab = lab(np.array(rgb, np.float64)[None, None] / 255.0)[0, 0, 1:]
    got = lab(photo["pixels"][y:y + 2, x:x + 2])[..., 1:].reshape(-1, 2)
    assert np.median(np.hypot(*(got - hint_ab).T)) <= 6.0
    # outside it nothing changes, not even at the other hint
    np.testing.assert_array_equal(photo["pixels"][:, 14:], original[:, 14:])


@pytest.mark.parametrize(("case", "needle"), [
    ("gray image", "This is a grayscale image, so the hints layer \"hints\" cannot hold colors"),
    ("no alpha", "has no transparency"),
    ("also selected", "\"hints\" is the hints layer and also selected for colorizing"),
    ("a group", "The hints layer \"hints\" is not a pixel layer"),
    ("nothing painted over the layer", "has no painted pixels over the layer(s)"),
])
def test_flow_refuses_unusable_hints_layers_before_anything_changes(case: str,
                                                                     needle: str) -> None:
    photo, hints = rgb_photo(), hints_layer()
    mode, selected = chromatize_shim.MODE_RGB, [photo]
    if case == "gray image":
        mode = chromatize_shim.MODE_GRAY
    elif case == "no alpha":
        hints["pixels"] = hints["pixels"][..., :3].copy()
    elif case == "also selected":
        selected = [photo, hints]
    elif case == "a group":
        hints["kind"] = chromatize_shim.KIND_GROUP
    else:
        hints["offsets"] = (100, 100)
    host = RecordingHost(mode, [hints, photo])
    with pytest.raises(chromatize_shim.PluginError) as info:
        chromatize_flow.colorize_drawables(host, selected, hint_settings("unused.pth", hints),
                                           client=None)
    assert needle in info.value.message and info.value.kind == "bad_hints"
    assert not any(call in RecordingHost.MUTATING for call in host.calls)


def test_hints_with_a_model_without_hint_inputs_are_refused_in_the_dialog_s_words() -> None:
    with pytest.raises(chromatize_shim.PluginError) as info:
        chromatize_flow.make_settings(SCHEMA, model="eccv16", hints_layer=object())
    assert info.value.message == ("The model 'eccv16' does not accept colour hints: choose a "
                                  "model that does (mobile) in 'Model', or set 'Hints layer' "
                                  "to none.")
    # without a hints layer eccv16 is fine, and the checkbox alone changes nothing
    assert chromatize_flow.make_settings(SCHEMA, model="eccv16", hide_hints=True)[
        "hide_hints"] is False
    # an older installation that does not say which models accept hints: the worker decides
    old = json.loads(json.dumps(SCHEMA))
    for entry in old["model"]["models"]:
        del entry["accepts_hints"]
    assert chromatize_flow.make_settings(old, model="eccv16", hints_layer="layer")[
        "hints_layer"] == "layer"


def test_preview_hints_keep_dots_smaller_than_a_preview_pixel() -> None:
    hints = np.zeros((30, 40, 4), np.uint8)
    hints[7, 13] = (10, 200, 30, 255)  # one pixel: a quarter of a preview pixel
    hints[20:23, 28:31] = (220, 40, 20, 128)  # half transparent still counts
    geometry = chromatize_flow.preview_geometry((4, 2, 32, 24), limit=8)
    assert geometry == (0.25, 1, 0, 8, 6)
    data = chromatize_flow.preview_hints(hints.tobytes(), 40, geometry)
    small = np.frombuffer(data, np.uint8).reshape(6, 8, 4)
    assert tuple(small[1, 2]) == (10, 200, 30, 255)
    assert tuple(small[5, 6]) == (220, 40, 20, 128)
    assert np.count_nonzero(small[..., 3]) == 2
    # nothing painted inside the previewed part: no hints
    assert chromatize_flow.preview_hints(hints.tobytes(), 40, (1.0, 0, 0, 10, 5)) is None


def test_hints_controls_in_the_dialog() -> None:
    fields = {f["name"]: f for f in chromatize_flow.dialog_fields(SCHEMA)}
    assert fields["hints_layer"]["kind"] == "layer" and fields["hints_layer"]["default"] is None
    assert "(mobile does)" in fields["hints_layer"]["help"]
    assert "transparent layer" in fields["hints_layer"]["help"]
    assert fields["hide_hints"]["kind"] == "bool" and fields["hide_hints"]["default"] is False
    assert chromatize_flow.hint_models(SCHEMA) == ["mobile"]
    # GIMP 2.10's variant has no layer argument for it
    assert not {"hints_layer", "hide_hints"} & {
        f["name"] for f in chromatize_flow.dialog_fields(SCHEMA, hints=False)}


def test_make_settings_maps_dialog_values() -> None:
    made = chromatize_flow.make_settings(SCHEMA, model="eccv16", weights="  ", temperature=0.0,
                                         saturation=1.5, render_size=0, device="cpu",
                                         output="in-place", allow_download=1)
    assert made == {"output": "in-place", "worker": {
        "model": "eccv16", "weights": None, "temperature": None, "saturation": 1.5,
        "render_size": None, "device": "cpu", "allow_download": True},
        "hints_layer": None, "hide_hints": False}
    assert chromatize_flow.make_settings(SCHEMA, temperature=0.5, render_size=64.0)["worker"][
        "temperature"] == 0.5
    with pytest.raises(chromatize_shim.PluginError):
        chromatize_flow.make_settings(SCHEMA, output="sideways")
    with pytest.raises(chromatize_shim.PluginError, match="'Saturation' must be at least 0"):
        chromatize_flow.make_settings(SCHEMA, saturation=-1)
    with pytest.raises(chromatize_shim.PluginError, match="'Render size' must be a whole"):
        chromatize_flow.make_settings(SCHEMA, render_size=12.5)
    # saturation 0 is gray, not "the model's default": only settings defaulting to None map 0
    assert chromatize_flow.make_settings(SCHEMA, saturation=0)["worker"] == {"saturation": 0.0}


def test_dialog_fields_come_from_the_installed_schema() -> None:
    fields = {f["name"]: f for f in chromatize_flow.dialog_fields(SCHEMA)}
    assert list(fields) == list(chromatize_flow.DIALOG_SETTINGS)
    for name in fields.keys() - set(chromatize_flow.PLUGIN_FIELDS):
        label, help_text = chromatize_flow.GIMP_WORDING.get(name, (SCHEMA[name]["label"],
                                                                   SCHEMA[name]["help"]))
        assert fields[name]["label"] == label
        assert fields[name]["help"].startswith(help_text.split("%")[0])
    assert fields["model"]["default"] == "mobile"
    assert [value for value, _ in fields["model"]["choices"]][:2] == ["mobile", "eccv16"]
    assert [value for value, _ in fields["device"]["choices"]] == SCHEMA["device"]["choices"]
    # GIMP cannot say "the model's default": 0 / "" stand for it and go to the worker as null
    assert (fields["temperature"]["default"], fields["temperature"]["minimum"]) == (0, 0)
    assert (fields["render_size"]["default"], fields["render_size"]["minimum"],
            fields["render_size"]["maximum"]) == (0, 0, chromatize_flow.DIALOG_RENDER_SIZE_MAX)
    assert fields["saturation"]["default"] == 1.0 and fields["saturation"]["maximum"] == 2.0
    assert fields["weights"]["kind"] == "file" and fields["weights"]["default"] == ""
    assert fields["allow_download"]["default"] is False
    assert fields["detail"]["default"] == "standard"
    for name, field in fields.items():
        if name not in chromatize_flow.PLUGIN_FIELDS:
            stand_in = field["default"]
            default = chromatize_flow.worker_value(SCHEMA[name], stand_in)
            assert default == SCHEMA[name]["default"], name


def test_tooltips_are_plain_words_and_state_the_defaults() -> None:
    fields = {f["name"]: f for f in chromatize_flow.dialog_fields(SCHEMA)}
    text = " ".join(field["help"] for field in fields.values())
    for jargon in ("annealed", "--", "worker's Python", "allow_download", "=True"):
        assert jargon not in text, jargon
    assert "224 for mobile" in fields["render_size"]["help"]
    assert "224 for mobile" in fields["detail"]["help"]
    from chromatize.registry import get_spec

    own = f"{get_spec('mobile').default_temperature:g} for mobile"  # the model's own default
    assert own in fields["temperature"]["help"], fields["temperature"]["help"]
    assert "(default)" in fields["saturation"]["help"] and "(default)" in fields["device"]["help"]


def test_model_list_says_which_weights_are_missing() -> None:
    schema = json.loads(json.dumps(SCHEMA))
    models = {entry["name"]: entry for entry in schema["model"]["models"]}
    models["mobile"].update(status="cached", weights_files=["/cache/mobile.pth"])
    models["eccv16"].update(status="cached", weights_files=["/cache/eccv16.pth"])
    here = {"/cache/mobile.pth"}
    availability = chromatize_flow.model_availability(schema, exists=here.__contains__,
                                                      visible=lambda folder: True)
    # eccv16 was cached when installed but its file is gone now: checked again, not trusted
    assert availability == {"mobile": "ready", "eccv16": "download"}
    labels = dict(next(f for f in chromatize_flow.dialog_fields(schema, availability)
                       if f["name"] == "model")["choices"])
    assert labels == {"mobile": "mobile", "eccv16": "eccv16 (not downloaded yet)"}
    # a sandboxed GIMP that cannot see the cache folder trusts the status at install time
    assert chromatize_flow.model_availability(schema, exists=lambda p: False,
                                              visible=lambda folder: False) == {
        "mobile": "ready", "eccv16": "ready"}
    # shipped weights are always there; no URL and no file: cannot be used at all
    models["mobile"]["status"] = "shipped"
    models["eccv16"].update(status="missing", downloadable=False)
    assert chromatize_flow.model_availability(schema, exists=lambda p: False,
                                              visible=lambda folder: True) == {
        "mobile": "ready", "eccv16": "missing"}


def test_detail_picks_render_sizes_known_to_work() -> None:
    def size(**values: Any) -> Any:
        return chromatize_flow.make_settings(SCHEMA, **values)["worker"].get("render_size")

    assert size(model="mobile", detail="standard") is None  # the model's own size
    assert size(model="mobile", detail="more") == 336
    assert size(model="eccv16", detail="most") == 512
    assert size(model="mobile", detail="most", render_size=100) == 100  # experts win
    with pytest.raises(chromatize_shim.PluginError, match="Unknown detail"):
        size(detail="extreme")


def test_mnemonics_never_clash_with_each_other_or_the_buttons() -> None:
    labels = chromatize_flow.mnemonic_labels(
        [field["label"] for field in chromatize_flow.dialog_fields(SCHEMA)])
    letters = [label[label.index("_") + 1].lower() for label in labels]
    assert len(letters) == len(labels) and len(set(letters)) == len(letters)
    assert not set(letters) & chromatize_flow.RESERVED_MNEMONICS
    assert chromatize_flow.mnemonic_labels(["Model", "Mode"], reserved=()) == ["_Model", "M_ode"]


@pytest.mark.parametrize(("fields", "worker", "needle", "absent"), [
    ({"model": "eccv16", "model_status": "downloadable", "allow_download": False,
      "weights_given": False}, {}, "Tick 'Download weights if needed'", "--"),
    ({"model": "eccv16", "model_status": "downloadable", "allow_download": True,
      "weights_given": False}, {}, "Check the internet connection", "Tick"),
    ({"model": "eccv16", "model_status": "downloadable", "allow_download": False,
      "weights_given": True}, {}, "Choose another file in 'Weights file'", "Tick"),
    ({}, {"weights": None}, chromatize_flow.MODEL_MISSING_HINT, "Tick"),
])
def test_model_failures_are_explained_in_the_dialog_s_terms(
        fields: dict[str, Any], worker: dict[str, Any], needle: str, absent: str) -> None:
    error = chromatize_client.WorkerError("model_missing", "model 'eccv16' is not downloaded",
                                          fields=fields)
    text = chromatize_flow.explain_failure(error, {"worker": worker})
    assert needle in text and absent not in text
    other = chromatize_client.WorkerError("out_of_memory", "not enough memory")
    assert chromatize_flow.explain_failure(other, {}) == "not enough memory"


def test_a_config_without_settings_is_reported_as_not_installed() -> None:
    for config in ({}, {"command": ["python"]}, {"settings": {"model": {}}}):
        with pytest.raises(chromatize_shim.PluginError, match="chromatize gimp install") as info:
            chromatize_flow.settings_schema(config)
        assert info.value.kind == "not_installed"


def test_crop_rows_cuts_rectangles() -> None:
    block = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(4, 5, 3)
    cut = chromatize_shim.crop_rows(block.tobytes(), 5, 3, 1, (1, 2, 3, 2))
    np.testing.assert_array_equal(np.frombuffer(cut, np.uint8).reshape(2, 3, 3),
                                  block[2:4, 1:4])
    assert chromatize_shim.crop_rows(block.tobytes(), 5, 3, 1, (0, 1, 5, 2)) == \
        block[1:3].tobytes()


# ------------------------------------------------------------------ GIMP 2.10 (gimpfu)

GRAY, RGB, INDEXED = 1, 0, 2  # gimpenums values of GimpImageBaseType


class FakeRegion:
    """gimp.PixelRgn: slicing reads/writes raw 8-bit bytes of the layer or its shadow."""

    def __init__(self, layer: FakeLayer, shadow: bool) -> None:
        self.layer, self.shadow = layer, shadow

    def __getitem__(self, key: tuple[slice, slice]) -> bytes:
        xs, ys = key
        return self.layer.pixels[ys, xs].tobytes()

    def __setitem__(self, key: tuple[slice, slice], data: bytes) -> None:
        xs, ys = key
        assert self.shadow, "plug-ins must write through shadow tiles"
        h, w = ys.stop - ys.start, xs.stop - xs.start
        self.layer.shadow[ys, xs] = np.frombuffer(data, np.uint8).reshape(h, w, self.layer.bpp)


class FakeLayer:
    def __init__(self, image: FakeImage, name: str, pixels: np.ndarray,
                 offsets: tuple[int, int] = (0, 0)) -> None:
        self.image, self.name, self.pixels, self.offsets = image, name, pixels, offsets
        self.tattoo = id(self)
        self.shadow = np.zeros_like(pixels)
        self.updated: list[tuple[int, int, int, int]] = []

    width = property(lambda self: self.pixels.shape[1])
    height = property(lambda self: self.pixels.shape[0])
    bpp = property(lambda self: self.pixels.shape[2])
    has_alpha = property(lambda self: self.bpp in (2, 4))
    is_gray = property(lambda self: self.bpp in (1, 2))

    def get_pixel_rgn(self, x: int, y: int, w: int, h: int, dirty: bool,
                      shadow: bool) -> FakeRegion:
        if shadow:
            self.shadow = self.pixels.copy()
        return FakeRegion(self, shadow)

    def flush(self) -> None:
        self.image.log.append("flush")

    def merge_shadow(self, undo: bool) -> None:
        assert undo, "the merge must be undoable"
        self.image.log.append("merge_shadow")
        self.pixels = self.shadow.copy()

    def update(self, x: int, y: int, w: int, h: int) -> None:
        self.updated.append((x, y, w, h))


class FakeImage:
    def __init__(self, base_type: int) -> None:
        self.base_type = base_type
        self.layers: list[FakeLayer] = []
        self.log: list[str] = []
        self.undo_depth = 0


class FakePdb:
    """The PDB procedures GimpfuHost calls, on FakeImage; records every call."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(type(self), "_" + name, None)
        if method is None:
            raise AttributeError(f"the fake PDB has no {name}")

        def call(*args: Any) -> Any:
            self.calls.append(name)
            return method(self, *args)

        return call

    def _gimp_image_convert_rgb(self, image: FakeImage) -> None:
        assert image.undo_depth == 1, "conversion outside the undo group"
        image.base_type = RGB
        for layer in image.layers:
            if layer.is_gray:
                rgb = np.repeat(layer.pixels[..., :1], 3, axis=2)
                layer.pixels = np.concatenate([rgb, layer.pixels[..., 1:]], axis=2)

    def _gimp_image_undo_group_start(self, image: FakeImage) -> None:
        image.undo_depth += 1

    def _gimp_image_undo_group_end(self, image: FakeImage) -> None:
        image.undo_depth -= 1

    def _gimp_item_is_layer_mask(self, item: Any) -> int:
        return 0

    def _gimp_item_is_group(self, item: Any) -> int:
        return int(getattr(item, "is_group", False))

    def _gimp_item_is_channel(self, item: Any) -> int:
        return 0

    def _gimp_item_is_layer(self, item: Any) -> int:
        return int(isinstance(item, FakeLayer))

    def _gimp_drawable_mask_intersect(self, layer: FakeLayer) -> tuple[int, ...]:
        return 1, 0, 0, layer.width, layer.height

    def _gimp_layer_copy(self, layer: FakeLayer, add_alpha: bool) -> FakeLayer:
        return FakeLayer(layer.image, layer.name, layer.pixels.copy(), layer.offsets)

    def _gimp_item_set_name(self, layer: FakeLayer, name: str) -> None:
        layer.name = name

    def _gimp_item_get_parent(self, layer: FakeLayer) -> None:
        return None

    def _gimp_image_get_item_position(self, image: FakeImage, layer: FakeLayer) -> int:
        return image.layers.index(layer)

    def _gimp_image_insert_layer(self, image: FakeImage, layer: FakeLayer, parent: Any,
                                 position: int) -> None:
        assert image.undo_depth == 1, "new layer outside the undo group"
        assert parent is None
        image.layers.insert(position, layer)

    def _gimp_progress_end(self) -> None:
        pass

    def _gimp_progress_set_text(self, text: str) -> None:
        pass


def fake_gimpfu(pdb: FakePdb) -> tuple[types.ModuleType, dict[str, Any]]:
    """A ``gimpfu`` module recording register()/main() and GIMP's message/progress calls."""
    record: dict[str, Any] = {"register": [], "main": 0, "messages": [], "progress": []}
    module = types.ModuleType("gimpfu")
    for index, name in enumerate(["PF_IMAGE", "PF_DRAWABLE", "PF_OPTION", "PF_SPINNER",
                                  "PF_STRING", "PF_TOGGLE", "PF_FILENAME"]):
        setattr(module, name, f"<{name}:{index}>")
    module.GRAY, module.RGB, module.INDEXED = GRAY, RGB, INDEXED
    module.register = lambda *args, **kwargs: record["register"].append((args, kwargs))

    def main() -> None:
        record["main"] += 1

    module.main = main
    gimp = types.SimpleNamespace(
        message=record["messages"].append,
        progress_init=lambda text: record["progress"].append(("init", text)),
        progress_update=lambda fraction: record["progress"].append(("update", fraction)),
        displays_flush=lambda: record["progress"].append(("flush", None)),
    )
    module.gimp, module.pdb = gimp, pdb
    return module, record


@pytest.fixture
def gimp210(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """GIMP 2.10's view: the installed 2.10 plug-in executed with a fake gimpfu."""
    installed = install("2.10", tmp_path / "plug-ins")
    pdb = FakePdb()
    module, record = fake_gimpfu(pdb)
    monkeypatch.setitem(sys.modules, "gimpfu", module)
    monkeypatch.syspath_prepend(str(installed.plugin_dir))
    for name in ("chromatize_shim", "chromatize_flow", "chromatize_client",
                 "chromatize_shim_gimpfu"):  # import the installed copies
        monkeypatch.delitem(sys.modules, name, raising=False)
    runpy.run_path(str(installed.entry), run_name="__main__")
    # The plug-in takes its own process group (so that GIMP's Cancel kills the worker with
    # it); here the "plug-in" is pytest itself, which must keep its group.
    monkeypatch.setattr(sys.modules["chromatize_client"], "own_process_group",
                        lambda: record.setdefault("process_group", True))
    return {"record": record, "pdb": pdb, "installed": installed}


def test_gimpfu_variant_registers_colors_menu_entry(gimp210: dict[str, Any]) -> None:
    record = gimp210["record"]
    assert record["main"] == 1
    ((args, kwargs),) = record["register"]
    name, blurb, help_text, author, copyright_, date, label, types_, params, results, func = args
    assert name == "python-fu-chromatize-colorize"
    assert label == "Colorize (AI)..." and kwargs == {"menu": "<Image>/Colors"}
    assert label.rstrip(".") != "Colorize"  # GIMP's own non-AI Colorize keeps its label
    assert types_ == "RGB*, GRAY*, INDEXED*"
    assert [p[1] for p in params] == ["image", "drawable", "model", "weights", "temperature",
                                      "saturation", "detail", "render_size", "device", "output",
                                      "allow_download"]
    assert [name.split(" ")[0] for name in params[2][4][:2]] == ["mobile", "eccv16"]
    assert params[3][0] == "<PF_FILENAME:6>"  # a file chooser for the weights
    assert params[8][4] == SCHEMA["device"]["choices"]  # devices from the installed config
    assert params[9][3] == 0 and params[9][4][0] == "New layer above"  # default output
    assert results == [] and callable(func)


def _run_gimp210(gimp210: dict[str, Any], image: FakeImage, layer: FakeLayer,
                 weights: str, output: int = 0) -> None:
    ((args, _),) = gimp210["record"]["register"]
    func = args[-1]
    model = [name.split(" ")[0] for name in args[8][2][4]].index("eccv16")
    func(image, layer, model, weights, 0.0, 1.0, 0, 32.0, 1, output, False)


def test_gimpfu_variant_colorizes_with_the_real_worker(gimp210: dict[str, Any],
                                                       weights: Path) -> None:
    image = FakeImage(GRAY)
    gray8 = np.round(gray_test_image() * 255).astype(np.uint8)
    alpha = np.full_like(gray8, 200)
    layer = FakeLayer(image, "scan", np.stack([gray8, alpha], axis=2), offsets=(7, 5))
    image.layers.append(layer)
    _run_gimp210(gimp210, image, layer, str(weights))
    record, pdb = gimp210["record"], gimp210["pdb"]
    assert record["messages"] == []
    assert image.base_type == RGB and image.undo_depth == 0
    new, old = image.layers
    assert new.name == "scan (colorized)" and new.offsets == (7, 5) and new.bpp == 4
    np.testing.assert_array_equal(new.pixels[..., 3], alpha)
    np.testing.assert_array_equal(old.pixels[..., :3], np.repeat(gray8[..., None], 3, axis=2))
    assert mean_chroma(new.pixels / 255.0) > 2.0
    diff = np.abs(lab(new.pixels / 255.0)[..., 0] - lightness_of_gray(gray8 / 255.0))
    assert diff.max() < 1.0
    assert image.log[-2:] == ["flush", "merge_shadow"] and new.updated == [(0, 0, 32, 24)]
    start = pdb.calls.index("gimp_image_undo_group_start")
    end = pdb.calls.index("gimp_image_undo_group_end")
    assert pdb.calls.count("gimp_image_undo_group_start") == 1
    assert start < pdb.calls.index("gimp_image_convert_rgb") < end
    assert start < pdb.calls.index("gimp_image_insert_layer") < end
    updates = [value for kind, value in record["progress"] if kind == "update"]
    assert updates and updates[-1] == 1.0
    assert record["process_group"] is True


def test_gimpfu_variant_reports_failures_and_changes_nothing(gimp210: dict[str, Any],
                                                             tmp_path: Path) -> None:
    image = FakeImage(GRAY)
    gray8 = np.round(gray_test_image() * 255).astype(np.uint8)[..., None]
    layer = FakeLayer(image, "scan", gray8.copy())
    image.layers.append(layer)
    _run_gimp210(gimp210, image, layer, str(tmp_path / "absent.pth"), output=1)
    (message,) = gimp210["record"]["messages"]
    assert message.startswith("Colorize (AI): ") and "absent.pth" in message
    assert image.base_type == GRAY and image.layers == [layer]
    np.testing.assert_array_equal(layer.pixels, gray8)
    assert "gimp_image_undo_group_start" not in gimp210["pdb"].calls


def test_gimpfu_variant_without_its_config_says_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = install("2.10", tmp_path / "plug-ins")
    installed.config.unlink()  # copied by hand instead of `chromatize gimp install`
    module, record = fake_gimpfu(FakePdb())
    monkeypatch.setitem(sys.modules, "gimpfu", module)
    monkeypatch.syspath_prepend(str(installed.plugin_dir))
    for name in ("chromatize_shim", "chromatize_flow", "chromatize_client",
                 "chromatize_shim_gimpfu"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    runpy.run_path(str(installed.entry), run_name="__main__")
    ((args, _),) = record["register"]
    assert [p[1] for p in args[8]] == ["image", "drawable"]  # no settings to offer
    image = FakeImage(GRAY)
    layer = FakeLayer(image, "scan", np.zeros((4, 4, 1), np.uint8))
    args[-1](image, layer)
    (message,) = record["messages"]
    assert message.startswith("Colorize (AI): ") and "chromatize gimp install" in message
    assert image.layers == [] and image.base_type == GRAY


# ------------------------------------------------------------------ Python 2.7 compatibility


def _vermin(*paths: Path) -> subprocess.CompletedProcess[str]:
    vermin = Path(sys.executable).with_name("vermin")
    return subprocess.run([str(vermin), "--no-tips", "--violations", "-t=2.7-", "-t=3-",
                           *map(str, paths)], capture_output=True, text=True, timeout=120)


def test_gimp_210_side_is_python_27_compatible(tmp_path: Path) -> None:
    proc = _vermin(*(PLUGIN_SOURCE / name for name in PY27_FILES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the check does catch Python-3-only code
    sample = tmp_path / "py3_only.py"
    sample.write_text('name = "x"\nprint(f"{name}")\n')
    assert _vermin(sample).returncode != 0
    for name in PY27_FILES:  # and the shared files still compile for GIMP 3's Python
        compile((PLUGIN_SOURCE / name).read_text(), name, "exec")


def test_preview_is_a_small_copy_of_the_selected_part() -> None:
    assert chromatize_flow.preview_geometry((0, 0, 1024, 512)) == (0.25, 0, 0, 256, 128)
    scale, x, y, width, height = chromatize_flow.preview_geometry((100, 40, 2000, 1000), 200)
    assert (scale, x, y, width, height) == (0.1, 10, 4, 200, 100)
    assert chromatize_flow.preview_geometry((5, 5, 30, 20)) == (1.0, 5, 5, 30, 20)  # never up
    made = chromatize_flow.make_settings(SCHEMA, model="mobile", output="in-place")
    assert chromatize_flow.preview_settings(made) == made["worker"]


def test_own_process_group_makes_the_caller_a_group_leader() -> None:
    script = (f"import os, sys; sys.path.insert(0, {str(PLUGIN_SOURCE)!r}); "
              "import chromatize_client; "
              "print(chromatize_client.own_process_group(), os.getpgid(0) == os.getpid())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == (["True", "True"] if hasattr(os, "setpgid") else ["False", "False"])
