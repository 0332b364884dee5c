"""The ``mobile`` architecture and its shipped weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import chromatize
from chromatize.models.mobile import build_mobile, is_hint_state, lightness_to_backbone_input
from chromatize.pipeline import render_shape
from chromatize.registry import get_spec

SHIPPED = Path(chromatize.__file__).parent / "shipped" / "mobile.safetensors"


def test_contract_attributes_and_output_shape():
    model = build_mobile().eval()
    assert model.logit_scale == 1.0
    # Rendered at the training photos' scale (shorter side 192) by default, for 3:2 and 4:3 photos.
    assert render_shape(512, 768, model.default_input_size, model.stride) == (192, 288)
    assert render_shape(3000, 4000, model.default_input_size, model.stride) == (192, 256)
    assert get_spec("mobile").default_input_size == model.default_input_size
    with torch.inference_mode():
        out = model(torch.rand(2, 1, 64, 96) * 100)
        odd = model(torch.rand(1, 1, 72, 40) * 100)  # not multiples of 32: TF-SAME still works
    assert out.shape == (2, 313, 16, 24)
    assert odd.shape == (1, 313, 18, 10)


def test_parameter_budget_without_the_classifier_head():
    for model in (build_mobile(), build_mobile(hints=True)):
        total = sum(p.numel() for p in model.parameters())
        assert total <= 8_000_000
        assert not any("classifier" in name for name, _ in model.named_parameters())


def test_v2_starts_as_v1_and_no_hints_means_zero_hints():
    """A fresh hint encoder adds nothing (zero projections), so v1 weights give v1's logits; and
    ``hints=None`` is exactly all-zero hints, while a hint changes the logits once trained."""
    torch.manual_seed(0)
    v1 = build_mobile().eval()
    v2 = build_mobile(hints=True).eval()
    missing = v2.load_state_dict(v1.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("hint_encoder.") for k in missing)
    lightness = torch.rand(1, 1, 64, 96) * 100
    hints = torch.zeros(1, 3, 64, 96)
    with torch.inference_mode():
        assert torch.equal(v2(lightness), v1(lightness))
        assert torch.equal(v2(lightness, hints), v2(lightness))
        for conv in v2.hint_encoder.project:
            torch.nn.init.normal_(conv.weight, std=0.1)
        hints[0, 0, 20:25, 30:35], hints[0, 2, 20:25, 30:35] = 0.5, 1.0
        assert not torch.equal(v2(lightness, hints), v2(lightness))
        with pytest.raises(ValueError, match="hints of shape"):
            v2(lightness, torch.zeros(1, 3, 32, 32))


def test_gray_input_reaches_the_backbone_as_the_gray_jpeg_would():
    from chromatize.color import gray_to_lightness

    gray = torch.tensor([0.0, 128.0, 255.0]) / 255.0
    lightness = gray_to_lightness(gray).reshape(1, 1, 1, 3)
    x = lightness_to_backbone_input(lightness)
    assert x.shape == (1, 3, 1, 3)
    expected = torch.tensor([-1.0, 0.0, 127.0 / 128.0])
    assert torch.allclose(x[0, 0, 0], expected, atol=1e-4)
    assert torch.equal(x[0, 0], x[0, 2])


@pytest.fixture(scope="module")
def shipped_state():
    from safetensors import safe_open

    if not SHIPPED.exists():
        pytest.fail(f"{SHIPPED} is missing: the package must ship the mobile weights")
    with safe_open(str(SHIPPED), "pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    return state, meta


def test_shipped_weights_are_fp16_and_fit_strictly(shipped_state):
    state, meta = shipped_state
    floats = [v for v in state.values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    model = get_spec("mobile").build()
    assert model.accepts_hints and is_hint_state(state), "the shipped mobile is v2 (hints)"
    model.load_state_dict(state, strict=True)
    assert 0.1 <= float(meta["default_temperature"]) <= 1.0
    prior = json.loads(meta["prior_counts"])
    assert len(prior) == 313 and sum(prior) > 0


def test_shipped_model_colours_a_synthetic_landscape(shipped_state):
    from chromatize.color import rgb_to_lab
    from chromatize.pipeline import Colorizer

    h, w = 128, 192
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    rng = np.random.default_rng(0)
    sky = np.broadcast_to(0.75 + 0.15 * y, (h, w))  # smooth bright gradient on top
    grass = 0.35 + 0.12 * rng.standard_normal((h, w)).astype(np.float32)  # texture below
    gray = np.where(np.arange(h)[:, None] < h // 2, sky, grass).clip(0, 1).astype(np.float32)
    out = Colorizer("mobile", device="cpu").colorize(gray)
    assert out.shape == (h, w, 3) and out.dtype == np.float32
    lab = rgb_to_lab(torch.from_numpy(out).permute(2, 0, 1))
    chroma = lab[1:].square().sum(0).sqrt()
    assert float(chroma.mean()) > 3.0  # visibly coloured, not gray


def test_registry_matches_the_shipped_weights(shipped_state):
    """The registry's default temperature and hash describe the file actually shipped."""
    from chromatize.registry import get_spec
    from chromatize.weights import file_sha256

    spec = get_spec("mobile")
    _, meta = shipped_state
    assert spec.default_temperature == pytest.approx(float(meta["default_temperature"]))
    assert file_sha256(spec.shipped_path()) == spec.sha256


def test_hint_fields_spread_a_hint_colour_with_falling_confidence():
    """One 4x4 hint: every spread's colour field carries its ab (where confident enough), and
    confidence is highest at the hint and falls with distance; no hint, no field."""
    from chromatize.models.mobile import HINT_SPREADS, hint_fields

    hints = torch.zeros(1, 3, 64, 64)
    hints[0, 0, 32:36, 32:36], hints[0, 1, 32:36, 32:36], hints[0, 2, 32:36, 32:36] = 0.4, -0.2, 1
    fields = hint_fields(torch.full((1, 1, 64, 64), 50.0), hints)[0]
    assert fields.shape == (4 + 3 * len(HINT_SPREADS), 16, 16)
    assert fields[0, 8, 8] == 1.0 and fields[0].sum() == 1.0  # coverage of the hint's cell
    for k in range(len(HINT_SPREADS)):
        colour, confidence = fields[4 + 3 * k: 6 + 3 * k], fields[6 + 3 * k]
        assert confidence[8, 8] > confidence[8, 11] > confidence[8, 15] >= 0
        ab = colour[:, 8, 8] / confidence[8, 8]
        assert torch.allclose(ab, torch.tensor([0.4, -0.2]), atol=1e-4)
    assert torch.count_nonzero(hint_fields(torch.full((1, 1, 64, 64), 50.0),
                                           torch.zeros(1, 3, 64, 64))[0, 4:]) == 0
