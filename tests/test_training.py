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

from chromatize.bins import bins_on, nearest_bins
from chromatize.training.data import (
    RandomCrops,
    Split,
    is_held_out,
    is_scene,
    sampling_weights,
    source_of,
)
from chromatize.training.scoring import MAX_PSNR_DROP, TEMPERATURES, selection_score
from chromatize.training.train import decoded_colour_loss


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


def test_logit_adjustment_divides_the_prior_out_to_the_power_alpha() -> None:
    """softmax(z + shift) is softmax(z) times w**alpha, renormalised, with w the rebalancing
    weights; folding it into the head's bias gives the model's logits plus the shift."""
    from chromatize.bins import rebalance_weights
    from chromatize.models.mobile import build_mobile
    from chromatize.training.logit_adjustment import HEAD_BIAS, adjust_state, bias_shift

    prior = torch.arange(1.0, 314.0) ** 2
    prior[:5] = 0  # bins never seen stay finite through the uniform mix
    shift = bias_shift(prior, 0.4, 0.05)
    assert torch.isfinite(shift).all() and abs(float(shift.mean())) < 1e-5
    z = torch.randn(313, dtype=torch.float64)
    w = rebalance_weights(prior, 0.05).double()
    expected = torch.softmax(z, 0) * w**0.4
    torch.testing.assert_close(torch.softmax(z + shift.double(), 0), expected / expected.sum(),
                               rtol=1e-5, atol=1e-7)
    assert float(bias_shift(prior, 0.0).abs().max()) == 0.0
    with pytest.raises(ValueError, match="alpha"):
        bias_shift(prior, -0.1)

    torch.manual_seed(0)
    model = build_mobile().eval()
    x = torch.rand(1, 1, 64, 64) * 100
    with torch.no_grad():
        before = model(x)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        bias = state[HEAD_BIAS].clone()
        model.load_state_dict(adjust_state(state, prior, 0.4, 0.05))
        after = model(x)
    assert torch.equal(state[HEAD_BIAS], bias), "the caller's state is not edited"
    torch.testing.assert_close(after - before, shift.view(1, -1, 1, 1).expand_as(before),
                               atol=1e-4, rtol=0)


def test_scores_are_what_the_pipeline_gives(tmp_path: Path) -> None:
    """Training scores a model by colorizing the held-out photos with the public pipeline: at one
    temperature its metrics are those of ``chromatize.evaluation.evaluate_folder`` (what
    ``chromatize eval`` reports), photos at their own size, and the model's mode is restored."""
    from chromatize.evaluation import evaluate_folder
    from chromatize.models.mobile import build_mobile
    from chromatize.options import ColorizeOptions
    from chromatize.training.scoring import evaluate, load_held_out

    make_photos(tmp_path, {"bsds432": 3}, size=(90, 60))
    files = sorted((tmp_path / "bsds432").iterdir())
    torch.manual_seed(0)
    model = build_mobile().train()
    photos = load_held_out(files)
    assert photos[0].rgb.shape == (60, 90, 3)
    ours = evaluate(model, photos, torch.ones(313), (0.46,))
    assert model.training
    report = evaluate_folder(tmp_path / "bsds432", ColorizeOptions(device="cpu", temperature=0.46),
                             model=model)
    for key, value in report.model.items():
        assert ours["per_temperature"]["0.46"][key] == pytest.approx(value, rel=1e-6), key
    for key, value in report.gray.items():
        assert ours["gray"][key] == pytest.approx(value, rel=1e-6), key
    assert ours["truth_colourfulness"] == pytest.approx(report.truth_colourfulness, rel=1e-6)
    assert ours["temperature"] == 0.46 and np.isfinite(ours["loss"])


def test_commands_need_their_data_folder(tmp_path: Path, capsys) -> None:
    """No command falls back to a development checkout: a missing data folder (or backbone for
    a run starting from the ImageNet encoder) is an argparse error naming the option."""
    from chromatize.training import averaging, check_backbone, recipe, train

    cases = [
        (train.main, ["--out", str(tmp_path)], "--data"),
        (train.main, ["--out", str(tmp_path), "--data", str(tmp_path)], "--backbone"),
        (averaging.main, ["a.pt", "--out", str(tmp_path / "x.pt")], "--data"),
        (recipe.main, ["--runs", str(tmp_path)], "--data"),
        (recipe.main, ["--runs", str(tmp_path), "--data", str(tmp_path)], "--backbone"),
        (check_backbone.main, [], "--shared"),
    ]
    for main, argv, option in cases:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2 and option in capsys.readouterr().err, (argv, option)


