"""The earlier colorizer designs as baselines: trained by their one command on tiny synthetic
photos, found by name, scored side by side by ``chromatize eval --models``, kept out of the
editors, refused where they cannot work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from chromatize.color import rgb_to_lab
from chromatize.errors import ChromatizeError
from chromatize.models.densenet import DenseNetRegressor
from chromatize.pipeline import Colorizer
from chromatize.registry import MODELS, list_models

BRIGHT_YELLOW = (235, 215, 60)  # L ~ 86, b ~ +75
DARK_BLUE = (35, 55, 150)  # L ~ 27, b ~ -55
BACKBONE = "models/mobilenet_v2_1.0_224_quant.tflite"
QUICK = ["--budget-minutes", "0.3", "--crop", "64", "--batch", "8", "--workers", "0",
         "--val-photos", "4", "--seconds-per-eval-photo", "0.5"]


def blocks_photo(rng: np.random.Generator, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    """Random bright-yellow and dark-blue rectangles with a little noise: colour follows
    lightness, so even a patch classifier can learn it."""
    h, w = size
    photo = np.empty((h, w, 3), np.float32)
    photo[:] = DARK_BLUE
    for _ in range(3):
        y, x = rng.integers(0, h - 24), rng.integers(0, w - 24)
        photo[y : y + rng.integers(24, h // 2 + 24), x : x + rng.integers(24, w // 2 + 24)] = \
            BRIGHT_YELLOW
    return np.clip(photo + rng.normal(0, 4, photo.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    (root / "scenes").mkdir()
    rng = np.random.default_rng(3)
    for i in range(60):
        Image.fromarray(blocks_photo(rng)).save(root / "scenes" / f"p{i:03d}.png")
    return root


def half_and_half() -> np.ndarray:
    """Left half bright yellow, right half dark blue, as sRGB floats."""
    image = np.empty((96, 128, 3), np.float32)
    image[:, :64] = np.array(BRIGHT_YELLOW) / 255
    image[:, 64:] = np.array(DARK_BLUE) / 255
    return image


def gray_of(rgb: np.ndarray) -> np.ndarray:
    from chromatize.color import lightness_to_gray

    lab = rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1))
    return lightness_to_gray(lab[0]).numpy().astype(np.float32)


def train(name: str, data: Path, out: Path, *extra: str) -> dict:
    from chromatize.training.baselines import main

    assert main([name, "--data", str(data), "--out", str(out), *QUICK, *extra]) == 0
    meta = _metadata(out)
    return json.loads(meta["facts"])


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return dict(f.metadata())


def assert_colour_follows_lightness(colorizer: Colorizer) -> None:
    out = np.asarray(colorizer.colorize(gray_of(half_and_half())), np.float32)
    lab = rgb_to_lab(torch.from_numpy(out).permute(2, 0, 1))
    yellow_b = float(lab[2, 16:80, 8:52].mean())
    blue_b = float(lab[2, 16:80, 76:120].mean())
    assert yellow_b > 15 and blue_b < -10, (yellow_b, blue_b)
    truth = rgb_to_lab(torch.from_numpy(gray_of(half_and_half()))[None].expand(3, -1, -1))
    assert torch.allclose(lab[0], truth[0], atol=1.0)  # lightness kept


@pytest.fixture(scope="module")
def trained(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """densenet and som trained once into a weights cache folder."""
    cache = tmp_path_factory.mktemp("cache")
    for name in ("densenet", "som"):
        train(name, photos, cache / MODELS[name].filename)
    return {"cache": cache}


@pytest.fixture()
def cache_with_baselines(trained: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHROMATIZE_CACHE_DIR", str(trained["cache"]))
    return trained["cache"]


@pytest.mark.parametrize("name", ["densenet", "som"])
def test_a_trained_baseline_colours_by_name_from_the_cache(name, cache_with_baselines):
    colorizer = Colorizer(name)
    assert colorizer.output_kind == "ab" and colorizer.engine == "torch"
    assert_colour_follows_lightness(colorizer)


def test_som_training_tries_every_patch_and_som_size_and_ships_its_choice(photos, tmp_path):
    out = tmp_path / "som.safetensors"
    facts = train("som", photos, out, "--trial-share", "0.05")
    tried = {(t["cells"], t["patch"]) for t in facts["trials"]}
    assert {p for c, p in tried if c == 100} == {3, 5, 11}
    assert {c for c, p in tried if p == facts["patch"]} == {9, 25, 100, 400}
    best = max(facts["trials"], key=lambda t: t["score"])
    assert (facts["cells"], facts["patch"]) == (best["cells"], best["patch"])
    model = Colorizer("som", weights=out).model
    assert (model.cells, model.patch) == (facts["cells"], facts["patch"])
    assert facts["decoding"] == ("mean" if float(model.mean_decode) else "most probable cell")


def test_som_decodings_show_a_cell_colour_or_the_mean_of_them():
    from chromatize.models.som_patch import SOMPatchClassifier

    model = SOMPatchClassifier(cells=2, patch=3).eval()
    model.cell_ab.copy_(torch.tensor([[40.0, 0.0], [0.0, -40.0]]))
    lightness = torch.rand(1, 1, 16, 16) * 100
    shown = model(lightness)
    cells = {tuple(v) for v in shown.permute(0, 2, 3, 1).reshape(-1, 2).tolist()}
    assert cells <= {(40.0, 0.0), (0.0, -40.0)}
    model.mean_decode.fill_(1.0)
    probabilities = model.cell_logits(lightness).softmax(1)
    expected = 40.0 * torch.stack([probabilities[:, 0], -probabilities[:, 1]], 1)
    assert torch.allclose(model(lightness), expected, atol=1e-4)


def test_fusion_trains_with_the_imagenet_embedding(photos, tmp_path, shared_dir):
    out = tmp_path / "fusion.safetensors"
    facts = train("fusion", photos, out, "--backbone", str(shared_dir / BACKBONE),
                  "--budget-minutes", "0.5", "--lr", "3e-3")
    assert facts["chosen_at_fraction"] in (0.5, 0.75, 1.0)
    colorizer = Colorizer("fusion", weights=out)
    assert_colour_follows_lightness(colorizer)
    # the embedding is the ImageNet classifier, unchanged by training
    from chromatize.models.tflite_convert import load_classifier

    reference = load_classifier(shared_dir / BACKBONE).state_dict()
    got = colorizer.model.embedding.state_dict()
    key = "classifier.weight"
    assert torch.allclose(got[key], reference[key].half().float())


def test_fusion_without_a_backbone_says_what_it_needs(photos, tmp_path, capsys):
    from chromatize.training.baselines import main

    with pytest.raises(ChromatizeError, match="--backbone"):
        main(["fusion", "--data", str(photos), "--out", str(tmp_path / "f.safetensors"), *QUICK])
    assert not (tmp_path / "f.safetensors").exists()


def test_training_keeps_an_existing_file(photos, tmp_path, capsys):
    from chromatize.training.baselines import main

    out = tmp_path / "densenet.safetensors"
    out.write_bytes(b"mine")
    assert main(["densenet", "--data", str(photos), "--out", str(out), *QUICK]) == 1
    assert out.read_bytes() == b"mine" and "--overwrite" in capsys.readouterr().err


def test_models_all_lists_the_baselines_and_the_editors_do_not(cache_with_baselines, capsys):
    from chromatize.cli import main

    assert main(["models"]) == 0
    plain = capsys.readouterr().out
    assert main(["models", "--all"]) == 0
    everything = capsys.readouterr().out
    for name in ("fusion", "densenet", "som"):
        assert f"\n{name} " not in plain
        assert f"\n{name} " in everything
    assert "\ndensenet  cached" in everything and "\nfusion    missing" in everything
    assert [s.name for s in list_models()] == ["mobile", "eccv16"]
    from chromatize.worker import _info

    assert [m["name"] for m in _info()["models"]] == ["mobile", "eccv16"]
    from chromatize_gimp.install import _model_entries

    assert [m["name"] for m in _model_entries()] == ["mobile", "eccv16"]


def test_a_missing_baseline_says_how_to_train_it(tmp_path, monkeypatch):
    from chromatize.errors import ModelUnavailableError

    monkeypatch.setenv("CHROMATIZE_CACHE_DIR", str(tmp_path))
    with pytest.raises(ModelUnavailableError) as info:
        Colorizer("fusion")
    message = str(info.value)
    assert "python -m chromatize.training.baselines fusion --data PHOTOS --backbone" in message


@pytest.fixture(scope="module")
def eval_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(11)
    for i in range(3):
        Image.fromarray(blocks_photo(rng)).save(folder / f"e{i}.png")
    return folder


def test_eval_models_all_prints_one_table_and_one_sheet_row_per_design(
        cache_with_baselines, eval_folder, tmp_path, capsys):
    from chromatize.cli import main

    sheet, data = tmp_path / "sheet.png", tmp_path / "all.json"
    assert main(["eval", str(eval_folder), "--models", "all", "--contact-sheet", str(sheet),
                 "--json", str(data)]) == 0
    table = capsys.readouterr().out
    header = table.splitlines()[1].split()
    assert header == ["metric", "gray", "densenet", "som", "mobile"]
    for label in ("AuC raw (%)", "AuC class-rebalanced (%)", "PSNR RGB (dB)", "colourfulness",
                  "harm: pixels >=10 worse than gray (%)", "photos worse than gray",
                  "mean L2 ab distance", "pixels within 2 ab (%)", "pixels within 5 ab (%)",
                  "pixels within 10 ab (%)"):
        assert label in table
    assert "not scored: fusion:" in table and "--backbone" in table
    assert "not scored: eccv16:" in table and "chromatize models download eccv16" in table
    report = json.loads(data.read_text())
    scored = {m["name"]: m for m in report["models"]}
    from chromatize.registry import get_spec

    # each model at its own default: none for a regression, mobile's from its class
    assert scored["densenet"]["temperature"] is None
    assert scored["mobile"]["temperature"] == get_spec("mobile").default_temperature
    # each column is what `chromatize eval --model NAME` reports on its own
    assert main(["eval", str(eval_folder), "--model", "som", "--json",
                 str(tmp_path / "som.json")]) == 0
    alone = json.loads((tmp_path / "som.json").read_text())
    assert scored["som"]["summary"] == pytest.approx(alone["model"])
    assert report["gray"] == pytest.approx(alone["gray"])
    rows = 2 + len(scored)  # gray, each model, the originals
    assert Image.open(sheet).height == rows * (128 + 4) - 4


def test_eval_models_refuses_what_it_cannot_do(eval_folder, tmp_path, capsys):
    from chromatize.cli import main

    with pytest.raises(SystemExit):
        main(["eval", str(eval_folder), "--models", "mobile,nope"])
    assert "expected 'all' or model names" in capsys.readouterr().err
    assert main(["eval", str(eval_folder), "--models", "mobile", "--hints", "10"]) == 1
    assert "use it with --model, not --models" in capsys.readouterr().err
    assert main(["eval", str(eval_folder), "--models", "all", "--classifier", "x.tflite"]) == 1
    assert "needs both --classifier TFLITE and --synsets TXT" in capsys.readouterr().err


def test_semantic_test_classifies_the_named_imagenet_photos(shared_dir, tmp_path):
    from chromatize.comparison import compare_models
    from chromatize.semantic import ImageNetClassifier

    folder = tmp_path / "imagenet"
    folder.mkdir()
    sample = sorted((shared_dir / "data/train/imagenet_sample").iterdir())[::250][:4]
    for f in sample:
        (folder / f.name).write_bytes(f.read_bytes())
    Image.fromarray(blocks_photo(np.random.default_rng(0))).save(folder / "zz_no_synset.png")
    classifier = ImageNetClassifier(shared_dir / BACKBONE,
                                    shared_dir / "data/imagenet_sample_synsets.txt")
    report = compare_models(folder, ["mobile"], classifier=classifier)
    assert report.semantic_photos == len(sample)  # the unnamed photo is not counted
    originals = [classifier.top1(np.asarray(Image.open(f).convert("RGB")))
                 == classifier.true_class(f) for f in sample]
    assert report.top1_originals == pytest.approx(100 * sum(originals) / len(sample))
    assert report.top1_originals >= 50  # the classifier recognises true-colour photos
    assert report.models[0].top1 is not None and report.top1_gray is not None
    assert "ImageNet top-1 (%), 4 photos" in report.format_table()


def test_ab_models_refuse_what_needs_a_distribution():
    from chromatize.engine import EngineUnavailableError
    from chromatize.models.contract import HintsNotSupportedError
    from chromatize.sequence import SequenceColorizer

    colorizer = Colorizer(DenseNetRegressor())
    with pytest.raises(ChromatizeError, match="set temporal off"):
        SequenceColorizer(colorizer, temporal="on")
    SequenceColorizer(colorizer, temporal="off")  # frame by frame works
    with pytest.raises(EngineUnavailableError, match="baseline runs in torch"):
        Colorizer(DenseNetRegressor(), engine="onnx")
    image = np.full((32, 32), 0.5, np.float32)
    prediction = colorizer.predict(colorizer.prepare(image))
    assert prediction.logits is None and prediction.ab.shape[0] == 2
    with pytest.raises(ChromatizeError, match="not a distribution"):
        prediction.probabilities()
    from chromatize.hints import Hints

    with pytest.raises(HintsNotSupportedError):
        colorizer.colorize(image, hints=Hints.from_points([(4, 4, "#ff0000")]))


def test_report_sets_link_the_held_out_photos_and_refuse_an_existing_folder(tmp_path):
    from chromatize.training.data import Split
    from chromatize.training.report_sets import main, report_files

    data = tmp_path / "data"
    for source in ("imagenet_sample", "scenes"):
        (data / source).mkdir(parents=True)
        for i in range(150):
            name = f"n{i:08d}_thing.png" if source == "imagenet_sample" else f"s{i:03d}.png"
            Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(data / source / name)
    out = tmp_path / "report"
    assert main(["--data", str(data), "--selection-sample", "5", str(out)]) == 0
    held_out = set(Split().files(data)[1])
    validation = sorted((out / "validation").iterdir())
    expected = report_files(data, selection=5)
    assert [p.resolve() for p in validation] == [f.resolve() for f in expected]
    assert not set(expected) & set(Split().validation_sample(data, 5))
    assert validation and all(p.resolve() in held_out for p in validation)
    imagenet = sorted((out / "imagenet").iterdir())
    assert imagenet and all(p.name.startswith("n") and p.resolve() in held_out
                            and p.resolve().parent.name == "imagenet_sample" for p in imagenet)
    assert main(["--data", str(data), str(out)]) == 1
