"""The napari plug-in in real napari (PyQt6) under Xvfb: docking, every input kind, cancel, errors,
responsiveness, sample data, the npe2 manifest and the README screenshot's command
(into a temporary folder: tests never rewrite docs/napari-screenshot.png).

Runs with pytest-qt, pytest-xvfb (starts Xvfb itself) and napari's ``make_napari_viewer`` fixture.
Select with ``pytest -m napari``. The model is ECCV16 with randomly initialised weights saved by
the test, so nothing depends on downloads or on the trained ``mobile`` model.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")
torch = pytest.importorskip("torch")
skcolor = pytest.importorskip("skimage.color")



def _qt_gui_problem() -> str | None:
    """Why a Qt GUI cannot start here (None if it can). Probed in a subprocess because Qt aborts
    the whole process when its platform plugin cannot load (e.g. missing libxcb-* packages)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display: install Xvfb (apt-get install xvfb); pytest-xvfb then starts it"
    probe = ("import sys; from qtpy.QtWidgets import QApplication; "
             "app = QApplication(sys.argv); print(app.platformName())")
    try:
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                timeout=120)
    except subprocess.TimeoutExpired:
        return "starting a Qt application timed out"
    if result.returncode != 0:
        return "Qt cannot start: " + (result.stderr.strip().splitlines() or ["?"])[-1]
    return None


_problem = _qt_gui_problem()
if _problem is not None:
    if os.environ.get("CI"):  # in CI a missing system package must fail, not skip
        pytest.fail(f"napari tests cannot run: {_problem}", pytrace=False)
    pytest.skip(f"napari tests need a Qt GUI: {_problem}", allow_module_level=True)

from chromatize_napari.layer_data import METADATA_KEY  # noqa: E402
from chromatize_napari.widget import NEW_LAYER, ColorizeWidget  # noqa: E402

pytestmark = pytest.mark.napari

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_MS = 120_000


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No weights cached by the developer's own runs can leak into these tests."""
    monkeypatch.setenv("CHROMATIZE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def _few_torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def dock(viewer) -> ColorizeWidget:
    _dock_widget, widget = viewer.window.add_plugin_dock_widget("chromatize", "Colorize")
    assert isinstance(widget, ColorizeWidget)
    return widget


def configure(widget: ColorizeWidget, layer, weights: Path, render_size: int = 64) -> None:
    widget.reset_choices()
    widget.input_layer.value = layer
    widget.model.value = "eccv16"
    widget.weights.value = str(weights)
    widget.allow_download.value = False
    widget.device.value = "cpu"
    widget.render_size.value = render_size
    widget.output.value = NEW_LAYER


def run_and_wait(qtbot, widget: ColorizeWidget) -> None:
    widget.run_button.native.click()  # a real Qt click on the "Colorize" button
    assert widget.running or widget.last_outcome is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)


def lightness(rgb_float: np.ndarray) -> np.ndarray:
    return skcolor.rgb2lab(np.clip(rgb_float, 0, 1))[..., 0]


def notifications_since(count: int) -> list:
    from napari.utils.notifications import notification_manager

    return notification_manager.records[count:]


def notification_count() -> int:
    from napari.utils.notifications import notification_manager

    return len(notification_manager.records)


