"""The GIMP 3 plug-in in real GIMP 3.0 (Debian 13 chroot, headless), through its PDB procedure.

One GIMP session runs every scenario of ``tests/gimp_scenarios.py`` (GIMP starts slowly, so the
scenarios share it) and dumps the layers; the tests below check those dumps against the input
images with numpy/scikit-image. The plug-in is installed with ``chromatize_gimp.install`` into a
temporary plug-ins folder added to GIMP's plug-in-path by a gimprc; its worker command is
``chroot /host <this Python> -m chromatize.worker`` (see ``tests/gimp_chroot.py``), and the model
is ``eccv16`` with seeded random weights at render size 32.

GIMP 3's PDB has no undo procedure (only undo-group start/end, enable/disable, freeze/thaw), so
"one undo group restores everything" is checked on the flow with a recording host in
``tests/test_gimp_shim.py``; here we check the group's contents and that failures change nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import gimp_chroot
import numpy as np
import pytest
from PIL import Image
from worker_helpers import (
    gray_test_image,
    lab,
    lightness_of_gray,
    random_eccv16_weights,
    random_mobile_weights,
)

from chromatize_gimp.install import install

pytestmark = pytest.mark.gimp

HERE = Path(__file__).resolve().parent
GIMP_TIMEOUT = 900
#: Dots painted on the scenarios' hints layer: image (x, y), side in pixels, sRGB colour.
HINT_DOTS = [(16, 14, 3, (0.27, 0.6, 0.27)), (30, 20, 3, (0.72, 0.27, 0.23)),
             (36, 28, 3, (0.3, 0.4, 0.72))]
#: ``CHROMATIZE_GIMP_SCENARIOS=a,b`` runs only those scenarios (quick runs while developing).
ONLY = [name for name in os.environ.get("CHROMATIZE_GIMP_SCENARIOS", "").split(",") if name]


def _gray8() -> np.ndarray:
    return np.round(gray_test_image(40, 48) * 255).astype(np.uint8)


def _rgb8() -> np.ndarray:
    gray = gray_test_image(40, 48)
    y, x = np.mgrid[0:40, 0:48]
    rgb = np.stack([gray * (0.8 + 0.2 * x / 47), gray, gray * (0.8 + 0.2 * y / 39)], axis=2)
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _gray16() -> np.ndarray:
    y, x = np.mgrid[0:40, 0:48]
    smooth = 0.15 + 0.7 * (x * 40 + y * 48) / (47 * 40 + 39 * 48)
    return np.round(smooth * 65535).astype(np.uint16)


def _smooth8() -> np.ndarray:
    """A gray ramp around mid-gray (L about 45 to 60), where the hint colours exist."""
    x = np.arange(48, dtype=np.float64)[None, :]
    return np.round(np.repeat(0.42 + 0.16 * x / 47, 40, axis=0) * 255).astype(np.uint8)


def _patch_ya() -> np.ndarray:
    y, x = np.mgrid[0:16, 0:20]
    value = 0.2 + 0.6 * x / 19
    alpha = 0.25 + 0.75 * y / 15
    return np.stack([value, alpha], axis=2).astype("<f4")


def _write_inputs(work: Path) -> None:
    Image.fromarray(_gray8(), "L").save(work / "gray.png")
    Image.fromarray(np.repeat(_smooth8()[..., None], 3, axis=2), "RGB").save(
        work / "smooth-rgb.png")
    Image.fromarray(_rgb8(), "RGB").save(work / "rgb.png")
    Image.fromarray(_gray16()).save(work / "gray16.png")
    Image.fromarray(_gray8(), "L").convert("P").quantize(16).save(work / "indexed.png")
    (work / "patch-ya.f32").write_bytes(_patch_ya().tobytes())


@pytest.fixture(scope="session")
def gimp_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = gimp_chroot.cache_root()
    # Locally a machine without root/debootstrap skips; in CI (CI set) that is a failure.
    give_up = pytest.fail if os.environ.get("CI") else pytest.skip
    if not gimp_chroot.is_ready(root):
        reason = gimp_chroot.why_unbuildable()
        if reason:
            give_up(f"cannot build the GIMP 3 chroot: {reason}")
        log: list[str] = []
        try:
            gimp_chroot.build(root, log=log)
        except Exception as exc:
            pytest.fail(f"building the GIMP 3 chroot failed: {exc}\n" + "\n".join(log[-20:]))
    else:
        reason = gimp_chroot.why_unrunnable()
        if reason:
            give_up(f"cannot run GIMP in the chroot: {reason}")

    work = tmp_path_factory.mktemp("gimp")
    # inside the folder GIMP sees: the weights argument is a file GIMP checks exists
    weights = work / "eccv16_random.pth"
    shutil.copyfile(random_eccv16_weights(tmp_path_factory.getbasetemp()), weights)
    # mobile as this checkout builds it (accepts hints), seeded random weights
    mobile_weights = work / "mobile_random.pth"
    shutil.copyfile(random_mobile_weights(tmp_path_factory.getbasetemp()), mobile_weights)
    _write_inputs(work)
    (work / "home").mkdir()
    installed = install("3", work / "plug-ins", command_prefix=gimp_chroot.HOST_WORKER_PREFIX)
    shutil.copyfile(HERE / "gimp_scenarios.py", work / "gimp_scenarios.py")
    (work / "plan.json").write_text(json.dumps({"weights": str(weights),
                                                "worker_config": str(installed.config),
                                                "mobile_weights": str(mobile_weights),
                                                "hint_dots": HINT_DOTS, "only": ONLY}))
    (work / "gimprc").write_text(
        f'(plug-in-path "${{gimp_dir}}/plug-ins:${{gimp_plug_in_dir}}/plug-ins:{work}/plug-ins")\n')
    code = (f"w = {str(work)!r}; p = w + '/gimp_scenarios.py'; "
            "exec(compile(open(p).read(), p, 'exec'), "
            "{'CHROMATIZE_GIMP_WORK': w, '__name__': 'gimp_scenarios'})")
    command = gimp_chroot.gimp_command(
        root, code, gimprc=str(work / "gimprc"), binds=[(str(work), False)],
        timeout=GIMP_TIMEOUT, extra_env=("OMP_NUM_THREADS=1",), home=str(work / "home"))
    started = time.monotonic()
    proc = subprocess.run(["nice", "-n", "10", *command], capture_output=True, text=True)
    elapsed = time.monotonic() - started
    output = f"exit {proc.returncode} after {elapsed:.0f} s\n{proc.stdout[-3000:]}\n" \
             f"{proc.stderr[-6000:]}"
    results_file = work / "results.json"
    if proc.returncode != 0 or not results_file.is_file():
        pytest.fail("GIMP batch run failed: " + output)
    results = json.loads(results_file.read_text())
    return {"results": results, "output": output, "work": work}


def scenario(gimp_run: dict[str, Any], name: str) -> dict[str, Any]:
    if name not in gimp_run["results"] and ONLY:
        pytest.skip(f"scenario {name} not in CHROMATIZE_GIMP_SCENARIOS")
    result = gimp_run["results"][name]
    assert "exception" not in result, result.get("exception", "") + gimp_run["output"]
    return result


def pixels(layer: dict[str, Any]) -> np.ndarray:
    data = np.fromfile(layer["file"], dtype="<f4")
    return data.reshape(layer["height"], layer["width"], 4)


def chroma(rgba: np.ndarray) -> np.ndarray:
    values = lab(rgba)
    return np.hypot(values[..., 1], values[..., 2])


def replicated(gray8: np.ndarray) -> np.ndarray:
    return np.repeat(gray8[..., None].astype(np.float32) / 255.0, 3, axis=2)


def stored_8bit(rgba: np.ndarray) -> np.ndarray:
    """The 8-bit values GIMP stores for an 8-bit image read back as float. babl picks its u8 ->
    float conversion path by timing it at start-up, so the float can differ by one ULP between
    runs; the stored 8-bit value cannot."""
    return np.round(rgba[..., :3] * 255.0).astype(np.uint8)


def test_procedure_is_registered_under_colors(gimp_run: dict[str, Any]) -> None:
    r = scenario(gimp_run, "registration")
    assert r["menu_paths"] == ["<Image>/Colors"]
    assert r["label"].replace("_", "") == "Colorize (AI)…"  # GIMP's own is "Colorize…"
    assert r["image_types"] == "*"
    assert r["arguments"][:6] == ["run-mode", "image", "drawables", "model", "hints-layer",
                                  "hide-hints"]
    assert r["defaults"] == {"model": "mobile", "weights": None, "temperature": 0.0,
                             "saturation": 1.0, "detail": "standard", "render-size": 0,
                             "device": "auto", "output": "new-layer", "allow-download": False,
                             "hints-layer": None, "hide-hints": False}
    # one Alt+letter per control, none taken from the dialog's buttons (_Help, _Reset, ...)
    letters = [nick[nick.index("_") + 1].lower() for nick in r["nicks"].values() if "_" in nick]
    assert len(letters) == len(set(letters)) and not set(letters) & set("hrco")
    assert "_" in r["nicks"]["model"] and "_" in r["nicks"]["render-size"]
    # Help opens the plug-in's own page (its help domain), not GIMP's missing manual
    assert r["help_id"] in ("plug-in-chromatize-colorize",
                            "org.chromatize.gimp?plug-in-chromatize-colorize")


def test_gray_png_colorized_into_new_layer_above(gimp_run: dict[str, Any]) -> None:
    r = scenario(gimp_run, "gray_new_layer")
    assert r["run"]["status"] == "success", r["run"]
    assert r["before"]["base_type"] == "gray" and r["after"]["base_type"] == "rgb"
    top, bottom = r["after"]["layers"]
    assert top["name"] == bottom["name"] + " (colorized)"
    # the source layer is untouched (only converted to RGB: gray replicated)
    np.testing.assert_allclose(pixels(bottom), pixels(r["before"]["layers"][0]), atol=1e-6)
    out = pixels(top)
    assert chroma(out).mean() > 2.0
    diff = np.abs(lab(out)[..., 0] - lightness_of_gray(_gray8() / 255.0))
    assert diff.max() < 1.0 and diff.mean() < 0.3  # 8-bit image: rounding only


def test_rgb_png_in_place_changes_colors_keeps_lightness(gimp_run: dict[str, Any]) -> None:
    r = scenario(gimp_run, "rgb_in_place")
    assert r["run"]["status"] == "success", r["run"]
    (layer,) = r["after"]["layers"]
    out = pixels(layer)[..., :3]
    source = _rgb8() / 255.0
    assert np.abs(lab(out)[..., 1:] - lab(source)[..., 1:]).mean() > 1.0
    diff = np.abs(lab(out)[..., 0] - lab(source)[..., 0])
    assert diff.max() < 1.0 and diff.mean() < 0.3


def test_16_bit_image_keeps_its_precision(gimp_run: dict[str, Any]) -> None:
    r = scenario(gimp_run, "gray16_new_layer")
    assert r["run"]["status"] == "success", r["run"]
    assert "16" in r["before"]["precision"]
    assert r["after"]["precision"] == r["before"]["precision"]
    out = pixels(r["after"]["layers"][0])
    source = _gray16() / 65535.0
    expected = lightness_of_gray(source)
    # 8 bits would not do: quantizing the input alone moves L by more than the tolerance
    assert np.abs(lightness_of_gray(np.round(source * 255) / 255) - expected).max() > 0.05
    assert np.abs(lab(out)[..., 0] - expected).max() < 0.02
    assert chroma(out).mean() > 2.0


def test_layer_with_offset_and_alpha(gimp_run: dict[str, Any]) -> None:
    r = scenario(gimp_run, "offset_alpha_layer")
    assert r["run"]["status"] == "success", r["run"]
    names = [layer["name"] for layer in r["after"]["layers"]]
    assert names[:2] == ["patch (colorized)", "patch"]
    new, source = r["after"]["layers"][0], r["before"]["layers"][0]
    assert new["offsets"] == [10, 8] and (new["width"], new["height"]) == (20, 16)
    assert new["has_alpha"]
    np.testing.assert_array_equal(pixels(new)[..., 3], pixels(source)[..., 3])
    np.testing.assert_allclose(pixels(r["after"]["layers"][1]), pixels(source), atol=1e-6)
    out = pixels(new)
    assert chroma(out).mean() > 2.0
    assert np.abs(lab(out)[..., 0] - lab(pixels(source))[..., 0]).max() < 1.0


def test_hard_selection_limits_the_change(gimp_run: dict[str, Any]) -> None:
    r = scenario(gimp_run, "hard_selection_in_place")
    full = pixels(scenario(gimp_run, "gray_new_layer")["after"]["layers"][0])
    assert r["run"]["status"] == "success", r["run"]
    out = pixels(r["after"]["layers"][0])
    inside = np.zeros((40, 48), bool)
    inside[8:24, 8:32] = True
    original = np.repeat(_gray8()[..., None], 3, axis=2)
    np.testing.assert_array_equal(stored_8bit(out)[~inside], original[~inside])
    np.testing.assert_allclose(out[inside], full[inside], atol=1.5 / 255)


def test_soft_selection_blends(gimp_run: dict[str, Any]) -> None:
    r = scenario(gimp_run, "soft_selection_in_place")
    assert r["run"]["status"] == "success", r["run"]
    full = pixels(scenario(gimp_run, "gray_new_layer")["after"]["layers"][0])[..., :3]
    original = replicated(_gray8())
    out = pixels(r["after"]["layers"][0])[..., :3]
    change = np.abs(full - original).sum(axis=2)
    moved = np.abs(out - original).sum(axis=2)
    strong = change > 0.1
    ratio = moved[strong] / change[strong]
    assert ratio.max() > 0.95  # fully selected middle
    assert ratio.min() < 0.05  # unselected corners
    assert np.count_nonzero((ratio > 0.15) & (ratio < 0.85)) > 10  # the feathered band blends


def test_several_selected_layers_each_get_a_new_layer(gimp_run: dict[str, Any]) -> None:
    r = scenario(gimp_run, "two_layers_new_layers")
    assert r["run"]["status"] == "success", r["run"]
    layers = r["after"]["layers"]
    assert [layer["name"] for layer in layers][:2] == ["second (colorized)", "second"]
    assert layers[2]["name"] == layers[3]["name"] + " (colorized)"
    assert layers[0]["offsets"] == [4, 2]
    assert chroma(pixels(layers[0])).mean() > 2.0 and chroma(pixels(layers[2])).mean() > 2.0


def test_indexed_image_is_converted_and_colorized(gimp_run: dict[str, Any]) -> None:
    r = scenario(gimp_run, "indexed_new_layer")
    assert r["loaded_as"] == "indexed"
    assert r["run"]["status"] == "success", r["run"]
    assert r["after"]["base_type"] == "rgb" and len(r["after"]["layers"]) == 2
    assert chroma(pixels(r["after"]["layers"][0])).mean() > 2.0


@pytest.mark.parametrize(("name", "needle"), [("group_refused", "is a layer group"),
                                              ("channel_refused", "is a channel"),
                                              ("layer_mask_refused", "is a layer mask")])
def test_groups_and_channels_are_refused(gimp_run: dict[str, Any], name: str, needle: str) -> None:
    r = scenario(gimp_run, name)
    assert r["run"]["status"] == "execution-error"
    assert needle in r["run"]["error"]
    assert r["after"]["base_type"] == "rgb"
    np.testing.assert_allclose(pixels(r["after"]["layers"][-1])[..., :3], _rgb8() / 255.0,
                               atol=1e-6)


@pytest.mark.parametrize(("name", "needle"), [
    ("model_missing_leaves_image", "broken-weights.pth"),
    ("worker_missing_leaves_image", "Cannot start the chromatize worker"),
    ("worker_crash_leaves_image", "killed (signal 9)"),
])
def test_failures_report_and_leave_the_image_as_it_was(gimp_run: dict[str, Any], name: str,
                                                       needle: str) -> None:
    r = scenario(gimp_run, name)
    assert r["run"]["status"] == "execution-error"
    assert r["run"]["error"].startswith("Colorize (AI): ")
    assert needle in r["run"]["error"]
    assert r["after"]["base_type"] == "gray"  # not even converted to RGB
    (layer,) = r["after"]["layers"]
    np.testing.assert_array_equal(stored_8bit(pixels(layer)), np.repeat(_gray8()[..., None], 3, 2))


# ------------------------------------------------------------------ colour hints


def _hint_pixels() -> list[tuple[np.ndarray, np.ndarray]]:
    """For each painted dot: its pixels (boolean mask over the 40x48 image) and its colour."""
    dots = []
    for x, y, side, rgb in HINT_DOTS:
        mask = np.zeros((40, 48), bool)
        mask[y - side // 2:y - side // 2 + side, x - side // 2:x - side // 2 + side] = True
        dots.append((mask, np.array(rgb, np.float64)))
    return dots


def _assert_hints_obeyed(out: np.ndarray) -> None:
    """At every dot the output has the hint's colour (ab) with the photo's own lightness."""
    source_l = lightness_of_gray(_smooth8() / 255.0)
    out_lab = lab(out)
    for mask, rgb in _hint_pixels():
        hint_ab = lab(rgb[None, None])[0, 0, 1:]
        delta_ab = np.hypot(*(out_lab[mask][:, 1:] - hint_ab).T)
        assert np.median(delta_ab) <= 6.0, (rgb, delta_ab)
        assert np.abs(out_lab[mask][:, 0] - source_l[mask]).max() < 1.0


def _assert_hints_layer_untouched(r: dict[str, Any], visible: bool) -> None:
    before, after = r["hints_before"], r["hints_after"]
    assert before["visible"] is True and after["visible"] is visible
    assert {k: v for k, v in after.items() if k != "visible"} == \
        {k: v for k, v in before.items() if k != "visible"}


def test_hints_layer_sets_the_colours_at_its_dots_in_place(gimp_run: dict[str, Any]) -> None:
    r = scenario(gimp_run, "hints_in_place")
    assert r["run"]["status"] == "success", r["run"]
    assert [layer["name"] for layer in r["after"]["layers"]][0] == "hints"
    assert len(r["after"]["layers"]) == 2
    out = pixels(r["after"]["layers"][1])[..., :3]
    _assert_hints_obeyed(out)
    # without hints the model gives other colours at the dots: the hints made the difference
    plain = pixels(scenario(gimp_run, "mobile_in_place")["after"]["layers"][0])[..., :3]
    moved = [np.median(np.hypot(*(lab(out)[mask][:, 1:] - lab(plain)[mask][:, 1:]).T))
             for mask, _ in _hint_pixels()]
    assert max(moved) > 15.0, moved
    _assert_hints_layer_untouched(r, visible=True)  # not hidden unless asked


def test_hints_layer_hidden_only_when_asked(gimp_run: dict[str, Any]) -> None:
    r = scenario(gimp_run, "hints_hidden_new_layer")
    assert r["run"]["status"] == "success", r["run"]
    names = [layer["name"] for layer in r["after"]["layers"]]
    assert names[0] == "hints" and names[1] == names[2] + " (colorized)"
    _assert_hints_obeyed(pixels(r["after"]["layers"][1])[..., :3])
    # the source is untouched; the hints layer keeps its pixels and is only hidden
    np.testing.assert_array_equal(stored_8bit(pixels(r["after"]["layers"][2])),
                                  np.repeat(_smooth8()[..., None], 3, 2))
    _assert_hints_layer_untouched(r, visible=False)


def test_hints_with_a_model_without_hint_inputs_are_refused(gimp_run: dict[str, Any]) -> None:
    r = scenario(gimp_run, "hints_refused_for_eccv16")
    assert r["run"]["status"] == "execution-error"
    assert "'eccv16' does not accept colour hints" in r["run"]["error"]
    assert "'Hints layer'" in r["run"]["error"]
    np.testing.assert_array_equal(stored_8bit(pixels(r["after"]["layers"][1])),
                                  np.repeat(_smooth8()[..., None], 3, 2))
    _assert_hints_layer_untouched(r, visible=True)


def test_hints_layer_cannot_also_be_colorized(gimp_run: dict[str, Any]) -> None:
    r = scenario(gimp_run, "hints_layer_also_selected_refused")
    assert r["run"]["status"] == "execution-error"
    assert "is the hints layer and also selected" in r["run"]["error"]
    assert len(r["after"]["layers"]) == 2


def test_hints_layer_is_read_over_the_photo(gimp_run: dict[str, Any]) -> None:
    """The hint image the flow sends for the photo layer (the preview shrinks the same one):
    the dots where they lie over the photo, whatever the two layers' offsets, transparent
    everywhere else."""
    r = scenario(gimp_run, "hints_read_for_the_preview")
    full = np.array(r["full"], np.uint8).reshape(40, 48, 4)
    painted = np.zeros((40, 48), bool)
    for mask, rgb in _hint_pixels():
        painted |= mask
        np.testing.assert_allclose(full[mask][:, :3], np.tile(rgb, (9, 1)) * 255, atol=1)
    assert (full[..., 3] == 255)[painted].all() and not full[~painted, 3].any()
