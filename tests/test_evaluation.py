"""Metrics of chromatize.evaluation against values worked out by hand, and evaluate_folder on real
files with the real shipped model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from chromatize.evaluation import (
    AucAccumulator,
    auc_scores,
    colourfulness,
    evaluate_folder,
    psnr,
    true_classes_chunked,
)
from chromatize.options import ColorizeOptions


def _ab(*pixels: tuple[float, float]) -> torch.Tensor:
    """ab (2, 1, N) from a list of (a, b) pixels."""
    return torch.tensor(pixels, dtype=torch.float32).T[:, None, :]


def test_auc_scores_count_the_integer_thresholds_each_error_stays_under():
    truth = _ab((0, 0), (0, 0), (0, 0), (0, 0), (10, 10))
    pred = _ab((0, 0), (3, 0), (0.5, 0), (200, 0), (10, 10 + 150))
    # error 0 -> all 151 thresholds; 3 -> t=3..150 (148); 0.5 -> t=1..150 (150); 200 -> none;
    # exactly 150 -> only t=150 (1)
    expected = torch.tensor([151, 148, 150, 0, 1], dtype=torch.float32) / 151
    assert torch.allclose(auc_scores(pred, truth), expected)


def test_rebalanced_auc_weights_every_true_colour_class_equally():
    truth = _ab((0, 0), (0, 0), (0, 0), (50, 50))
    pred = _ab((0, 0), (0, 0), (0, 0), (250, 50))  # the lone (50, 50) pixel is 200 off
    acc = AucAccumulator()
    acc.add(pred, truth)
    assert acc.raw == pytest.approx(75.0)
    assert acc.rebalanced == pytest.approx(50.0)  # class (0,0): 100 %, class (50,50): 0 %
    # accumulating a second image pools pixels per class (not a per-image average)
    acc.add(_ab((50, 50)), _ab((50, 50)))
    assert acc.raw == pytest.approx(400 / 5)
    assert acc.rebalanced == pytest.approx(75.0)  # (100 + 50) / 2


def test_psnr_of_a_uniform_error_of_a_tenth_is_20_db():
    a = np.zeros((4, 5, 3))
    assert psnr(a + 0.1, a) == pytest.approx(20.0)
    assert psnr(a, a) == math.inf


def test_colourfulness_hand_computed():
    red = np.zeros((1, 2, 3))
    red[0, 0, 0] = 1.0  # one pure red pixel, one black pixel
    # rg = [255, 0], yb = [127.5, 0]: sd = means = (127.5, 63.75) -> 1.3 * hypot(127.5, 63.75)
    assert colourfulness(red) == pytest.approx(1.3 * math.hypot(127.5, 63.75))
    uniform = np.broadcast_to(np.array([1.0, 0.0, 0.0]), (3, 3, 3))
    assert colourfulness(uniform) == pytest.approx(0.3 * math.hypot(255, 127.5))
    assert colourfulness(np.full((3, 3, 3), 0.4)) == 0.0


def test_chunked_classes_match_unchunked(monkeypatch):
    import chromatize.evaluation as ev

    ab = torch.randn(2, 30, 40) * 40
    whole = ev.true_classes(ab)
    monkeypatch.setattr(ev, "_CLASS_CHUNK", 97)  # many uneven chunks
    assert torch.equal(true_classes_chunked(ab), whole)


@pytest.fixture()
def colour_folder(tmp_path):
    """Two real PNG photos: a uniform orange and a blue-over-green 'landscape'."""
    orange = np.zeros((64, 96, 3), np.uint8)
    orange[...] = (230, 120, 40)
    Image.fromarray(orange).save(tmp_path / "a_orange.png")
    scene = np.zeros((64, 96, 3), np.uint8)
    scene[:32] = (90, 150, 230)
    scene[32:] = (60, 140, 50)
    Image.fromarray(scene).save(tmp_path / "b_scene.png")
    return tmp_path


def test_evaluate_folder_scores_the_gray_baseline_exactly(colour_folder, tmp_path):
    from skimage.color import rgb2lab

    sheet = tmp_path / "sheet.png"
    report = evaluate_folder(colour_folder, ColorizeOptions(device="cpu"), contact_sheet=sheet)
    assert report.count == 2
    # Gray baseline of the uniform orange photo: every pixel is |ab| off (skimage's Lab).
    lab = rgb2lab(np.array([[[230, 120, 40]]], np.uint8))[0, 0]
    chroma = math.hypot(lab[1], lab[2])
    expected = 100 * (151 - math.ceil(chroma)) / 151
    orange = report.images[0]
    assert orange.name == "a_orange.png"
    assert orange.gray["auc_raw"] == pytest.approx(expected, abs=0.7)
    assert orange.gray["auc_rebalanced"] == pytest.approx(orange.gray["auc_raw"], abs=1e-6)
    assert orange.gray["colourfulness"] == pytest.approx(0.0, abs=1e-6)
    # the model colours something: its output is not gray
    assert report.model["colourfulness"] > 1.0
    assert report.truth_colourfulness > report.model["colourfulness"] * 0.1
    img = np.asarray(Image.open(sheet))
    assert img.shape[0] == 2 * 192 + 4  # two rows of 192 px, one 4 px gap
    assert img.shape[1] == 3 * 288 + 2 * 4  # gray | ours | original at 192 px high (3:2)
    with pytest.raises(Exception, match="already exists"):
        evaluate_folder(colour_folder, ColorizeOptions(device="cpu"), contact_sheet=sheet,
                        limit=1)
