"""Training tooling for ``mobile``: the held-out split, source-weighted sampling, the checkpoint
selection score, and a real (tiny) training run with resume and export."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from chromatize.training.data import (
    RandomCrops,
    Split,
    is_held_out,
    is_scene,
    sampling_weights,
    source_of,
)
from chromatize.training.train import MAX_PSNR_DROP, selection_score


def make_photos(root: Path, per_source: dict[str, int], size: tuple[int, int] = (96, 64)) -> None:
    """Small colour JPEGs (gradients with a coloured square) in one folder per source."""
    rng = np.random.default_rng(0)
    for source, n in per_source.items():
        (root / source).mkdir(parents=True)
        for i in range(n):
            w, h = size
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None]
            img[..., 2] = np.linspace(255, 0, h, dtype=np.uint8)[:, None]
            side = min(24, w // 2, h // 2)
            x, y = rng.integers(0, w - side), rng.integers(0, h - side)
            img[y : y + side, x : x + side] = rng.integers(0, 256, 3, dtype=np.uint8)
            Image.fromarray(img).save(root / source / f"{source}_{i:04d}.jpg", quality=92)


def test_split_holds_out_scenes_at_their_own_fraction(tmp_path: Path) -> None:
    make_photos(tmp_path, {"caltech101": 300, "bsds432": 300}, size=(8, 8))
    split = Split(val_fraction=0.03, scene_val_fraction=0.25)
    train, val = split.files(tmp_path)
    assert set(train).isdisjoint(val) and len(train) + len(val) == 600
    held = Counter(source_of(f, tmp_path) for f in val)
    # 300 hash draws each: binomial 3 % and 25 % (bounds at ~4 standard deviations)
    assert 0 <= held["caltech101"] <= 21
    assert 50 <= held["bsds432"] <= 100
    assert split.files(tmp_path) == (train, val), "the split must be deterministic"


def test_split_is_nested_in_the_fraction(tmp_path: Path) -> None:
    """A photo held out at 3 % stays held out at 10 %: a model trained with the smaller split
    never saw any photo of it, so old and new models can be compared on it."""
    make_photos(tmp_path, {"bsds432": 400}, size=(8, 8))
    _, small = Split(0.03, 0.03).files(tmp_path)
    _, large = Split(0.03, 0.10).files(tmp_path)
    assert small and set(small) < set(large)
    assert all(is_held_out(f, tmp_path, 0.10) for f in small)


def test_caltech_is_the_object_source_and_everything_else_scenes(tmp_path: Path) -> None:
    for rel in ("caltech101/a.jpg", "sun_hays80/b.jpg", "urban100/c.jpg", "loose.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    assert not is_scene(tmp_path / "caltech101/a.jpg", tmp_path)
    assert is_scene(tmp_path / "sun_hays80/b.jpg", tmp_path)
    assert is_scene(tmp_path / "urban100/c.jpg", tmp_path)
    assert source_of(tmp_path / "loose.jpg", tmp_path) == ""


def test_sampling_weights_give_objects_their_share(tmp_path: Path) -> None:
    files = [tmp_path / "caltech101" / f"{i}.jpg" for i in range(30)]
    files += [tmp_path / "bsds432" / f"{i}.jpg" for i in range(10)]
    w = np.array(sampling_weights(files, tmp_path, 0.4))
    assert w[:30].sum() == pytest.approx(0.4) and w[30:].sum() == pytest.approx(0.6)
    assert np.ptp(w[:30]) == 0 and np.ptp(w[30:]) == 0
    draws = torch.multinomial(torch.tensor(w), 20000, replacement=True, generator=
                              torch.Generator().manual_seed(0))
    assert (draws < 30).float().mean().item() == pytest.approx(0.4, abs=0.02)
    assert sampling_weights(files, tmp_path, None) == [1.0] * 40
    with pytest.raises(ValueError, match="object share"):
        sampling_weights(files, tmp_path, 1.5)


def test_selection_score_hand_computed() -> None:
    gray = {"auc_rebalanced": 60.0, "psnr": 23.0}
    inside = {"auc_rebalanced": 66.5, "psnr": 23.0 - MAX_PSNR_DROP, "colourfulness": 20.0}
    assert selection_score(inside, gray, 40.0) == pytest.approx(6.5)
    # 0.25 dB beyond the PSNR allowance costs 2.5 points
    over = {**inside, "psnr": 23.0 - MAX_PSNR_DROP - 0.25}
    assert selection_score(over, gray, 40.0) == pytest.approx(4.0)
    # 40 % of the originals' colourfulness is 10 % short of half: 10 points
    pale = {**inside, "colourfulness": 16.0}
    assert selection_score(pale, gray, 40.0) == pytest.approx(-3.5)


def test_random_crops_are_sized_targets_at_a_quarter(tmp_path: Path) -> None:
    make_photos(tmp_path, {"bsds432": 2})
    item = RandomCrops(sorted((tmp_path / "bsds432").iterdir()))[0]
    assert item["l"].shape == (1, 176, 176)
    assert item["idx"].shape == (5, 44, 44) and item["w"].shape == (5, 44, 44)
    assert torch.allclose(item["w"].float().sum(0), torch.ones(44, 44), atol=1e-2)
    assert 0.0 <= float(item["l"].min()) and float(item["l"].max()) <= 100.0


@pytest.mark.slow
def test_tiny_training_run_resumes_and_exports(tmp_path: Path, shared_dir: Path) -> None:
    """Real training loop on a few synthetic photos with the real backbone: checkpoints, the
    held-out scene metrics, resume from last.pt, and export to loadable fp16 safetensors."""
    pytest.importorskip("tflite", reason="training needs the 'train' extra (tflite)")
    from safetensors import safe_open

    from chromatize.training import export, train
    from chromatize.weights import load_model

    data = tmp_path / "data"
    make_photos(data, {"caltech101": 12, "bsds432": 12})
    out = tmp_path / "run"
    args = ["--out", str(out), "--data", str(data), "--backbone",
            str(shared_dir / "models" / "mobilenet_v2_1.0_224_quant.tflite"),
            "--scene-val-fraction", "0.3", "--crop", "64", "--batch", "4", "--workers", "0",
            "--budget-minutes", "0.05", "--eval-minutes", "1", "--warmup-steps", "2"]
    assert train.main(args) == 0
    first = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(first) == 1 and first[0]["step"] > 0
    assert set(first[0]["per_temperature"]) == {str(t) for t in train.TEMPERATURES}
    assert np.isfinite(first[0]["loss"]) and np.isfinite(first[0]["score"])
    prior = json.loads((out / "prior.json").read_text())
    assert prior["scene_val_fraction"] == 0.3 and sum(prior["counts"]) > 0
    steps = first[0]["step"]

    assert train.main([*args[:-6], "--budget-minutes", "0.1", "--eval-minutes", "1",
                       "--warmup-steps", "2", "--resume"]) == 0
    second = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(second) == 2 and second[1]["step"] > steps, "resume continues the step count"

    weights = tmp_path / "mobile.safetensors"
    export.export(out / "best.pt", weights, temperature=None, overwrite=False)
    with safe_open(weights, "pt") as fh:
        meta = fh.metadata()
        assert all(fh.get_tensor(k).dtype in (torch.float16, torch.int64) for k in fh.keys())
    assert len(json.loads(meta["prior_counts"])) == 313
    assert float(meta["default_temperature"]) in train.TEMPERATURES
    model = load_model("mobile", weights=weights)
    logits = model(torch.full((1, 1, 64, 64), 50.0))
    assert logits.shape == (1, 313, 16, 16) and torch.isfinite(logits).all()
    with pytest.raises(SystemExit, match="exists"):
        export.export(out / "best.pt", weights, temperature=None, overwrite=False)
