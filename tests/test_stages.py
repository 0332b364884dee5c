"""The public stages of the pipeline (prepare -> predict -> finish) and the model contract."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from contract_models import TinyColourModel
from torch import nn

from chromatize.errors import ChromatizeError
from chromatize.models.contract import ColourModel, HintsNotSupportedError
from chromatize.models.eccv16 import ECCV16
from chromatize.models.mobile import MobileColorizer, MobileHintColorizer
from chromatize.options import ColorizeOptions
from chromatize.pipeline import Colorizer, Prediction, Prepared
from chromatize.registry import get_spec


@pytest.fixture(scope="module")
def colorizer() -> Colorizer:
    return Colorizer(TinyColourModel(), device="cpu")


def _photo(h: int = 70, w: int = 90) -> np.ndarray:
    rng = np.random.default_rng(5)
    return (rng.random((h, w, 4)) * 255).astype(np.uint8)


def test_stages_compose_to_colorize_and_pickle(colorizer: Colorizer) -> None:
    image = _photo()
    options = ColorizeOptions(temperature=0.5, saturation=1.2)
    prepared = colorizer.prepare(image, options)
    assert isinstance(prepared, Prepared) and prepared.render == (32, 40)
    prediction = colorizer.predict(prepared, options)
    assert isinstance(prediction, Prediction)
    assert prediction.logits.shape == (313, 8, 10) and prediction.ab.shape == (2, 8, 10)
    probabilities = prediction.probabilities()
    assert torch.allclose(probabilities.sum(0), torch.ones(8, 10), atol=1e-5)
    shipped = pickle.loads(pickle.dumps((prepared, prediction)))
    out = colorizer.finish(*shipped, options)
    assert np.array_equal(out, colorizer.colorize(image, options))
    assert np.array_equal(out[..., 3], image[..., 3])


def test_prepared_work_is_reused_when_only_the_colour_settings_change(colorizer) -> None:
    image = _photo()
    prepared = colorizer.prepare(image)
    for saturation in (0.0, 2.0):
        options = ColorizeOptions(saturation=saturation)
        out = colorizer.finish(prepared, colorizer.predict(prepared, options), options)
        assert np.array_equal(out, colorizer.colorize(image, saturation=saturation))


def test_predict_runs_several_images_of_one_shape_at_once(colorizer: Colorizer) -> None:
    a, b = colorizer.prepare(_photo()), colorizer.prepare(_photo()[::-1].copy())
    both = colorizer.predict([a, b])
    assert isinstance(both, list) and len(both) == 2
    with pytest.raises(ChromatizeError, match="one render shape"):
        colorizer.predict([a, colorizer.prepare(_photo(200, 50))])


def test_models_without_hint_inputs_refuse_hints(colorizer: Colorizer) -> None:
    prepared = colorizer.prepare(_photo())
    hints = torch.zeros(1, 3, *prepared.render)
    with pytest.raises(HintsNotSupportedError, match="does not accept colour hints"):
        colorizer.predict(prepared, hints=hints)
    for model in (MobileColorizer(), ECCV16()):
        assert isinstance(model, ColourModel) and not model.accepts_hints
        with pytest.raises(HintsNotSupportedError):
            model(torch.full((1, 1, 64, 64), 50.0), torch.zeros(1, 3, 64, 64))


def test_the_contract_is_checked_once_with_a_clear_message() -> None:
    class Incomplete(nn.Module):
        stride = 8

        def forward(self, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
            return l

    with pytest.raises(ChromatizeError, match="logit_scale is missing.*default_input_size"):
        Colorizer(Incomplete(), device="cpu")


def test_model_defaults_live_on_the_model_class() -> None:
    for name, cls in (("mobile", MobileHintColorizer), ("eccv16", ECCV16)):
        spec = get_spec(name)
        assert spec.default_input_size == cls.default_input_size
        assert spec.default_temperature == cls.default_temperature
        assert spec.accepts_hints is cls.accepts_hints


def test_render_size_below_the_stride_names_the_setting(colorizer: Colorizer) -> None:
    with pytest.raises(ChromatizeError, match=r"render_size must be between 8 \(the model's"):
        colorizer.colorize(_photo(), render_size=4)


def test_finish_reuses_the_guide_of_a_prepared_image_and_pickles_without_it(colorizer) -> None:
    image = _photo(120, 160)
    prepared = colorizer.prepare(image)
    assert not prepared.guides
    first = colorizer.finish(prepared, colorizer.predict(prepared))
    (stats,) = prepared.guides.values()
    for saturation in (0.5, 1.5):  # later finishes of the same image take the same statistics
        options = ColorizeOptions(saturation=saturation)
        out = colorizer.finish(prepared, colorizer.predict(prepared, options), options)
        assert list(prepared.guides.values()) == [stats]
        assert np.array_equal(out, colorizer.colorize(image, saturation=saturation))
    shipped = pickle.loads(pickle.dumps(prepared))
    assert not shipped.guides  # a cache: not sent to other processes
    assert np.array_equal(colorizer.finish(shipped, colorizer.predict(shipped)), first)
