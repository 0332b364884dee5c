"""Metrics of chromatize.evaluation against values worked out by hand, and evaluate_folder on real
files with the real shipped model and with small contract models whose output is known (one
colour everywhere, the hint's colour near hints)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from chromatize import bins
from chromatize.color import lab_to_rgb, lightness_to_gray, rgb_to_lab
from chromatize.evaluation import (
    AucAccumulator,
    auc_scores,
    colourfulness,
    evaluate_folder,
    hint_seed,
    psnr,
    true_classes_chunked,
)
from chromatize.hints import sample_hints
from chromatize.models.contract import HINT_AB_SCALE, HintsNotSupportedError
from chromatize.options import ColorizeOptions
from chromatize.pipeline import Colorizer


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


def test_evaluate_folder_reports_harm_and_the_regression_measures(colour_folder):
    """harm, worse than gray, mean L2 ab, within 2/5/10 and chroma are what numpy gives on the
    very outputs the shipped model makes for these photos (pooled over all pixels)."""
    report = evaluate_folder(colour_folder, ColorizeOptions(device="cpu"))
    colorizer = Colorizer.from_options(ColorizeOptions(device="cpu"))
    distances, gains, chromas, worse = [], [], [], 0
    for f in sorted(colour_folder.glob("*.png")):
        rgb = torch.from_numpy(np.asarray(Image.open(f), np.float32) / 255).permute(2, 0, 1)
        lab = rgb_to_lab(rgb)
        gray = lightness_to_gray(lab[0]).clamp(0, 1).numpy()
        out = np.asarray(colorizer.colorize(gray), np.float32)
        out_ab = rgb_to_lab(torch.from_numpy(out).permute(2, 0, 1))[1:].numpy()
        true_ab = lab[1:].numpy()
        d = np.hypot(*(out_ab - true_ab)).ravel()
        gray_d = np.hypot(*true_ab).ravel()
        distances.append(d)
        gains.append(d - gray_d)
        chromas.append(np.hypot(*out_ab).ravel())
        worse += int(d.mean() > gray_d.mean())
    d, gain = np.concatenate(distances), np.concatenate(gains)
    m = report.model
    assert m["harm"] == pytest.approx(100 * np.mean(gain >= 10), abs=1e-9)
    assert (m["worse_than_gray"], m["photos"]) == (worse, 2)
    assert m["l2_ab"] == pytest.approx(d.mean(), rel=1e-5)
    for t in (2, 5, 10):
        assert m[f"within_{t}"] == pytest.approx(100 * np.mean(d <= t), abs=1e-9)
    assert m["chroma"] == pytest.approx(np.concatenate(chromas).mean(), rel=1e-5)
    # gray itself: never worse than gray, its distance is the truth's chroma
    g = report.gray
    assert (g["harm"], g["worse_than_gray"], g["chroma"]) == (0.0, 0.0, 0.0)
    assert g["l2_ab"] == pytest.approx(report.truth_chroma, rel=1e-6)
    table = report.format_table()
    for label in ("harm: pixels >=10 worse than gray (%)", "photos worse than gray",
                  "mean L2 ab distance", "pixels within 5 ab (%)", "mean chroma |ab|"):
        assert label in table
    assert f"{worse}/2" in table and "0/2" in table


class OneColourModel(nn.Module):
    """A contract model that paints one ab bin everywhere and, given hints, the bin nearest to
    the hint's colour in every 4x4 cell a hint touches (a model that follows hints)."""

    logit_scale = 1.0
    default_input_size = 64
    default_temperature = 0.38
    stride = 8

    def __init__(self, ab: tuple[float, float], accepts_hints: bool = True) -> None:
        super().__init__()
        self.accepts_hints = accepts_hints
        self.bin = int(bins.nearest_bins(torch.tensor(ab).view(1, 2, 1, 1), 1)[0].item())

    @staticmethod
    def _peaked(index: torch.Tensor) -> torch.Tensor:
        return F.one_hot(index, bins.NUM_BINS).permute(0, 3, 1, 2).float() * 100.0

    def forward(self, l: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:  # noqa: E741
        n, _, h, w = l.shape
        logits = self._peaked(torch.full((n, h // 4, w // 4), self.bin))
        if hints is None:
            return logits
        cover = F.avg_pool2d(hints[:, 2:3], 4)
        ab = F.avg_pool2d(hints[:, :2] * HINT_AB_SCALE, 4) / cover.clamp_min(1e-6)
        hinted = self._peaked(bins.nearest_bins(ab, 1)[0][:, 0])
        return torch.where(cover > 0, hinted, logits)


def _write(path, rgb):
    Image.fromarray(np.asarray(rgb, np.uint8)).save(path)


def test_harm_and_worse_than_gray_of_a_known_output(tmp_path):
    """A model that paints ab (20, 20) everywhere, on a neutral gray photo (truth ab = 0) and on
    a photo of that very colour: every pixel of the first is |(20, 20)| = 28.3 farther off than
    gray (harmed, the photo worse than gray), the second is right (within 2, not harmed)."""
    _write(tmp_path / "a_neutral.png", np.full((32, 48, 3), 119))
    tinted = lab_to_rgb(torch.tensor([60.0, 20.0, 20.0]).view(3, 1, 1)).flatten() * 255
    _write(tmp_path / "b_tinted.png", np.broadcast_to(np.round(tinted.numpy()), (32, 48, 3)))
    report = evaluate_folder(tmp_path, ColorizeOptions(device="cpu"),
                             model=OneColourModel((20, 20)))
    m, g = report.model, report.gray
    assert m["harm"] == pytest.approx(50.0)
    assert (m["worse_than_gray"], m["photos"]) == (1, 2)
    assert m["within_2"] == m["within_5"] == m["within_10"] == pytest.approx(50.0)
    assert m["l2_ab"] == pytest.approx(math.hypot(20, 20) / 2, abs=0.5)
    assert m["chroma"] == pytest.approx(math.hypot(20, 20), abs=0.1)
    assert (g["harm"], g["worse_than_gray"]) == (0.0, 0.0)
    assert g["l2_ab"] == pytest.approx(math.hypot(20, 20) / 2, abs=0.5)
    neutral, tinted_result = report.images
    assert (neutral.model["harm"], neutral.model["worse_than_gray"]) == (100.0, 1.0)
    assert (tinted_result.model["harm"], tinted_result.model["worse_than_gray"]) == (0.0, 0.0)


def test_hints_give_one_column_per_count_through_the_public_hint_path(colour_folder):
    """--hints N: every photo colorized again with N seeded 5x5 hints of the true mean colour;
    PSNR per N is what Colorizer.colorize(gray, hints=sample_hints(...)) gives, more hints help a
    model that follows them, and the output carries the hint colours at the hint pixels."""
    model = OneColourModel((0, 0))
    report = evaluate_folder(colour_folder, ColorizeOptions(device="cpu"), model=model,
                             hints=(1, 10, 100, 10), seed=7)
    assert report.hint_counts == [1, 10, 100] and set(report.hinted) == {"1", "10", "100"}
    colorizer = Colorizer(model, device="cpu")
    for i, f in enumerate(sorted(colour_folder.glob("*.png"))):
        rgb = np.asarray(Image.open(f))
        lab = rgb_to_lab(torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1))
        gray = lightness_to_gray(lab[0]).clamp(0, 1).numpy()
        hints = sample_hints(rgb, 10, hint_seed(7, i), size=5)
        out = colorizer.colorize(gray, hints=hints)
        assert report.images[i].hinted["10"]["psnr"] == pytest.approx(
            psnr(out, rgb / 255.0), rel=1e-5)
    psnrs = [report.model["psnr"]] + [report.hinted[n]["psnr"] for n in ("1", "10", "100")]
    assert psnrs[3] > psnrs[2] > psnrs[0] + 1.0, psnrs
    for n in ("1", "10", "100"):
        assert 0 <= report.hinted[n]["hint_obedience"] <= 6
        assert 0 < report.hinted[n]["hint_pixels"] <= 2 * int(n) * 25
    assert report.hinted["1"]["hint_pixels"] == 2 * 25
    table = report.format_table()
    for label in ("1 hint", "10 hints", "100 hints", "PSNR vs 0 hints (dB)",
                  "hint obedience: median |Δab|", "seed 7"):
        assert label in table
    # another seed puts the hints elsewhere
    other = evaluate_folder(colour_folder, ColorizeOptions(device="cpu"), model=model,
                            hints=(10,), seed=8)
    assert other.hinted["10"]["psnr"] != report.hinted["10"]["psnr"]


def test_a_model_without_hint_inputs_is_refused_before_any_photo(colour_folder):
    seen: list[str] = []
    with pytest.raises(HintsNotSupportedError, match="does not accept colour hints"):
        evaluate_folder(colour_folder, ColorizeOptions(device="cpu"), hints=(10,),
                        model=OneColourModel((0, 0), accepts_hints=False),
                        progress=lambda done, total, name: seen.append(name))
    assert seen == []


def test_cli_eval_with_hints_prints_and_writes_every_number(colour_folder, tmp_path, capsys):
    from chromatize.cli import main

    out = tmp_path / "out" / "metrics.json"
    out.parent.mkdir()
    assert main(["eval", str(colour_folder), "--device", "cpu", "--hints", "1,10",
                 "--seed", "2", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "10 hints" in table and "harm: pixels >=10 worse than gray (%)" in table
    data = json.loads(out.read_text())
    assert data["hint_counts"] == [1, 10] and data["seed"] == 2
    for key in ("psnr", "harm", "worse_than_gray", "l2_ab", "within_2", "within_10", "chroma"):
        assert key in data["model"] and key in data["gray"] and key in data["hinted"]["10"]
    assert data["hinted"]["10"]["hint_obedience"] <= 6
    assert set(data["images"][0]["hinted"]) == {"1", "10"}
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]  # no temporary left


def test_cli_eval_hints_with_eccv16_fails_up_front_in_cli_words(colour_folder, tmp_path,
                                                                capsys):
    from chromatize.cli import main

    out = tmp_path / "metrics.json"
    assert main(["eval", str(colour_folder), "--model", "eccv16", "--hints", "10",
                 "--json", str(out)]) == 1
    err = capsys.readouterr().err
    assert "the eccv16 model does not accept colour hints" in err
    assert "without --hints" in err and "--model" in err
    assert "[1/" not in err  # no photo was processed
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "1,x", "", "-3"])
def test_cli_eval_rejects_bad_hint_counts(colour_folder, value, capsys):
    from chromatize.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(colour_folder), "--hints", value])
    assert exit_info.value.code == 2
    assert "whole numbers >= 1" in capsys.readouterr().err


def test_contact_sheet_rows_labels_and_jpeg(tmp_path):
    from chromatize.errors import OutputError
    from chromatize.evaluation import LABEL_WIDTH, write_contact_sheet

    red = np.zeros((20, 30, 3), np.float32)
    red[..., 0] = 1.0
    rows = [[red, red, red], [red]]
    path = tmp_path / "sheet.jpg"
    write_contact_sheet(path, rows, row_height=40, labels=["one", "two"])
    with Image.open(path) as sheet:
        assert sheet.format == "JPEG"
        assert sheet.size == (LABEL_WIDTH + 3 * 60 + 2 * 4, 2 * 40 + 4)
        pixels = np.asarray(sheet.convert("RGB"), np.float32)
    assert pixels[20, LABEL_WIDTH + 30, 0] > 200 and pixels[20, LABEL_WIDTH + 30, 1] < 60
    assert pixels[60, LABEL_WIDTH + 100].min() > 240  # the short row is padded with white
    assert pixels[:40, :LABEL_WIDTH].min() < 128  # a label was drawn
    with pytest.raises(OutputError, match="already exists"):
        write_contact_sheet(path, rows)
