"""The ECCV16 network: official state-dict layout, output shapes, temperature equivalence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from eccv16_layout import random_official_state_dict
from torch import nn

from chromatize.bins import NUM_BINS, decode
from chromatize.errors import WeightsError
from chromatize.models.eccv16 import (
    ECCV16,
    OFFICIAL_LOGIT_RESCALE,
    OFFICIAL_TEMPERATURE,
    build_eccv16,
)


def test_official_layout_loads_strictly_and_round_trips(tmp_path: Path) -> None:
    sd = random_official_state_dict()
    path = tmp_path / "official_layout.pth"
    torch.save(sd, path)
    loaded = torch.load(path, map_location="cpu", weights_only=True)

    model = ECCV16()
    result = model.load_state_dict(loaded, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert set(model.state_dict()) == set(sd)
    for key, value in model.state_dict().items():
        assert torch.equal(value, sd[key]), key
    model.validate_weights(str(path))  # the official head in our bin order passes


def test_output_shape_and_contract_attributes() -> None:
    model = build_eccv16().eval()
    assert model.default_input_size == 256
    assert model.logit_scale == pytest.approx(1 / 2.606)
    with torch.inference_mode():
        out = model(torch.rand(2, 1, 64, 96) * 100)
    assert out.shape == (2, NUM_BINS, 16, 24)
    assert out.dtype == torch.float32


@pytest.mark.slow
def test_output_shape_at_default_input_size() -> None:
    model = build_eccv16().eval()
    size = model.default_input_size
    with torch.inference_mode():
        out = model(torch.full((1, 1, size, size), 50.0))
    assert out.shape == (1, NUM_BINS, size // 4, size // 4)


def test_forward_normalises_lightness_as_official() -> None:
    """forward(L) equals running the Sequentials on (L - 50) / 100, as the official port does."""
    torch.manual_seed(1)
    model = ECCV16().eval()
    l_in = torch.rand(1, 1, 32, 32) * 100
    with torch.inference_mode():
        x = (l_in - 50.0) / 100.0
        for i in range(1, 9):
            x = getattr(model, f"model{i}")(x)
        assert torch.equal(model(l_in), x)


def test_annealed_mean_at_official_temperature_equals_official_forward() -> None:
    """decode(T=1/2.606, logit_scale=1/2.606) == 110 * model_out(softmax(conv8_313)) exactly.

    The official port decodes softmax(model8 output) through model_out = bins / 110 and
    multiplies by 110; our contract returns model8's output as logits with logit_scale 1/2.606.
    """
    model = ECCV16().eval()
    gen = torch.Generator().manual_seed(3)
    # logits in the range the real network produces after the folded x2.606 (peaky softmax)
    logits = torch.randn(2, NUM_BINS, 8, 8, generator=gen, dtype=torch.float32) * 6.0

    official = 110.0 * F.conv2d(torch.softmax(logits, dim=1), model.model_out.weight)
    assert torch.allclose(model.reference_ab(logits), official, atol=1e-5)

    ours = decode(logits, "annealed_mean", temperature=OFFICIAL_TEMPERATURE,
                  logit_scale=model.logit_scale)
    assert torch.allclose(ours, official, atol=1e-4)

    # At the paper's rounded T = 0.38 the softmax is 1/(0.38 * 2.606) = 1.0098x sharper: ab stays
    # within a fraction of one ab unit of the official output, but it is not the same computation.
    paper = decode(logits, "annealed_mean", temperature=0.38, logit_scale=model.logit_scale)
    diff = (paper - official).abs().max().item()
    assert 1e-4 < diff < 2.0

    # Without the logit scale, T = 0.38 would over-sharpen by 2.6x: clearly different colours.
    unscaled = decode(logits, "annealed_mean", temperature=0.38, logit_scale=1.0)
    assert (unscaled - official).abs().max().item() > 5.0
    assert OFFICIAL_LOGIT_RESCALE * OFFICIAL_TEMPERATURE == pytest.approx(1.0)


def test_validate_weights_rejects_other_bin_order(tmp_path: Path) -> None:
    sd = random_official_state_dict()
    perm = torch.arange(NUM_BINS).roll(1)
    sd["model_out.weight"] = sd["model_out.weight"][:, perm]
    model = ECCV16()
    model.load_state_dict(sd, strict=True)
    with pytest.raises(WeightsError, match=r"weird\.pth.*model_out\.weight.*bin"):
        model.validate_weights(str(tmp_path / "weird.pth"))


def test_fresh_network_is_a_module_with_logit_scale() -> None:
    model = build_eccv16()
    assert isinstance(model, nn.Module)
    model.validate_weights("fresh")  # a fresh build decodes like the official release


def test_instance_and_registry_agree_on_default_temperature() -> None:
    """A bare ECCV16 passed to Colorizer must decode like the named model does."""
    from chromatize.pipeline import Colorizer
    from chromatize.registry import get_spec

    colorizer = Colorizer(ECCV16(), device="cpu")
    assert colorizer.default_temperature == pytest.approx(get_spec("eccv16").default_temperature)
    assert colorizer.default_temperature == pytest.approx(1 / 2.606)
