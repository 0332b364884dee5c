"""ColorizeOptions (the one shape of settings) and describe_failure (the one wording of errors)."""

from __future__ import annotations

import json
import pickle

import pytest

from chromatize.errors import (
    Cancelled,
    DeviceUnavailableError,
    InputImageError,
    ModelUnavailableError,
)
from chromatize.failures import describe_failure, render_message
from chromatize.options import SETTINGS, ColorizeOptions, OptionError, options_schema


def test_defaults_round_trip_through_json_and_pickle() -> None:
    options = ColorizeOptions(temperature=0.5, render_size=320, device="CUDA:1")
    assert options.device == "cuda:1"
    again = ColorizeOptions.from_mapping(json.loads(options.to_json()))
    assert again == options and pickle.loads(pickle.dumps(options)) == options
    assert ColorizeOptions.from_mapping({"temperature": None, "render_size": None}) == \
        ColorizeOptions()


@pytest.mark.parametrize(("changes", "setting"), [
    ({"temperature": 0}, "temperature"),
    ({"temperature": "warm"}, "temperature"),
    ({"saturation": -0.1}, "saturation"),
    ({"saturation": float("nan")}, "saturation"),
    ({"render_size": 5000}, "render_size"),
    ({"render_size": 100.5}, "render_size"),
    ({"render_size": True}, "render_size"),
    ({"batch_size": 0}, "batch_size"),
    ({"upsample": "nearest"}, "upsample"),
    ({"decode": "median"}, "decode"),
    ({"device": "tpu"}, "device"),
    ({"model": ""}, "model"),
    ({"weights": ""}, "weights"),
    ({"allow_download": "yes"}, "allow_download"),
])
def test_every_bad_value_is_refused_naming_its_setting(changes: dict, setting: str) -> None:
    with pytest.raises(OptionError) as caught:
        ColorizeOptions(**changes)
    assert caught.value.setting == setting
    assert setting in str(caught.value) and "«" not in str(caught.value)


def test_unknown_keys_are_refused_not_ignored() -> None:
    with pytest.raises(OptionError, match="unknown setting 'temprature'"):
        ColorizeOptions.from_mapping({"temprature": 0.3})
    assert ColorizeOptions.from_mapping({"op": "colorize"}, ignore=("op",)) == ColorizeOptions()


def test_every_field_has_a_description_and_the_schema_is_json() -> None:
    fields = set(ColorizeOptions().as_mapping())
    assert fields == set(SETTINGS)
    schema = json.loads(json.dumps(options_schema()))
    assert schema["temperature"]["default"] is None and schema["saturation"]["default"] == 1.0
    assert all(entry["label"] and entry["help"] and entry["flag"].startswith("--")
               for entry in schema.values())


def test_a_message_names_settings_in_each_front_ends_words() -> None:
    message = "give a weights file («weights=PATH») or allow downloading («allow_download=True»)"
    assert render_message(message, "python") == \
        "give a weights file (weights=PATH) or allow downloading (allow_download=True)"
    assert render_message(message, "cli") == \
        "give a weights file (--weights PATH) or allow downloading (--allow-download)"
    for editor in ("napari", "gimp"):
        assert render_message(message, editor) == ("give a weights file ('Weights file') or "
                                                   "allow downloading (tick 'Download weights "
                                                   "if needed')")


def test_failures_are_classified_once() -> None:
    missing = ModelUnavailableError("no weights; give a weights file («weights=PATH»)")
    assert str(missing) == "no weights; give a weights file (weights=PATH)"
    assert describe_failure(missing, "cli").kind == "model_missing"
    assert "--weights PATH" in describe_failure(missing, "cli").message
    assert describe_failure(DeviceUnavailableError("x"), "gimp").kind == "device_unavailable"
    assert describe_failure(InputImageError("bad"), "napari").kind == "bad_image"
    assert describe_failure(Cancelled("stop"), "gimp").kind == "cancelled"
    assert describe_failure(OptionError("saturation", "bad"), "gimp").kind == "bad_request"
    memory = describe_failure(RuntimeError("CUDA out of memory. Tried to allocate"), "napari")
    assert memory.kind == "out_of_memory" and "'Render size'" in memory.message
    assert "--render-size" in describe_failure(MemoryError(), "cli").message
    bug = describe_failure(KeyError("x"), "gimp")
    assert bug.kind == "internal" and "bug" in bug.message