def test_training_modules_import_no_cycle() -> None:
    """The layering the team checks with import-linter: no import cycle among the training
    modules, function-local imports included."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("chromatize")
    modules = sorted(m for m in graph.modules if m.startswith("chromatize.training."))
    for importer in modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            assert back is None, f"{importer} -> {imported} -> ... -> {importer}: {back}"


def test_random_crops_are_sized_targets_at_a_quarter(tmp_path: Path) -> None:
    make_photos(tmp_path, {"bsds432": 2})
    item = RandomCrops(sorted((tmp_path / "bsds432").iterdir()))[0]
    assert item["l"].shape == (1, 176, 176)
    assert item["idx"].shape == (5, 44, 44) and item["w"].shape == (5, 44, 44)
    assert torch.allclose(item["w"].float().sum(0), torch.ones(44, 44), atol=1e-2)
    assert 0.0 <= float(item["l"].min()) and float(item["l"].max()) <= 100.0
    # the decoded-colour target is the 4x4-averaged ab, and its nearest bin is the soft target's
    assert item["ab"].shape == (2, 44, 44)
    nearest = nearest_bins(item["ab"].float()[None], 1)[0][0, 0]
    assert (nearest == item["idx"][0].long()).float().mean() > 0.95


def test_decoded_colour_loss_hand_computed() -> None:
    """Logits that put (almost) all mass on one bin decode to its centre; the loss is that centre's
    distance to the truth over 150, cut at 150, times the class weight of the pixel's bin."""
    centre = bins_on(torch.device("cpu"))[100]  # (a, b) of bin 100
    logits = torch.full((1, 313, 1, 3), -50.0)
    logits[:, 100] = 50.0
    # distances 50, 0 and far beyond 150
    truth = torch.stack([centre + torch.tensor([30.0, 40.0]), centre, centre + 400.0], dim=-1)
    truth = truth.reshape(1, 2, 1, 3)
    idx = torch.tensor([7, 8, 9]).reshape(1, 1, 1, 3)
    weights = torch.ones(313)
    weights[7] = 2.0
    loss = decoded_colour_loss(logits, truth, idx, weights)
    assert float(loss) == pytest.approx((2.0 * 50 / 150 + 0.0 + 1.0) / 3, abs=1e-3)
    # a hedging model (a flat distribution: a pale mean) loses less than a confidently wrong one
    wrong = torch.full((1, 313, 1, 1), -50.0)
    wrong[:, 100] = 50.0
    target = (centre + torch.tensor([60.0, 0.0])).reshape(1, 2, 1, 1)
    pale = torch.zeros((1, 313, 1, 1))
    one = torch.zeros((1, 1, 1, 1), dtype=torch.long)
    assert decoded_colour_loss(pale, target, one, weights) < decoded_colour_loss(
        wrong, target, one, weights)


