"""The model registry: entries, lookups, and the status of each model's weights on this machine."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from eccv16_layout import eccv16_spec

from chromatize.errors import ModelUnavailableError
from chromatize.registry import MODELS, ModelSpec, get_spec, list_models
from chromatize.weights import cached_path, load_model, model_status


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("CHROMATIZE_CACHE_DIR", str(cache))
    return cache


def test_registry_has_the_two_models_default_first() -> None:
    assert [spec.name for spec in list_models()] == ["mobile", "eccv16"]
    everything = list_models(baselines=True)
    assert [s.name for s in everything] == ["mobile", "eccv16", "fusion", "densenet", "som"]
    assert [s.name for s in everything if s.baseline] == ["fusion", "densenet", "som"]
    assert all(s.training_command for s in everything if s.baseline)
    for name, spec in MODELS.items():
        assert spec.name == name
        assert spec.default_input_size % 32 == 0
        assert 0 < spec.default_temperature <= 1


def test_eccv16_entry_points_at_the_official_release() -> None:
    spec = get_spec("eccv16")
    assert spec.url == (
        "https://colorizers.s3.us-east-2.amazonaws.com/colorization_release_v2-9b330a0b.pth"
    )
    assert spec.filename == "colorization_release_v2-9b330a0b.pth"
    # torch.hub convention: the name carries the first 8 hex digits of the sha256.
    assert spec.filename.removesuffix(".pth").rsplit("-", 1)[1] == spec.sha256
    assert spec.license == "BSD-2-Clause" and spec.weights_format == "pth"
    assert spec.default_temperature == pytest.approx(1 / 2.606)
    model = spec.build()
    assert model.default_input_size == spec.default_input_size
    assert model.logit_scale == pytest.approx(1 / 2.606)


def test_mobile_entry_is_shipped_inside_the_package() -> None:
    spec = get_spec("mobile")
    assert spec.url is None and spec.weights_format == "safetensors"
    shipped = spec.shipped_path()
    assert shipped is not None
    assert shipped.parts[-3:] == ("chromatize", "shipped", "mobile.safetensors")


def test_mobile_is_never_silently_replaced() -> None:
    """Without the shipped file, mobile is 'missing' and loading it says so; with it, 'shipped'."""
    shipped = get_spec("mobile").shipped_path()
    assert shipped is not None
    if shipped.is_file():
        assert model_status("mobile") == "shipped"
        assert load_model("mobile").logit_scale == 1.0
    else:
        assert model_status("mobile") == "missing"
        with pytest.raises(ModelUnavailableError, match="embedded model 'mobile' is not in this"):
            load_model("mobile")


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ModelUnavailableError, match=r"unknown model 'colour'.*mobile, eccv16"):
        get_spec("colour")
    with pytest.raises(ModelUnavailableError, match="unknown model"):
        model_status("colour")


def test_status_follows_the_cache(isolated_cache: Path) -> None:
    spec = get_spec("eccv16")
    assert model_status("eccv16") == "downloadable"
    isolated_cache.mkdir()
    (isolated_cache / (spec.filename + ".part")).write_bytes(b"partial")
    assert model_status("eccv16") == "downloadable"  # a partial download is not a cached model
    cached_path(spec).write_bytes(b"weights")
    assert model_status("eccv16") == "cached"


def test_spec_is_frozen_and_validated() -> None:
    spec = eccv16_spec(None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match="module:Class"):
        dataclasses.replace(spec, model_class="chromatize.models.eccv16.ECCV16")
    with pytest.raises(ValueError, match="hex"):
        dataclasses.replace(spec, sha256="xyz12345")
    with pytest.raises(ValueError, match="hex"):
        dataclasses.replace(spec, sha256="abc")
    with pytest.raises(ValueError, match="weights_format"):
        dataclasses.replace(spec, weights_format="onnx")  # type: ignore[arg-type]


def test_model_class_of_a_missing_module_is_a_clear_error() -> None:
    spec = dataclasses.replace(eccv16_spec(None, None), model_class="chromatize.models.nope:Model")
    assert isinstance(spec, ModelSpec)
    with pytest.raises(ModelUnavailableError, match=r"chromatize\.models\.nope is not in this"):
        spec.build()