# ------------------------------------------------------------------------------ manifest/dock
def test_npe2_manifest_validates():
    npe2 = shutil.which("npe2", path=str(Path(sys.executable).parent)) or shutil.which("npe2")
    assert npe2, "the npe2 command is needed (pip install npe2)"
    result = subprocess.run([npe2, "validate", "chromatize"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_widget_docks_and_lists_only_image_layers(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = dock(viewer)
    assert widget.input_layer.choices == ()

    gray = viewer.add_image(np.zeros((16, 16), np.uint8), name="gray")
    viewer.add_labels(np.zeros((16, 16), np.int32), name="labels")
    viewer.add_points([[1, 1]], name="points")
    assert [layer.name for layer in widget.input_layer.choices] == ["gray"]

    viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="rgb")
    assert {layer.name for layer in widget.input_layer.choices} == {"gray", "rgb"}
    viewer.layers.remove(gray)
    assert [layer.name for layer in widget.input_layer.choices] == ["rgb"]

    model_names = [value for value in widget.model.choices]
    assert {"mobile", "eccv16"} <= set(model_names)
    labels = [widget.model.native.itemText(i) for i in range(widget.model.native.count())]
    assert any("eccv16 (" in label for label in labels)
    assert set(widget.device.choices) == {"auto", "cpu", "cuda", "mps"}
    assert widget.output.value == NEW_LAYER
    # Labels, help texts and ranges come from the one settings table.
    from chromatize.options import SETTINGS

    assert widget.temperature.label == SETTINGS["temperature"].label
    assert widget.saturation.tooltip.startswith(SETTINGS["saturation"].help)
    assert widget.render_size.max == SETTINGS["render_size"].maximum
    assert widget.allow_download.text == SETTINGS["allow_download"].label


# ------------------------------------------------------------------------------ plane mapping
def test_plane_mapping_uses_contrast_limits_and_copies_only_when_needed():
    from chromatize_napari.layer_data import map_plane, snapshot_layer

    photo = (GRADIENT * 255).astype(np.uint8)
    identity = snapshot_layer(napari.layers.Image(photo))
    assert map_plane(identity, photo) is photo  # full-range uint8: passed on, no copy

    dim = snapshot_layer(napari.layers.Image(photo, contrast_limits=(0, 127.5)))
    mapped = map_plane(dim, photo)
    assert mapped.dtype == np.uint8
    np.testing.assert_array_equal(mapped, np.clip(np.rint(photo / 127.5 * 255), 0, 255))

    rgba = np.dstack([RNG.random((8, 8, 3)) * 4.0, np.full((8, 8), 0.5)])
    snap = snapshot_layer(napari.layers.Image(rgba, rgb=True, contrast_limits=(0.0, 4.0)))
    mapped = map_plane(snap, rgba)
    assert mapped.dtype == np.float32 and mapped.shape == (8, 8, 4)
    np.testing.assert_allclose(mapped[..., :3], rgba[..., :3] / 4.0, atol=1e-6)
    np.testing.assert_allclose(mapped[..., 3], 0.5)  # alpha by dtype range, not the limits


def test_non_image_layers_are_refused_with_a_message():
    from chromatize.errors import InputImageError
    from chromatize_napari.layer_data import snapshot_layer

    with pytest.raises(InputImageError, match="not an Image layer"):
        snapshot_layer(napari.layers.Labels(np.zeros((4, 4), np.int32), name="cells"))


# ------------------------------------------------------------------------------ input kinds
def _gray_u16() -> tuple[np.ndarray, tuple[float, float]]:
    rng = np.random.default_rng(1)
    data = rng.integers(1000, 3001, size=(40, 56)).astype(np.uint16)
    return data, (1000.0, 3000.0)


def _expected_gray(data: np.ndarray, limits: tuple[float, float]) -> np.ndarray:
    low, high = limits
    return np.clip((data.astype(np.float64) - low) / (high - low), 0, 1)


RNG = np.random.default_rng(0)
GRADIENT = np.linspace(0, 1, 40 * 56).reshape(40, 56)
CASES = {
    # name: (data, contrast_limits or None, expected output shape, expected dtype)
    "gray-uint8": ((GRADIENT * 255).astype(np.uint8), None, (40, 56, 3), np.uint8),
    "gray-uint16-limits": (*_gray_u16(), (40, 56, 3), np.uint16),
    "gray-float-limits": ((GRADIENT * 5.0).astype(np.float32), (0.0, 5.0), (40, 56, 3),
                          np.float32),
    "rgb-uint8": (RNG.integers(0, 256, (40, 56, 3), dtype=np.uint8), None, (40, 56, 3),
                  np.uint8),
    "rgba-uint8": (RNG.integers(0, 256, (40, 56, 4), dtype=np.uint8), None, (40, 56, 4),
                   np.uint8),
    "stack-tyx-uint8": (RNG.integers(0, 256, (3, 40, 56), dtype=np.uint8), None,
                        (3, 40, 56, 3), np.uint8),
    "stack-tzyx-float64": (RNG.random((2, 2, 40, 56)), (0.0, 1.0), (2, 2, 40, 56, 3),
                           np.float32),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_input_kind_gives_overlaying_rgb_layer(make_napari_viewer, qtbot, eccv16_weights,
                                                    case):
    data, limits, out_shape, out_dtype = CASES[case]
    viewer = make_napari_viewer()
    widget = dock(viewer)
    spatial_ndim = data.ndim - (1 if case.startswith(("rgb", "rgba")) else 0)
    scale = [2.0] * (spatial_ndim - 2) + [0.5, 0.25]
    translate = [3.0] * (spatial_ndim - 2) + [10.0, -4.0]
    kwargs = {"name": case, "scale": scale, "translate": translate,
              "metadata": {"pixel_size_um": 0.25}}
    if spatial_ndim == 2:
        kwargs["rotate"] = 30.0
        kwargs["affine"] = np.array([[1.0, 0.2, 5.0], [0.0, 1.0, 2.0], [0.0, 0.0, 1.0]])
    if limits is not None:
        kwargs["contrast_limits"] = limits
    layer = viewer.add_image(data, **kwargs)
    original = data.copy()
    configure(widget, layer, eccv16_weights)
    widget.saturation.value = 1.5

    run_and_wait(qtbot, widget)

    assert widget.last_outcome == "done"
    assert len(viewer.layers) == 2
    out = viewer.layers[f"{case} (colorized)"]
    assert out == widget.last_output  # (the widget holds it through napari's plugin proxy)
    assert widget.status.value.startswith("done in ") and out.name in widget.status.value
    assert out.rgb
    assert out.data.shape == out_shape
    assert out.data.dtype == out_dtype
    # Overlays the input exactly: same transforms, same world position of every corner.
    np.testing.assert_allclose(out.scale, layer.scale)
    np.testing.assert_allclose(out.translate, layer.translate)
    np.testing.assert_allclose(out.rotate, layer.rotate)
    np.testing.assert_allclose(out.affine.affine_matrix, layer.affine.affine_matrix)
    for corner in ([0] * layer.ndim, [n - 1 for n in layer.data.shape[: layer.ndim]]):
        np.testing.assert_allclose(out.data_to_world(corner), layer.data_to_world(corner))
    # The input layer is untouched.
    np.testing.assert_array_equal(layer.data, original)
    assert layer.data is data
    # Metadata: the input's, plus what made this layer.
    assert out.metadata["pixel_size_um"] == 0.25
    record = out.metadata[METADATA_KEY]
    assert record["model"] == "eccv16"
    assert record["source_layer"] == case
    assert record["render_size"] == 64
    assert record["saturation"] == pytest.approx(1.5)
    assert record["temperature"] == pytest.approx(widget.temperature.value)
    assert Path(record["weights"]) == eccv16_weights.resolve()
    assert record["device"] == "cpu" and record["engine"] in ("torch", "onnx")

    # Lightness of the result is the lightness of what the user saw (contrast limits applied).
    out_float = out.data.astype(np.float64)
    if np.issubdtype(out.data.dtype, np.integer):
        out_float /= np.iinfo(out.data.dtype).max
        np.testing.assert_array_equal(out.contrast_limits, [0, np.iinfo(out.data.dtype).max])
    else:
        np.testing.assert_allclose(out.contrast_limits, [0, 1])
    if case.startswith(("rgb", "rgba")):
        seen = data[..., :3] / 255.0
        np.testing.assert_array_equal(out.data[..., 3:], data[..., 3:])  # alpha passed through
    else:
        gray = _expected_gray(data, tuple(layer.contrast_limits))
        seen = np.repeat(gray[..., None], 3, axis=-1)
    diff = np.abs(lightness(out_float[..., :3]) - lightness(seen))
    assert float(diff.mean()) < 1.0, f"mean lightness error {diff.mean():.2f}"
    assert float(np.percentile(diff, 99)) < 3.0


def test_multiscale_layer_is_colorized_at_full_resolution(make_napari_viewer, qtbot,
                                                         eccv16_weights):
    viewer = make_napari_viewer()
    widget = dock(viewer)
    full = (GRADIENT * 255).astype(np.uint8)
    pyramid = [full, full[::2, ::2].copy()]
    layer = viewer.add_image(pyramid, multiscale=True, name="pyramid", scale=(0.5, 0.5),
                             translate=(1.0, 2.0))
    configure(widget, layer, eccv16_weights)
    run_and_wait(qtbot, widget)
    assert widget.last_outcome == "done"
    out = viewer.layers["pyramid (colorized)"]
    assert not out.multiscale
    assert out.data.shape == (*full.shape, 3) and out.data.dtype == np.uint8
    np.testing.assert_allclose(out.scale, layer.scale)
    np.testing.assert_allclose(out.translate, layer.translate)


def test_replace_existing_output_and_model_cache(make_napari_viewer, qtbot, eccv16_weights,
                                                 tmp_path):
    viewer = make_napari_viewer()
    widget = dock(viewer)
    layer = viewer.add_image((GRADIENT * 255).astype(np.uint8), name="photo")
    configure(widget, layer, eccv16_weights)
    # The widget preloads the chosen model (see the preload tests); the run reuses it.
    qtbot.waitUntil(lambda: not widget.preloading, timeout=RUN_TIMEOUT_MS)
    loads = widget.cache.loads

    run_and_wait(qtbot, widget)
    assert widget.last_outcome == "done"
    first = viewer.layers["photo (colorized)"]
    loads_after_first = widget.cache.loads
    assert loads_after_first == loads

    # Output choices now offer the result layer (never the input); replacing reuses it.
    widget.reset_choices()
    assert first in list(widget.output.choices)
    assert layer not in list(widget.output.choices)
    widget.output.value = first
    widget.saturation.value = 0.0
    run_and_wait(qtbot, widget)
    assert widget.last_outcome == "done"
    assert len(viewer.layers) == 2
    assert widget.last_output == first
    assert first.name == "photo (colorized)"
    assert first.metadata[METADATA_KEY]["saturation"] == 0.0
    rgb = first.data.astype(int)
    assert np.abs(rgb[..., 0] - rgb[..., 1]).max() <= 2  # saturation 0 = gray
    assert np.abs(rgb[..., 1] - rgb[..., 2]).max() <= 2
    assert widget.cache.loads == loads_after_first  # same model and device: no reload

    # Replacing works across sizes too (the output follows the new input's shape).
    small = viewer.add_image((GRADIENT[:24, :32] * 255).astype(np.uint8), name="small")
    widget.reset_choices()
    widget.input_layer.value = small
    widget.output.value = first
    run_and_wait(qtbot, widget)
    assert widget.last_outcome == "done"
    assert len(viewer.layers) == 3
    assert first.data.shape == (24, 32, 3)
    assert first.metadata[METADATA_KEY]["source_layer"] == "small"
    widget.input_layer.value = layer

    # A different weights file (same architecture) or device name that resolves differently
    # reloads; "auto" on a CPU-only machine is the same device as "cpu" and does not.
    widget.device.value = "auto"
    widget.output.value = NEW_LAYER
    run_and_wait(qtbot, widget)
    if torch.cuda.is_available():
        assert widget.cache.loads == loads_after_first + 1
    else:
        assert widget.cache.loads == loads_after_first
    other = tmp_path / "other.pth"
    shutil.copyfile(eccv16_weights, other)
    widget.weights.value = str(other)
    run_and_wait(qtbot, widget)
    assert widget.last_outcome == "done"
    assert widget.cache.loads == loads_after_first + 1 + int(torch.cuda.is_available())


# ------------------------------------------------------------------------------ preload
def test_model_preloads_off_the_gui_thread_and_a_run_waits_for_it(make_napari_viewer, qtbot,
                                                                   monkeypatch, eccv16_weights):
    """Opening the widget loads the chosen model on a worker thread; pressing Colorize while it
    loads waits for that load and reuses it (one load in all)."""
    import threading

    from chromatize.pipeline import Colorizer
    from chromatize_napari.colorize_job import ColorizerCache

    original = Colorizer.from_options.__func__
    load_threads: list[threading.Thread] = []

    def slow_load(cls, options, **kwargs):
        load_threads.append(threading.current_thread())
        time.sleep(1.0)  # a slow disk or a big model: the GUI must not wait for it
        return original(cls, options, **kwargs)

    monkeypatch.setattr(Colorizer, "from_options", classmethod(slow_load))
    viewer = make_napari_viewer()
    layer = viewer.add_image((GRADIENT * 255).astype(np.uint8), name="photo")
    cache = ColorizerCache()
    started = time.perf_counter()
    widget = ColorizeWidget(viewer, cache=cache)
    opened = time.perf_counter() - started
    assert opened < 1.0, f"opening the widget took {opened:.2f} s: it waited for the load"
    assert widget.preloading and widget.preload_state == "loading"
    assert "loading" in widget.model_state.value
    widget.reset_choices()
    widget.input_layer.value = layer
    widget.render_size.value = 64

    run_and_wait(qtbot, widget)  # pressed while the preload is still loading

    assert widget.last_outcome == "done"
    qtbot.waitUntil(lambda: not widget.preloading, timeout=RUN_TIMEOUT_MS)
    assert cache.loads == 1 and len(load_threads) == 1
    assert load_threads[0] is not threading.main_thread()
    assert widget.preload_state == "ready" and "loaded" in widget.model_state.value
    assert widget.last_timings["load"] > 0.1  # the run waited for the preload to finish

    # Changing the model preloads the new one (after a short pause), off the GUI thread too.
    widget.model.value = "eccv16"
    widget.weights.value = str(eccv16_weights)
    qtbot.waitUntil(lambda: widget.preloading, timeout=RUN_TIMEOUT_MS)
    qtbot.waitUntil(lambda: not widget.preloading, timeout=RUN_TIMEOUT_MS)
    assert cache.loads == 2 and all(t is not threading.main_thread() for t in load_threads)
    assert cache.loaded(widget.options()) and widget.preload_state == "ready"
    run_and_wait(qtbot, widget)
    assert widget.last_outcome == "done" and cache.loads == 2


# ------------------------------------------------------------------------------ repeat runs
def _result(widget: ColorizeWidget) -> np.ndarray:
    return np.array(widget.last_output.data, copy=True)


def test_repeat_run_reuses_prepared_planes_and_matches_a_fresh_run(make_napari_viewer, qtbot,
                                                                    eccv16_weights):
    viewer = make_napari_viewer()
    widget = dock(viewer)
    data, limits = _gray_u16()
    layer = viewer.add_image(data, contrast_limits=limits, name="scan")
    configure(widget, layer, eccv16_weights)
    run_and_wait(qtbot, widget)
    assert widget.last_outcome == "done" and "prepare" in widget.last_timings
    first = widget.last_output
    assert len(widget.prepared) == 1

    # Only temperature and saturation change: the prepared plane is reused, prepare skipped.
    widget.output.value = first
    widget.saturation.value = 1.6
    widget.temperature.value = 0.3
    hits = widget.prepared.hits
    run_and_wait(qtbot, widget)
    assert widget.last_outcome == "done" and widget.last_output == first
    assert widget.prepared.hits == hits + 1
    assert "prepare" not in widget.last_timings
    assert set(widget.last_timings) >= {"load", "model", "finish", "layer", "total"}
    reused = _result(widget)

    # The same settings with nothing to reuse give exactly the same result.
    widget.prepared.forget()
    run_and_wait(qtbot, widget)
    assert "prepare" in widget.last_timings
    np.testing.assert_array_equal(_result(widget), reused)

    # A stack: every plane is reused, and the result is again identical to a fresh run.
    stack = RNG.integers(0, 256, (3, 40, 56), dtype=np.uint8)
    planes = viewer.add_image(stack, name="stack")
    widget.reset_choices()
    widget.input_layer.value = planes
    widget.temporal.value = False  # (temporal consistency prepares each plane itself)
    widget.output.value = NEW_LAYER
    run_and_wait(qtbot, widget)
    assert len(widget.prepared) == 3  # the previous layer's plane was dropped
    hits = widget.prepared.hits
    widget.output.value = widget.last_output
    widget.saturation.value = 0.8
    run_and_wait(qtbot, widget)
    assert widget.prepared.hits == hits + 3
    reused = _result(widget)
    widget.prepared.forget()
    run_and_wait(qtbot, widget)
    np.testing.assert_array_equal(_result(widget), reused)


def test_prepared_planes_are_dropped_when_the_input_changes(make_napari_viewer, qtbot,
                                                             eccv16_weights):
    viewer = make_napari_viewer()
    widget = dock(viewer)
    data, limits = _gray_u16()
    layer = viewer.add_image(data.copy(), contrast_limits=limits, name="scan")
    configure(widget, layer, eccv16_weights)

    def fresh_result() -> np.ndarray:
        """What a run gives with nothing reused (the reference for each step)."""
        kept = widget.prepared.max_bytes
        widget.prepared.max_bytes = 0
        widget.prepared.forget()
        try:
            run_and_wait(qtbot, widget)
        finally:
            widget.prepared.max_bytes = kept
        assert "prepare" in widget.last_timings
        return _result(widget)

    run_and_wait(qtbot, widget)
    widget.output.value = widget.last_output
    assert len(widget.prepared) == 1

    layer.contrast_limits = (1500.0, 2500.0)  # napari event: the plane is dropped at once
    assert len(widget.prepared) == 0
    run_and_wait(qtbot, widget)
    assert "prepare" in widget.last_timings and len(widget.prepared) == 1
    np.testing.assert_array_equal(_result(widget), fresh_result())

    layer.data = np.ascontiguousarray(data[::-1])  # new data (event)
    assert len(widget.prepared) == 0
    run_and_wait(qtbot, widget)
    assert "prepare" in widget.last_timings
    np.testing.assert_array_equal(_result(widget), fresh_result())
    run_and_wait(qtbot, widget)  # (fresh_result kept nothing: prepares and keeps the plane)
    run_and_wait(qtbot, widget)
    assert "prepare" not in widget.last_timings

    # Values changed in place, which napari does not announce: the plane's digest differs, so
    # the stale plane is not used.
    layer.data[:10] = 3000
    layer.refresh()
    run_and_wait(qtbot, widget)
    assert "prepare" in widget.last_timings
    np.testing.assert_array_equal(_result(widget), fresh_result())

    # Removing the layer frees its planes.
    run_and_wait(qtbot, widget)
    assert len(widget.prepared) == 1
    viewer.layers.remove(layer)
    assert len(widget.prepared) == 0


def test_prepared_cache_is_bounded():
    import torch as _torch

    from chromatize.imagearray import inspect_image
    from chromatize.pipeline import Prepared
    from chromatize_napari.colorize_job import PreparedCache

    image = np.zeros((100, 100), np.uint8)
    one = Prepared(image, inspect_image(image, "image"), _torch.zeros(100, 100), (64, 64))
    size = 100 * 100 * 4 + image.nbytes
    cache = PreparedCache(max_bytes=2 * size)
    for i in range(3):
        cache.put(("layer a", i), one)
    assert len(cache) == 2 and cache.nbytes == 2 * size  # the third did not fit
    assert cache.get(("layer a", 0)) is one and cache.get(("layer a", 2)) is None
    cache.put(("layer b", 0), one)  # another layer: only its planes are kept
    assert len(cache) == 1 and cache.get(("layer a", 0)) is None
    cache.forget("layer a")
    assert len(cache) == 1
    cache.forget("layer b")
    assert len(cache) == 0


# ------------------------------------------------------------------------------ thumbnails
@pytest.mark.parametrize("replace", [False, True], ids=["new-layer", "replaced-layer"])
def test_uint16_result_thumbnail_shows_the_colours(make_napari_viewer, qtbot, eccv16_weights,
                                                   replace):
    """napari draws uint16 RGB thumbnails without their contrast limits (solid white); the
    output layer's thumbnail shows what its canvas shows: the same as the result in 8 bits."""
    viewer = make_napari_viewer()
    widget = dock(viewer)
    data = (np.tile(np.linspace(0, 65535, 56), (40, 1))).astype(np.uint16)
    layer = viewer.add_image(data, contrast_limits=(0, 65535), name="u16")
    configure(widget, layer, eccv16_weights)
    if replace:  # an earlier uint8 result is replaced by the uint16 one
        photo = viewer.add_image((GRADIENT * 255).astype(np.uint8), name="photo")
        widget.input_layer.value = photo
        run_and_wait(qtbot, widget)
        widget.input_layer.value = layer
        widget.output.value = widget.last_output
    widget.saturation.value = 2.0
    run_and_wait(qtbot, widget)
    assert widget.last_outcome == "done"
    out = widget.last_output
    assert out.data.dtype == np.uint16
    np.testing.assert_array_equal(out.contrast_limits, [0, 65535])

    thumb = out.thumbnail[..., :3].astype(int)
    assert thumb.shape[:2] == out._thumbnail_shape[:2]
    assert np.unique(thumb).size > 10, "the thumbnail is blank"
    # What napari's (correct) uint8 thumbnail of the same colours looks like.
    eight_bit = napari.layers.Image((out.data // 257).astype(np.uint8), rgb=True)
    reference = eight_bit.thumbnail[..., :3].astype(int)
    assert np.abs(thumb - reference).max() <= 2
    assert float(np.abs(thumb[..., 0] - thumb[..., 2]).mean()) > 1  # colour, not gray

    out.contrast_limits = (0, 32767)  # the thumbnail follows the limits, as the canvas does
    brighter = out.thumbnail[..., :3].astype(int)
    assert brighter.mean() > thumb.mean() + 20


# ------------------------------------------------------------------------------ benchmark
def test_repeat_run_benchmark_runs_and_repeats_are_cheap(make_napari_viewer):
    """benchmarks/bench_napari_repeat.py's measurement on a small image: every scenario runs,
    repeats reuse the prepared plane and skip the load (timings themselves are not asserted
    here: the CPU is shared; RESULTS.md has the 1-megapixel numbers)."""
    import importlib.util

    path = REPO_ROOT / "benchmarks" / "bench_napari_repeat.py"
    spec = importlib.util.spec_from_file_location("bench_napari_repeat", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    viewer = make_napari_viewer()
    results = bench.measure(viewer, size=96, repeats=2, render_size=64)
    assert results["prepared_hits"] >= 1
    assert results["first"]["load"] >= 0.0
    assert results["prepared_hits"] >= 2
    for run in results["repeat"]:
        assert "prepare" not in run  # reused
        assert run["load"] < 0.05  # the model was loaded already
    for run in results["dropped"]:
        assert "prepare" in run
    text = bench.report(results, 96, 2)
    assert "| repeat (saturation changed) |" in text and "/ baseline" in text


# ------------------------------------------------------------------------------ temporal
def test_temporal_choice_is_shown_only_for_stacks(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = dock(viewer)
    hidden = widget.temporal.native.isHidden
    gray = viewer.add_image(np.zeros((16, 16), np.uint8), name="gray")
    rgb = viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="rgb", rgb=True)
    tyx = viewer.add_image(np.zeros((3, 16, 16), np.uint8), name="tyx")
    rgb_stack = viewer.add_image(np.zeros((3, 16, 16, 3), np.uint8), name="rgb stack", rgb=True)
    widget.reset_choices()
    for layer in (gray, rgb):
        widget.input_layer.value = layer
        assert hidden() and not widget.temporal.value, layer.name
    for layer in (tyx, rgb_stack):
        widget.input_layer.value = layer
        assert not hidden() and widget.temporal.value, layer.name  # on for a (time) stack
    widget.temporal.value = False  # the user's choice stays while the layer does
    viewer.add_image(np.zeros((16, 16), np.uint8), name="another")
    widget.reset_choices()
    assert widget.input_layer.value is rgb_stack and not widget.temporal.value
    # A depth stack (its axis labelled Z, here or in the viewer): shown, off by default.
    zyx = viewer.add_image(np.zeros((3, 16, 16), np.uint8), name="zyx", axis_labels="zyx")
    widget.reset_choices()
    widget.input_layer.value = zyx
    assert not hidden() and not widget.temporal.value
    assert widget.temporal.text == "Temporal consistency"
    assert "flicker" in widget.temporal.tooltip


def test_temporal_runs_one_sequence_per_outer_index(eccv16_weights):
    from chromatize.options import ColorizeOptions
    from chromatize.pipeline import Colorizer
    from chromatize.sequence import colorize_sequence
    from chromatize_napari.colorize_job import colorize_snapshot, sequence_groups
    from chromatize_napari.layer_data import LayerSnapshot

    data = RNG.integers(0, 256, (2, 3, 24, 32), dtype=np.uint8)  # (Z, T, Y, X)
    snapshot = LayerSnapshot("zt", data, False, (0.0, 255.0), {})
    assert list(sequence_groups(snapshot)) == [[(0, 0), (0, 1), (0, 2)],
                                               [(1, 0), (1, 1), (1, 2)]]
    options = ColorizeOptions(model="eccv16", weights=str(eccv16_weights), device="cpu",
                              render_size=64)
    colorizer = Colorizer.from_options(options)
    fractions: list[float] = []
    out = colorize_snapshot(snapshot, options, colorizer, temporal=True,
                            progress=fractions.append)
    for z in range(2):  # each Z index is its own sequence, started afresh
        expected = np.stack(list(colorize_sequence(data[z], options, colorizer=colorizer)))
        np.testing.assert_array_equal(out[z], expected)
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


def _panned_stack(n_planes: int, shift: int) -> np.ndarray:
    """Planes of one grayscale photo, the view moving ``shift`` pixels right per plane."""
    from skimage import data as skdata

    photo = (skcolor.rgb2gray(skdata.astronaut()) * 255).astype(np.uint8)
    return np.stack([photo[100:196, 100 + shift * i:228 + shift * i] for i in range(n_planes)])


def _mean_ab_change(planes: np.ndarray, shift: int) -> float:
    """Mean |delta ab| between consecutive planes on their overlap (the pan compensated)."""
    ab = skcolor.rgb2lab(planes.astype(np.float64) / 255.0)[..., 1:]
    return float(np.mean([np.abs(ab[i + 1][:, :-shift] - ab[i][:, shift:]).mean()
                          for i in range(len(planes) - 1)]))


def test_temporal_consistency_follows_a_pan(make_napari_viewer, qtbot):
    from chromatize.options import ColorizeOptions
    from chromatize.pipeline import Colorizer

    viewer = make_napari_viewer()
    widget = dock(viewer)
    shift = 3
    stack = _panned_stack(5, shift)
    layer = viewer.add_image(stack, name="pan")
    widget.reset_choices()
    widget.input_layer.value = layer
    widget.model.value = "mobile"  # shipped, trained: random weights give almost no colour
    widget.weights.value = None
    widget.device.value = "cpu"
    widget.render_size.value = 128
    widget.output.value = NEW_LAYER
    assert widget.temporal.value

    run_and_wait(qtbot, widget)
    assert widget.last_outcome == "done"
    on = _result(widget)
    assert widget.last_output.metadata[METADATA_KEY]["temporal"] == "on"
    widget.temporal.value = False
    run_and_wait(qtbot, widget)
    assert widget.last_outcome == "done"
    off = _result(widget)
    assert widget.last_output.metadata[METADATA_KEY]["temporal"] == "off"

    # Off: exactly each plane on its own.
    colorizer = Colorizer.from_options(widget.options())
    options = ColorizeOptions(model="mobile", device="cpu", render_size=128,
                              temperature=widget.temperature.value)
    per_plane = np.stack([colorizer.colorize(plane, options) for plane in stack])
    np.testing.assert_array_equal(off, per_plane)
    # On: colour changes much less from plane to plane (measured: about 0.5 vs 2.6).
    change_on, change_off = _mean_ab_change(on, shift), _mean_ab_change(off, shift)
    assert change_on < 0.6 * change_off, (change_on, change_off)
    assert on.shape == off.shape and on.dtype == off.dtype


# ------------------------------------------------------------------------------ cancel/errors
def test_cancel_mid_stack_leaves_no_layer(make_napari_viewer, qtbot, eccv16_weights):
    viewer = make_napari_viewer()
    widget = dock(viewer)
    n_planes = 40
    stack = RNG.integers(0, 256, (n_planes, 64, 64), dtype=np.uint8)
    layer = viewer.add_image(stack, name="stack")
    configure(widget, layer, eccv16_weights)
    assert widget.temporal.value  # (a T stack: one SequenceColorizer, cancel between planes)
    before = notification_count()

    widget.run()
    qtbot.waitUntil(lambda: widget.progress_fraction >= 1.5 / n_planes, timeout=RUN_TIMEOUT_MS)
    at_cancel = widget.progress_fraction
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)

    assert widget.last_outcome == "cancelled"
    assert [lyr.name for lyr in viewer.layers] == ["stack"]
    # Stopped within (at most) the plane that was running, far from the end.
    assert widget.progress_fraction <= at_cancel + 1.0 / n_planes + 1e-9
    assert widget.progress_fraction < 1.0
    messages = [str(n.message) for n in notifications_since(before)]
    assert any("cancelled" in m for m in messages), messages
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_unavailable_model_shows_notification_and_adds_no_layer(make_napari_viewer, qtbot,
                                                                 eccv16_weights):
    from napari.utils.notifications import NotificationSeverity

    from chromatize.weights import model_status

    viewer = make_napari_viewer()
    widget = dock(viewer)
    layer = viewer.add_image((GRADIENT * 255).astype(np.uint8), name="photo")
    configure(widget, layer, eccv16_weights)
    before = notification_count()
    widget.weights.value = None  # no weights file, no cache (isolated), download not allowed
    assert model_status("eccv16") in ("downloadable", "missing")
    # The preload of the unavailable model says so quietly in the widget, with no notification.
    qtbot.waitUntil(lambda: not widget.preloading, timeout=RUN_TIMEOUT_MS)
    assert widget.preload_state == "failed"
    assert "'eccv16' not loaded" in widget.model_state.value
    assert notifications_since(before) == []

    run_and_wait(qtbot, widget)

    assert widget.last_outcome == "error"
    assert [lyr.name for lyr in viewer.layers] == ["photo"]
    errors = [n for n in notifications_since(before) if n.severity == NotificationSeverity.ERROR]
    assert len(errors) == 1, [str(n.message) for n in notifications_since(before)]
    message = str(errors[0].message)
    assert message.startswith("chromatize: ") and "eccv16" in message
    assert "Traceback" not in message
    # It names the widget's own controls (from chromatize.options.SETTINGS), not CLI flags.
    assert "'Download weights if needed'" in message and "'Weights file'" in message
    assert "--" not in message and "«" not in message
    assert widget.run_button.enabled


def test_run_without_image_layer_explains_instead_of_failing(make_napari_viewer):
    from napari.utils.notifications import NotificationSeverity

    viewer = make_napari_viewer()
    widget = dock(viewer)
    viewer.add_labels(np.zeros((8, 8), np.int32), name="labels")
    before = notification_count()
    widget.run_button.native.click()
    assert not widget.running
    assert widget.last_outcome == "error"
    (note,) = notifications_since(before)
    assert note.severity == NotificationSeverity.ERROR
    assert "no image layer" in str(note.message)
    assert [lyr.name for lyr in viewer.layers] == ["labels"]


def test_gui_stays_responsive_during_run(make_napari_viewer, qtbot, eccv16_weights):
    from qtpy.QtCore import QTimer

    viewer = make_napari_viewer()
    widget = dock(viewer)
    stack = RNG.integers(0, 256, (12, 64, 64), dtype=np.uint8)
    layer = viewer.add_image(stack, name="stack")
    configure(widget, layer, eccv16_weights)

    from napari.utils import progress

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    try:
        widget.run()
        started = time.perf_counter()
        # napari's progress bar (activity dock) shows the run and advances while it runs.
        bars = [bar for bar in progress._all_instances if bar.desc == "Colorizing stack"]
        assert len(bars) == 1 and bars[0].total > 0
        qtbot.waitUntil(lambda: bars[0].n > 0 or not widget.running, timeout=RUN_TIMEOUT_MS)
        assert bars[0].n > 0 and widget.running
        qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)
        finished = time.perf_counter()
    finally:
        timer.stop()
    assert widget.last_outcome == "done"
    during = [t for t in ticks if started <= t <= finished]
    duration = finished - started
    assert duration > 0.2, "the run was too short to say anything about responsiveness"
    # The event loop kept running: ticks throughout the run, never a long gap.
    assert len(during) >= max(3, int(duration / 0.1)), (len(during), duration)
    gaps = np.diff([started, *during, finished])
    assert gaps.max() < 1.0, f"GUI thread blocked for {gaps.max():.2f} s"
    assert not [bar for bar in progress._all_instances if bar.desc == "Colorizing stack"]


# ------------------------------------------------------------------------------ sample data
def test_sample_data_opens_as_grayscale_image(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("chromatize", "grayscale_photo")
    assert len(layers) == 1
    sample = layers[0]
    assert isinstance(sample, napari.layers.Image)
    assert not sample.rgb
    assert sample.data.ndim == 2
    assert min(sample.data.shape) >= 64
    assert float(np.std(sample.data)) > 0  # a photo, not a constant


def test_screenshot_of_colorized_sample(make_napari_viewer, tmp_path: Path):
    """The README screenshot's code (python -m chromatize_napari.screenshot) colorizes the sample
    in a shown window with the shipped model; here it saves into tmp_path, not docs/."""
    from chromatize_napari.screenshot import capture_colorized_sample

    viewer = make_napari_viewer(show=True)
    shot = tmp_path / "napari-screenshot.png"
    image = capture_colorized_sample(viewer, shot)
    assert shot.stat().st_size > 10_000
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary name was renamed
    colorized = viewer.layers.selection.active
    assert colorized.name == "grayscale photo (colorized)" and colorized.rgb
    height, width = image.shape[:2]
    assert width >= 800 and height >= 500
    # The window shows colour (the colorized layer), not only gray UI and a gray photo.
    rgb = image[..., :3].astype(int)
    chroma = (rgb.max(axis=-1) - rgb.min(axis=-1))
    assert (chroma > 20).mean() > 0.02


def test_screenshot_command_line_says_what_it_does():
    result = subprocess.run([sys.executable, "-m", "chromatize_napari.screenshot", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "OUT.png" in result.stdout