@pytest.mark.slow
def test_tiny_training_run_resumes_and_exports(tmp_path: Path, shared_dir: Path) -> None:
    """Real training loop on a few synthetic photos with the real backbone: checkpoints, the
    held-out scene metrics, resume from last.pt, and export to loadable fp16 safetensors."""
    pytest.importorskip("tflite", reason="training needs the 'train' extra (tflite)")
    from safetensors import safe_open
    from safetensors.torch import load_file

    from chromatize.models.mobile import build_mobile
    from chromatize.training import averaging, export, logit_adjustment, train
    from chromatize.training.logit_adjustment import HEAD_BIAS, bias_shift

    data = tmp_path / "data"
    make_photos(data, {"caltech101": 12, "bsds432": 12})
    out = tmp_path / "run"
    args = ["--out", str(out), "--data", str(data), "--backbone",
            str(shared_dir / "models" / "mobilenet_v2_1.0_224_quant.tflite"),
            "--scene-val-fraction", "0.3", "--crop", "64", "--batch", "4", "--workers", "0",
            "--colour-loss", "2", "--colour-loss-lambda", "0.25",
            "--budget-minutes", "0.05", "--eval-minutes", "1", "--warmup-steps", "2"]
    assert train.main(args) == 0
    first = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(first) == 1 and first[0]["step"] > 0
    assert set(first[0]["per_temperature"]) == {str(t) for t in TEMPERATURES}
    assert np.isfinite(first[0]["loss"]) and np.isfinite(first[0]["score"])
    prior = json.loads((out / "prior.json").read_text())
    assert prior["scene_val_fraction"] == 0.3 and sum(prior["counts"]) > 0
    steps = first[0]["step"]

    assert train.main([*args[:-6], "--budget-minutes", "0.1", "--eval-minutes", "1",
                       "--warmup-steps", "2", "--resume"]) == 0
    second = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(second) == 2 and second[1]["step"] > steps, "resume continues the step count"
    snapshot = tmp_path / "first.pt"
    snapshot.write_bytes((out / "last.pt").read_bytes())

    weights = tmp_path / "mobile.safetensors"
    export.export(out / "best.pt", weights, temperature=None, overwrite=False)
    with safe_open(weights, "pt") as fh:
        meta = fh.metadata()
        assert all(fh.get_tensor(k).dtype in (torch.float16, torch.int64) for k in fh.keys())
    assert len(json.loads(meta["prior_counts"])) == 313
    assert json.loads(meta["colour_loss"]) == {"weight": 2.0, "rebalance_lambda": 0.25}
    assert float(meta["default_temperature"]) in TEMPERATURES
    v1 = build_mobile()  # a run without --hints trains v1 (no hint inputs)
    v1.load_state_dict({k: v.float() if v.is_floating_point() else v
                        for k, v in load_file(weights).items()}, strict=True)
    logits = v1(torch.full((1, 1, 64, 64), 50.0))
    assert logits.shape == (1, 313, 16, 16) and torch.isfinite(logits).all()
    with pytest.raises(SystemExit, match="exists"):
        export.export(out / "best.pt", weights, temperature=None, overwrite=False)

    # Logit adjustment: scanned on the held-out split, then folded into the head's bias at export
    # (which then re-measures the temperature on the adjusted model).
    scan_json = tmp_path / "scan.json"
    assert logit_adjustment.main(["--checkpoint", str(out / "best.pt"), "--data", str(data),
                                  "--alphas", "0", "0.3", "--lambda", "0.1",
                                  "--json", str(scan_json)]) == 0
    scan = json.loads(scan_json.read_text())
    assert [r["alpha"] for r in scan["rows"]] == [0.0, 0.3] and scan["alpha"] in (0.0, 0.3)
    assert scan["rows"][0]["per_temperature"] != scan["rows"][1]["per_temperature"]
    with pytest.raises(SystemExit, match="choose-temperature-on"):
        export.export(out / "best.pt", tmp_path / "adj.safetensors", None, False,
                      logit_adjustment=0.3)
    meta = export.export(out / "best.pt", tmp_path / "adj.safetensors", None, False,
                         choose_on=data, logit_adjustment=0.3, logit_adjustment_lambda=0.1)
    assert json.loads(meta["logit_adjustment"]) == {"alpha": 0.3, "lambda": 0.1}
    # The scan's replayed-logits shortcut measures what the folded model does.
    folded = json.loads(meta["held_out_metrics"])["per_temperature"]
    for t in ("0.38", "1.0"):
        for k, v in scan["rows"][1]["per_temperature"][t].items():
            assert folded[t][k] == pytest.approx(v, rel=1e-3, abs=1e-3), (t, k)
    ckpt = torch.load(out / "best.pt", weights_only=False)
    with safe_open(tmp_path / "adj.safetensors", "pt") as adj, safe_open(weights, "pt") as plain:
        moved = (adj.get_tensor(HEAD_BIAS).float() - plain.get_tensor(HEAD_BIAS).float())
    torch.testing.assert_close(moved, bias_shift(ckpt["prior"], 0.3, 0.1), atol=2e-3, rtol=0)

    # Averaging the two checkpoints after the fact: the mean weights, batch norm re-estimated,
    # scored on the same held-out photos; an existing output is not replaced.
    assert train.main([*args[:-6], "--budget-minutes", "0.15", "--eval-minutes", "1",
                       "--warmup-steps", "2", "--resume"]) == 0
    averaged_path = tmp_path / "averaged.pt"
    cli = [str(snapshot), str(out / "last.pt"), "--out", str(averaged_path), "--data", str(data),
           "--bn-batches", "2"]
    assert averaging.main(cli) == 0
    averaged = torch.load(averaged_path, weights_only=False)
    members = [torch.load(f, weights_only=False)["model"] for f in (snapshot, out / "last.pt")]
    key = "decoder.logits.weight"
    torch.testing.assert_close(averaged["model"][key], (members[0][key] + members[1][key]) / 2)
    assert averaged["metrics"]["averaged_steps"][0] < averaged["metrics"]["averaged_steps"][1]
    assert np.isfinite(averaged["metrics"]["score"]) and "optimizer" not in averaged
    assert [m["step"] for m in averaged["averaged_from"]] == averaged["metrics"]["averaged_steps"]
    meta = export.export(averaged_path, tmp_path / "averaged.safetensors", None, False)
    assert json.loads(meta["averaged_from"]) == averaged["averaged_from"]
    assert averaging.main(cli) == 2


