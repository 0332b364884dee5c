"""Colour hints (chromatize.hints) through the Python API: making, checking, encoding, obeying
them, EXIF orientation, and colour suggestions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from contract_models import TinyHintModel
from PIL import Image

from chromatize import color
from chromatize.hints import HintError, Hints, load_hints, suggest_colours
from chromatize.imageio import _apply_orientation, read_image
from chromatize.models.contract import HINT_AB_SCALE, HintsNotSupportedError
from chromatize.models.eccv16 import ECCV16
from chromatize.options import ColorizeOptions
from chromatize.pipeline import Colorizer

HintModel = TinyHintModel


def _scene(h: int = 64, w: int = 80) -> np.ndarray:
    """A colour photo (uint8 RGB) of a few flat colour regions with gentle shading."""
    rgb = np.zeros((h, w, 3), np.float32)
    rgb[:, : w // 2] = (0.18, 0.55, 0.34)  # sea green
    rgb[:, w // 2 :] = (0.75, 0.38, 0.25)  # terracotta
    rgb[h // 2 :, w // 4 : 3 * w // 4] = (0.25, 0.35, 0.7)  # blue
    shade = np.linspace(0.85, 1.0, w, dtype=np.float32)[None, :, None]
    return np.round(rgb * shade * 255).astype(np.uint8)


def _gray_of(rgb: np.ndarray) -> np.ndarray:
    lab = color.rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    return np.round(color.lightness_to_gray(lab[0]).numpy() * 255).astype(np.uint8)


def _lab(image: np.ndarray) -> np.ndarray:
    rgb = image[..., :3] if image.ndim == 3 else np.repeat(image[..., None], 3, 2)
    return color.rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255).numpy()


def _points(rgb: np.ndarray, size: int = 12) -> list[dict]:
    h, w = rgb.shape[:2]
    spots = [(w // 4, h // 4), (3 * w // 4, h // 4), (w // 2, 3 * h // 4)]
    return [{"x": x, "y": y, "color": "#" + bytes(rgb[y, x]).hex(), "size": size}
            for x, y in spots]


def _hint_error(hints: Hints, target: np.ndarray, out: np.ndarray) -> float:
    mask = hints.full_resolution_mask(out.shape[1], out.shape[0])
    delta = np.linalg.norm(_lab(out)[1:, mask] - _lab(target)[1:, mask], axis=0)
    return float(np.median(delta))


# ---------------------------------------------------------------------------- making and checking


def test_points_json_and_image_make_the_same_hints(tmp_path: Path) -> None:
    points = [{"x": 3, "y": 2, "color": "#2e8b57", "size": 1}, {"x": 0, "y": 4,
              "color": [1.0, 0.0, 0.0]}]
    a = Hints.from_points(points)
    path = tmp_path / "h.json"
    path.write_text(json.dumps(points))
    b = Hints.from_json(path)
    rgba = np.zeros((6, 5, 4), np.uint8)
    rgba[2, 3] = (0x2E, 0x8B, 0x57, 255)
    rgba[4, 0] = (255, 0, 0, 128)
    c = Hints.from_image(rgba)
    Image.fromarray(rgba).save(tmp_path / "h.png")
    d = load_hints(tmp_path / "h.png")
    for hints in (a, b, c, d):
        order = np.lexsort((hints.x, hints.y))
        assert hints.x[order].tolist() == [3, 0] and hints.y[order].tolist() == [2, 4]
        assert np.allclose(hints.rgb[order], [[0x2E / 255, 0x8B / 255, 0x57 / 255], [1, 0, 0]],
                           atol=1e-6)
    assert c.image_size == d.image_size == (5, 6)


@pytest.mark.parametrize(("points", "message"), [
    ([{"x": 80, "y": 1, "color": "#ffffff"}], "outside the 80x64 image"),
    ([{"x": 1, "y": -1, "color": "#ffffff"}], "outside"),
    ([{"x": 1, "y": 1, "color": "#ggg"}], "not a hex colour"),
    ([{"x": 1, "y": 1, "color": [1.5, 0, 0]}], r"in \[0, 1\]"),
    ([{"x": 1, "y": 1, "color": "red"}], "not a hex colour"),
    ([{"x": 1.5, "y": 1, "color": "#fff"}], "whole number"),
    ([{"x": 1, "y": 1, "color": "#fff", "size": 0}], "size must be between"),
    ([{"x": 1, "color": "#fff"}], "needs x, y and color"),
    ([{"x": 1, "y": 1, "colr": "#fff"}], "unknown key 'colr'"),
])
def test_bad_hints_are_refused_clearly(points: list, message: str) -> None:
    layout = type("L", (), {"width": 80, "height": 64})()
    with pytest.raises(HintError, match=message):
        Hints.from_points(points).validate(layout)


def test_bad_hint_files_are_refused_clearly(tmp_path: Path) -> None:
    layout = type("L", (), {"width": 80, "height": 64})()
    with pytest.raises(HintError, match="no such hints file"):
        load_hints(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(HintError, match="not valid JSON"):
        load_hints(tmp_path / "bad.json")
    (tmp_path / "obj.json").write_text('{"x": 1}')
    with pytest.raises(HintError, match="expected a JSON list"):
        load_hints(tmp_path / "obj.json")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(HintError, match="broken.png"):
        load_hints(tmp_path / "broken.png")
    Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(HintError, match="alpha channel"):
        load_hints(tmp_path / "rgb.png")
    Image.fromarray(np.zeros((10, 10, 4), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(HintError, match="hint image is 10x10 pixels but the image is 80x64"):
        load_hints(tmp_path / "small.png").validate(layout)


def test_hint_tensor_follows_the_contract_at_render_resolution() -> None:
    colorizer = Colorizer(HintModel(), device="cpu")
    image = _gray_of(_scene(64, 80))
    prepared = colorizer.prepare(image)
    h, w = prepared.render
    hints = Hints.from_points([(0, 0, "#ff0000"), (79, 63, "#0000ff", 1), (40, 30, "#00ff00", 9)])
    tensor = hints.to_tensor(prepared)
    assert tensor.shape == (1, 3, h, w)
    mask = tensor[0, 2]
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert mask[0, 0] == 1 and mask[-1, -1] == 1  # every hint covers a render pixel
    assert torch.all(tensor[0, :2][:, mask == 0] == 0)
    red_ab = hints.ab()[0] / HINT_AB_SCALE
    assert torch.allclose(tensor[0, :2, 0, 0], red_ab)
    assert 3 <= int(mask.sum()) <= 2 + 11 * 11


def test_later_hints_win_where_patches_overlap() -> None:
    hints = Hints.from_points([(10, 10, "#ff0000", 9), (10, 10, "#0000ff", 1),
                               (12, 10, "#00ff00", 3)])
    ab = hints.full_resolution_ab(30, 20)
    blue, green, red = hints.ab()[1].numpy(), hints.ab()[2].numpy(), hints.ab()[0].numpy()
    assert np.allclose(ab[:, 10, 10], blue) and np.allclose(ab[:, 10, 12], green)
    assert np.allclose(ab[:, 6, 6], red) and np.isnan(ab[:, 5, 5]).all()
    assert hints.full_resolution_mask(30, 20).sum() == 81


# ---------------------------------------------------------------------------- obeying hints


def test_a_hint_model_follows_hints_and_finish_obeys_them_exactly() -> None:
    scene = _scene()
    gray = _gray_of(scene)
    hints = Hints.from_points(_points(scene))
    colorizer = Colorizer(HintModel(), device="cpu")
    options = ColorizeOptions()
    prepared = colorizer.prepare(gray, options)
    followed = colorizer.predict(prepared, options, hints=hints)
    # the model alone (no full-resolution enforcement) follows the hints
    by_model = colorizer.finish(prepared, followed, options)
    assert _hint_error(hints, scene, by_model) <= 6
    unguided = colorizer.finish(prepared, colorizer.predict(prepared, options), options)
    assert _hint_error(hints, scene, unguided) > 6
    # the whole call: the hint pixels carry the hint colour, the lightness is the original
    out = colorizer.colorize(gray, hints=hints)
    assert np.array_equal(out, colorizer.finish(prepared, followed, options, hints=hints))
    assert _hint_error(hints, scene, out) <= 6
    assert np.abs(_lab(out)[0] - _lab(gray)[0]).max() < 1.0


def test_finish_obeys_hints_even_when_the_model_ignores_them() -> None:
    scene = _scene()
    gray = _gray_of(scene)
    hints = Hints.from_points(_points(scene, size=5))
    colorizer = Colorizer(HintModel(follow=False), device="cpu")
    out = colorizer.colorize(gray, hints=hints)
    assert _hint_error(hints, scene, out) <= 6
    assert np.abs(_lab(out)[0] - _lab(gray)[0]).max() < 1.0
    # a hint image of single pixels works the same way
    rgba = np.zeros((*scene.shape[:2], 4), np.uint8)
    rgba[10:14, 5:60:7, :3] = scene[10:14, 5:60:7]
    rgba[10:14, 5:60:7, 3] = 255
    from_image = Hints.from_image(rgba)
    assert _hint_error(from_image, scene, colorizer.colorize(gray, hints=from_image)) <= 6


def test_prepared_is_reused_while_only_hints_change() -> None:
    scene = _scene()
    colorizer = Colorizer(HintModel(), device="cpu")
    prepared = colorizer.prepare(_gray_of(scene))
    for size in (3, 12):
        hints = Hints.from_points(_points(scene, size=size))
        out = colorizer.finish(prepared, colorizer.predict(prepared, hints=hints), hints=hints)
        assert np.array_equal(out, colorizer.colorize(_gray_of(scene), hints=hints))


def test_no_hints_and_empty_hints_match_the_automatic_result() -> None:
    colorizer = Colorizer(HintModel(), device="cpu")
    gray = _gray_of(_scene())
    assert np.array_equal(colorizer.colorize(gray, hints=Hints.empty()), colorizer.colorize(gray))


def test_models_without_hint_inputs_refuse_hints_with_a_clear_message() -> None:
    eccv16 = Colorizer(ECCV16(), device="cpu")
    gray = _gray_of(_scene(64, 64))
    hints = Hints.from_points([(1, 1, "#ff0000")])
    assert not eccv16.accepts_hints
    with pytest.raises(HintsNotSupportedError, match="does not accept colour hints; colorize"):
        eccv16.colorize(gray, hints=hints)
    with pytest.raises(HintsNotSupportedError, match="does not accept colour hints"):
        eccv16.predict(eccv16.prepare(gray), hints=hints)


def test_out_of_bounds_hints_fail_before_any_work() -> None:
    colorizer = Colorizer(HintModel(), device="cpu")
    with pytest.raises(HintError, match="outside"):
        colorizer.colorize(_gray_of(_scene()), hints=Hints.from_points([(500, 1, "#ff0000")]))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_hints_in_stored_coordinates_follow_the_exif_orientation(tmp_path: Path,
                                                                 orientation: int) -> None:
    stored = np.zeros((6, 10, 3), np.uint8)
    path = tmp_path / "photo.png"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, exif=exif.tobytes())
    (tmp_path / "h.json").write_text(json.dumps([{"x": 7, "y": 1, "color": "#ff0000"}]))
    hints = load_hints(tmp_path / "h.json", image_path=path)
    marked = np.zeros((6, 10), np.uint8)
    marked[1, 7] = 1
    upright = _apply_orientation(marked, orientation)
    assert read_image(path).pixels.shape[:2] == upright.shape
    ys, xs = np.nonzero(upright)
    assert (hints.x.tolist(), hints.y.tolist()) == ([int(xs[0])], [int(ys[0])])
    # a hint image of the stored size turns with it
    rgba = np.zeros((6, 10, 4), np.uint8)
    rgba[1, 7] = (255, 0, 0, 255)
    Image.fromarray(rgba).save(tmp_path / "h.png")
    from_image = load_hints(tmp_path / "h.png", image_path=path)
    assert (from_image.x.tolist(), from_image.y.tolist()) == ([int(xs[0])], [int(ys[0])])
    assert from_image.image_size == (upright.shape[1], upright.shape[0])


# ---------------------------------------------------------------------------- suggestions


def test_suggestions_are_sorted_distinct_and_sum_to_at_most_one() -> None:
    colorizer = Colorizer(HintModel(), device="cpu")
    prepared = colorizer.prepare(_gray_of(_scene()))
    prediction = colorizer.predict(prepared)
    for x, y in ((0, 0), (40, 30), (79, 63)):
        swatches = colorizer.suggest_colours(prepared, prediction, x, y, k=5)
        assert 1 <= len(swatches) <= 5
        probabilities = [s.probability for s in swatches]
        assert probabilities == sorted(probabilities, reverse=True)
        assert 0 < sum(probabilities) <= 1 + 1e-6
        assert len({s.hex for s in swatches}) == len(swatches)
        abs_ = np.array([s.ab for s in swatches])
        gaps = np.linalg.norm(abs_[:, None] - abs_[None], axis=2) + np.eye(len(swatches)) * 99
        assert gaps.min() > 5
        for s in swatches:
            assert s.hex.startswith("#") and len(s.hex) == 7
    # a peaked distribution (a followed hint) gives that colour first, with most of the mass
    scene = _scene()
    hints = Hints.from_points(_points(scene))
    guided = colorizer.predict(prepared, hints=hints)
    x, y = _points(scene)[0]["x"], _points(scene)[0]["y"]
    first = suggest_colours(guided, prepared, x, y, k=3)[0]
    want = _lab(scene)[1:, y, x]
    assert np.linalg.norm(np.array(first.ab) - want) < 8 and first.probability > 0.5
    with pytest.raises(HintError, match="outside"):
        suggest_colours(guided, prepared, 500, 0)