@pytest.mark.slow
def test_tiny_hint_training_run_scores_hints_and_exports_v2(tmp_path: Path,
                                                            shared_dir: Path) -> None:
    """--hints trains mobile v2 on simulated hints: each evaluation scores PSNR with 0/1/10/100
    hints through the public hint path, and the export loads as a model whose hints move its
    logits."""
    pytest.importorskip("tflite", reason="training needs the 'train' extra (tflite)")
    from safetensors import safe_open

    from chromatize.training import export, train
    from chromatize.weights import load_model

    data = tmp_path / "data"
    make_photos(data, {"caltech101": 6, "bsds432": 10})
    out = tmp_path / "run"
    # a hint learning rate 10x the default, so a few seconds move the hint encoder; 0.05 was too
    # hot: in about half the runs every ReLU of its stem died and the hints moved nothing
    args = ["--out", str(out), "--data", str(data), "--backbone",
            str(shared_dir / "models" / "mobilenet_v2_1.0_224_quant.tflite"), "--hints",
            "--hint-free-share", "0", "--hint-val-limit", "2", "--scene-val-fraction", "0.3",
            "--crop", "64", "--batch", "4", "--workers", "0", "--budget-minutes", "0.05",
            "--eval-minutes", "1", "--warmup-steps", "2", "--hint-lr", "0.01"]
    assert train.main(args) == 0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    hint_psnr = metrics[-1]["hint_psnr"]
    assert set(hint_psnr) == {"0", "1", "10", "100"} and all(np.isfinite(list(hint_psnr.values())))
    gain = hint_psnr["10"] - hint_psnr["0"]
    assert metrics[-1]["score"] == pytest.approx(metrics[-1]["automatic_score"] + gain)
    # the network itself answers hints (not only the pipeline's pinned hint pixels)
    assert metrics[-1]["hint_response"] > 0.1

    weights = tmp_path / "v2.safetensors"
    export.export(out / "best.pt", weights, temperature=None, overwrite=False)
    with safe_open(weights, "pt") as fh:
        assert fh.metadata()["format"] == "chromatize-mobile-2"
    model = load_model("mobile", weights=weights)
    # the weights carry the prior the run learned against: the temperature anneals relative to it
    from chromatize.bins import evidence_log_prior
    from chromatize.training.checkpoints import load_checkpoint

    ckpt = load_checkpoint(out / "best.pt")
    expected = evidence_log_prior(ckpt["prior"], float(ckpt["args"]["rebalance_lambda"]),
                                  max_weight=float(ckpt["args"]["max_weight"]))
    assert torch.allclose(model.decode_log_prior, expected, atol=0.02)
    lightness = torch.full((1, 1, 64, 64), 50.0)
    hints = torch.zeros(1, 3, 64, 64)
    hints[0, 0, 28:36, 28:36], hints[0, 2, 28:36, 28:36] = 0.6, 1.0
    with torch.inference_mode():
        guided, automatic = model(lightness, hints), model(lightness)
    assert torch.isfinite(guided).all() and torch.isfinite(automatic).all()
    assert not torch.allclose(guided, automatic)


def test_export_keeps_float32_where_float16_would_overflow(tmp_path: Path) -> None:
    """A hot run can push a batch norm's running variance past float16's 65504; cast to float16
    it turns into inf and every output into NaN. The export keeps such tensors float32 (and
    refuses non-finite weights), so the file loads and colorizes like the checkpoint."""
    from chromatize.models.mobile import build_mobile
    from chromatize.training.checkpoints import fp16_state, write_weights
    from chromatize.weights import load_model

    torch.manual_seed(0)
    trained = build_mobile(hints=True).eval()
    bn = trained.decoder.up16[0][1]
    bn.running_var.fill_(7.5e12)
    bn.running_mean.fill_(1.9e6)
    state = fp16_state(trained)
    assert state["decoder.up16.0.1.running_var"].dtype == torch.float32
    assert state["decoder.up16.0.1.weight"].dtype == torch.float16
    weights = tmp_path / "hot.safetensors"
    write_weights(state, {"format": "chromatize-mobile-2"}, weights, build_mobile(hints=True))
    lightness = torch.rand(1, 1, 64, 64) * 100
    with torch.inference_mode():
        exported = load_model("mobile", weights=weights)(lightness)
        original = trained(lightness)
    assert torch.isfinite(exported).all()
    assert torch.allclose(exported, original, atol=0.05, rtol=0.01)

    bn.running_var[0] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite values in decoder\.up16\.0\.1\.running_var"):
        fp16_state(trained)


def test_hint_simulation_follows_the_paper() -> None:
    """Hint-free share, geometric counts, patch sizes 1..9 and the patch's mean true ab."""
    import random

    from chromatize.training.data import HintSimulation

    sim = HintSimulation(free_share=0.25)
    rng = random.Random(0)
    counts = [sim.count(rng) for _ in range(4000)]
    assert 0.22 < counts.count(0) / len(counts) < 0.28
    drawn = [c for c in counts if c]
    assert min(drawn) == 1 and 7.0 < np.mean(drawn) < 9.0  # geometric, p = 1/8: mean 8
    ab = torch.zeros(2, 64, 64)
    ab[0, :, 32:] = 40.0  # right half a = 40
    hints = sim(ab, random.Random(3)).float()
    mask = hints[2] > 0
    for _ in range(10):
        one = HintSimulation(free_share=0.0, max_count=1)(ab, random.Random(_)).float()
        ys, xs = torch.nonzero(one[2], as_tuple=True)
        side = int(ys.max() - ys.min() + 1)
        assert 1 <= side <= 9 and int(xs.max() - xs.min() + 1) <= 9
        patch = ab[0, ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        assert torch.allclose(one[0][one[2] > 0] * 110.0, patch.mean().expand(len(ys)), atol=0.05)
    assert torch.all(hints[:2][:, ~mask] == 0)


@pytest.mark.slow
def test_training_with_running_average(tmp_path: Path, shared_dir: Path) -> None:
    """``--average-from 0``: the weights at every evaluation join the running average, which is
    scored beside the current weights (from two members on) and survives a resume."""
    pytest.importorskip("tflite", reason="training needs the 'train' extra (tflite)")
    from chromatize.training import train

    data = tmp_path / "data"
    make_photos(data, {"bsds432": 24})
    out = tmp_path / "run"
    args = ["--out", str(out), "--data", str(data), "--backbone",
            str(shared_dir / "models" / "mobilenet_v2_1.0_224_quant.tflite"),
            "--scene-val-fraction", "0.25", "--crop", "64", "--batch", "4", "--workers", "0",
            "--warmup-steps", "2", "--average-from", "0", "--eval-minutes", "0.02"]
    assert train.main([*args, "--budget-minutes", "0.05"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    current = [r for r in rows if not r["averaged"]]
    averaged = [r for r in rows if r["averaged"]]
    assert len(current) >= 2, "several evaluations in the budget"
    assert [r["averaged"] for r in averaged] == list(range(2, len(current) + 1))
    assert all(np.isfinite(r["score"]) for r in averaged)
    best = torch.load(out / "best.pt", weights_only=False)
    assert best["metrics"]["score"] == max(r["score"] for r in rows)
    members = torch.load(out / "last.pt", weights_only=False)["average"]["n_averaged"]
    assert int(members) == len(current)

    assert train.main([*args, "--budget-minutes", "0.08", "--resume"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r["averaged"] for r in rows) > len(current), "the average continues after resume"


def test_average_states_is_the_mean_of_floats_and_keeps_counters() -> None:
    from chromatize.training.averaging import average_states

    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(7)}
    out = average_states([a, b])
    torch.testing.assert_close(out["w"], torch.tensor([2.0, 4.0]))
    assert int(out["n"]) == 7
    with pytest.raises(ValueError, match="same tensors"):
        average_states([a, {"w": a["w"]}])
    with pytest.raises(ValueError, match="no checkpoints"):
        average_states([])


def test_running_average_equals_the_mean_and_batch_norm_is_re_estimated() -> None:
    from torch.optim.swa_utils import AveragedModel

    from chromatize.training.averaging import average_states, recompute_batch_norm

    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
            for _ in range(3)]
    running = AveragedModel(nets[0], use_buffers=False)
    assert int(running.n_averaged) == 0, "construction only copies the architecture"
    for net in nets:
        running.update_parameters(net)
    assert int(running.n_averaged) == 3
    mean = average_states([n.state_dict() for n in nets])
    for name, value in running.module.state_dict().items():
        if "running" not in name and "num_batches" not in name:
            torch.testing.assert_close(value, mean[name])
    batches = [torch.randn(4, 1, 5, 5) + 2.0 for _ in range(3)]
    recompute_batch_norm(running.module, iter(batches))
    conv = running.module[0]
    with torch.no_grad():
        expected = torch.cat([conv(x) for x in batches]).mean(dim=(0, 2, 3))
    torch.testing.assert_close(running.module[1].running_mean, expected, rtol=1e-4, atol=1e-5)
    assert not running.module.training


def card_commands(module: str) -> list[list[str]]:
    """The ``python -m chromatize.training.<module>`` commands of the model card's Training
    block (the whole chain, under v1's "Training", which v2's section points to), each as its
    argument list (continuation lines joined)."""
    import shlex

    import chromatize

    card = (Path(chromatize.__file__).parent / "shipped" / "MODEL_CARD.md").read_text()
    section = card.split("\n### Training\n", 1)[1].split("\n### ", 1)[0]
    joined = "\n".join(section.split("```")[1::2]).replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if f"chromatize.training.{module}" in words:
            out.append(words[words.index(f"chromatize.training.{module}") + 1 :])
    return out


def test_recipe_matches_the_model_cards_commands() -> None:
    """The one-command recipe runs exactly the training runs and averages the model card lists
    (the card adds no option the recipe lacks, and the other way round)."""
    from chromatize.training import recipe

    runs, data = Path("/work/runs"), Path("../shared/data/train")
    backbone = Path("../shared/models/mobilenet_v2_1.0_224_quant.tflite")
    chain = recipe.steps(runs, data, backbone, Path("mobile.safetensors"))
    trained = [list(s.args) for s in chain if s.module == "train"]
    for got in trained:  # what the card leaves implicit: the shared prior, resuming
        if "--prior" in got:
            del got[got.index("--prior") : got.index("--prior") + 2]
        got.remove("--resume")
    assert trained == card_commands("train")
    assert all(words[words.index("--data") + 1] == str(data) for words in trained)
    averaged = [list(s.args) for s in chain if s.module == "averaging"]
    assert averaged == card_commands("averaging")
    scan = next(s for s in chain if s.module == "logit_adjustment")
    assert list(scan.args[scan.args.index("--alphas") :]) == card_commands(
        "logit_adjustment")[0][4:] + ["--json", str(runs / "mobile10" / "scan.json")]
    assert [s.module for s in chain][-4:] == ["logit_adjustment", "export", "train", "export"]


@pytest.mark.slow
def test_recipe_runs_the_whole_chain_and_resumes(tmp_path: Path, shared_dir: Path, capfd) -> None:
    """The whole chain on synthetic photos with budgets scaled to seconds: six real training runs,
    two averages, the scan and an export whose alpha is the scan's; run again, every finished
    step is skipped and an existing output is not replaced."""
    pytest.importorskip("tflite", reason="training needs the 'train' extra (tflite)")
    from safetensors import safe_open

    from chromatize.training import recipe
    from chromatize.weights import load_model

    data = tmp_path / "data"
    make_photos(data, {"caltech101": 8, "bsds432": 12})
    runs, out = tmp_path / "runs", tmp_path / "mobile.safetensors"
    backbone = shared_dir / "models" / "mobilenet_v2_1.0_224_quant.tflite"
    cli = ["--runs", str(runs), "--data", str(data), "--backbone", str(backbone), "--out",
           str(out), "--time-scale", "0.0005",
           "--train-arg", "--scene-val-fraction 0.3 --crop 64 --batch 4 --workers 0"]
    assert recipe.main(cli) == 0
    for name in recipe.TRAINING_RUNS:
        assert recipe.training_done(runs / name), name
    assert (runs / "mobile3" / "soup.pt").exists() and (runs / "mobile5" / "wise.pt").exists()
    scan = json.loads((runs / "mobile10" / "scan.json").read_text())
    v1 = runs / "mobile10" / "v1.safetensors"
    with safe_open(v1, "pt") as fh:
        meta = fh.metadata()
    folded = json.loads(meta["logit_adjustment"])["alpha"] if "logit_adjustment" in meta else 0.0
    assert folded == scan["alpha"]  # export records the adjustment only when alpha > 0
    assert meta["continued_from"] == str(runs / "mobile9" / "best.pt")
    assert meta["format"] == "chromatize-mobile-1"
    init = torch.load(runs / "mobile5" / "last.pt", weights_only=False)["args"]["init"]
    assert init == str(runs / "mobile3" / "soup.pt")
    with safe_open(out, "pt") as fh:  # v2: the hint run from v1's export
        meta = fh.metadata()
    assert meta["format"] == "chromatize-mobile-2" and meta["continued_from"] == str(v1)
    model = load_model("mobile", weights=out)
    assert model.accepts_hints and model(torch.full((1, 1, 64, 64), 50.0)).shape[1] == 313
    capfd.readouterr()

    before = out.read_bytes()
    with pytest.raises(SystemExit):
        recipe.main(cli)
    assert "exists" in capfd.readouterr().err and out.read_bytes() == before
    stamp = (runs / "mobile8" / "last.pt").stat().st_mtime_ns
    assert recipe.main([*cli, "--overwrite"]) == 0
    printed = capfd.readouterr().out
    assert printed.count(": done (") == 11, printed  # 7 runs, 2 averages, the scan, v1
    assert (runs / "mobile8" / "last.pt").stat().st_mtime_ns == stamp


def test_validation_sample_keeps_every_sources_share(tmp_path: Path) -> None:
    """A limited validation sample spreads over the sorted list instead of taking the
    alphabetically first sources only."""
    from chromatize.training.data import Split

    make_photos(tmp_path, {"aaa_scenes": 40, "zzz_people": 40}, size=(32, 32))
    split = Split(0.03, 1.0)
    every = split.validation_files(tmp_path)
    sample = split.validation_sample(tmp_path, 10)
    assert len(sample) == 10 and set(sample) <= set(every)
    sources = {p.parent.name for p in sample}
    assert sources == {"aaa_scenes", "zzz_people"}
    assert split.validation_sample(tmp_path, None) == every == split.validation_sample(tmp_path,
                                                                                       500)


def test_hint_response_is_zero_for_a_fresh_hint_encoder_and_not_after_a_change(
        tmp_path: Path) -> None:
    """A fresh v2 network ignores hints (zero projections), which hint_response reports as 0
    while hint_psnr still rises from the pinned pixels; a nonzero projection moves it."""
    from chromatize.models.mobile import build_mobile
    from chromatize.training.scoring import hint_psnr, hint_response, load_held_out

    rng = np.random.default_rng(0)
    rgb = np.zeros((64, 96, 3), np.uint8)
    rgb[:, :48] = (200, 40, 30)
    rgb[:, 48:] = (30, 60, 200)
    rgb = np.clip(rgb.astype(int) + rng.integers(-10, 10, rgb.shape), 0, 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "two_halves.png")
    photos = load_held_out([tmp_path / "two_halves.png"])
    torch.manual_seed(0)
    net = build_mobile(hints=True).eval()
    assert hint_response(net, photos) == 0.0
    scores = hint_psnr(net, photos, counts=(0, 100))
    assert scores["100"] > scores["0"]  # the pinned pixels alone
    torch.nn.init.normal_(net.hint_encoder.project[3].weight, std=0.5)
    assert hint_response(net, photos) > 0.1
