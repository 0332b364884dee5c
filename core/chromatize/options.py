"""Every user-facing colorization setting, its default, its check and its description, in one place.

:class:`ColorizeOptions` is the one shape settings take between a front end and the engine: the
CLI builds it from its flags, the napari widget from its controls, the editor worker from its
request header (:meth:`ColorizeOptions.from_mapping`), evaluation from its arguments, and
:class:`chromatize.pipeline.Colorizer` takes it. Defaults and checks live only here; front ends
read labels, help texts, ranges and choices from :data:`SETTINGS` instead of writing their own.

``None`` for ``temperature`` and ``render_size`` means "the model's own default" (the
annealed-mean temperature it was tuned at, the scale it was trained at); the model holds those
values (:mod:`chromatize.models.contract`). ``model``, ``weights``, ``device``,
``allow_download`` and ``engine`` choose which :class:`~chromatize.pipeline.Colorizer` to build
(:mod:`chromatize.engine`); the others shape each colorization.

Messages about a setting name it with :func:`setting_token` (``«temperature»``), which each front
end renders in its own words (``--temperature`` on the command line, ``'Temperature'`` in a
dialog, ``temperature`` in Python): see :mod:`chromatize.failures`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from chromatize.errors import ChromatizeError

DEFAULT_MODEL = "mobile"
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
UPSAMPLE_CHOICES: tuple[str, ...] = ("guided", "bilinear")
DECODE_CHOICES: tuple[str, ...] = ("annealed_mean", "mean", "mode")
ENGINE_CHOICES: tuple[str, ...] = ("auto", "torch", "onnx")
#: Largest render size accepted (pixels on a side of the equivalent square).
MAX_RENDER_SIZE = 4096
#: Editors offer temperature and saturation up to these (the library accepts more).
TEMPERATURE_SLIDER_MAX = 2.0
SATURATION_SLIDER_MAX = 2.0

UpsampleMethod = Literal["guided", "bilinear"]
DecodeMethod = Literal["annealed_mean", "mean", "mode"]


class OptionError(ChromatizeError):
    """A setting has a value it cannot take; ``setting`` names it (a :data:`SETTINGS` key)."""

    def __init__(self, setting: str, message: str, expected: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting
        #: what the setting takes, in words ("a number > 0"), when the value was out of range
        self.expected = expected


def setting_token(name: str, python: str | None = None) -> str:
    """A setting's name inside a message, rendered per front end by :mod:`chromatize.failures`.

    ``python`` is how a Python caller writes it (default: the bare name), e.g.
    ``setting_token("allow_download", "allow_download=True")``.
    """
    return f"«{python or name}»"


@dataclass(frozen=True)
class Setting:
    """How front ends show one setting: label, help text, command-line flag, range or choices."""

    name: str
    label: str
    help: str
    flag: str
    kind: Literal["text", "path", "bool", "float", "int", "choice"]
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    #: how the default reads in a help text when it is None (the model's own value)
    default_text: str = ""
    #: what a valid value is, in words, for messages ("a number > 0")
    expects: str = ""
    #: the largest value an editor's slider or spin box offers (None: ``maximum``)
    slider_max: float | None = None


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("model", "Model", "Which colorization model to use.", "--model", "choice"),
        Setting("weights", "Weights file", "A weights file for the model instead of its own "
                "(for example the official ECCV16 file you downloaded).", "--weights", "path",
                default_text="the model's own"),
        Setting("allow_download", "Download weights if needed", "Let chromatize download the "
                "model's official weights once if they are not on this computer (then cached).",
                "--allow-download", "bool"),
        Setting("device", "Device", "Where the model runs: auto picks a CUDA GPU, then Apple "
                "MPS, then the CPU.", "--device", "choice", choices=DEVICE_CHOICES),
        Setting("temperature", "Temperature", "How bold the colours are: lower picks the most "
                "likely colour more decisively (more vivid), higher averages the possible "
                "colours (more muted).", "--temperature", "float", minimum=0.0,
                default_text="the model's default", expects="a number > 0",
                slider_max=TEMPERATURE_SLIDER_MAX),
        Setting("saturation", "Saturation", "Colour strength applied to the result: 0 = gray, "
                "1 = the model's colours, above 1 = stronger.", "--saturation", "float",
                minimum=0.0, expects="a number >= 0", slider_max=SATURATION_SLIDER_MAX),
        Setting("render_size", "Render size", "The model looks at the photo shrunk to about "
                "this many pixels squared, with its shape kept; the result is always full size. "
                "Values far from the model's default usually colour worse.", "--render-size",
                "int", minimum=1, maximum=MAX_RENDER_SIZE, default_text="the model's default",
                expects=f"a whole number from 1 to {MAX_RENDER_SIZE}"),
        Setting("upsample", "Upsampling", "How colour is brought to full size: guided follows "
                "the photo's edges, bilinear is plain.", "--upsample", "choice",
                choices=UPSAMPLE_CHOICES),
        Setting("decode", "Decoding", "How the model's colour probabilities become one colour "
                "per pixel.", "--decode", "choice", choices=DECODE_CHOICES),
        Setting("engine", "Engine", "What runs the network: auto uses ONNX Runtime on the CPU "
                "when it is installed (several times faster; colours within one unit of torch's) "
                "and torch elsewhere; torch is the reference.", "--engine", "choice",
                choices=ENGINE_CHOICES),
        Setting("batch_size", "Batch size", "Images the model processes at once (more uses "
                "more memory).", "--batch-size", "int", minimum=1, maximum=1024,
                expects="a whole number >= 1"),
    )
}


def _fail(name: str, expected: str, value: object) -> OptionError:
    expected = SETTINGS[name].expects or expected
    return OptionError(name, f"{setting_token(name)} must be {expected}, got {value!r}", expected)


def _number(name: str, value: object, *, integer: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
        isinstance(value, float) and not math.isfinite(value)
    ):
        raise _fail(name, "a whole number" if integer else "a number", value)
    if integer:
        if value != int(value):
            raise _fail(name, "a whole number", value)
        return int(value)
    return float(value)


def _check_text(name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        raise _fail(name, "a non-empty text" + (" or None" if optional else ""), value)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise OptionError(name, f"unknown {setting_token(name)} {value!r}; choose one of "
                          f"{', '.join(choices)}")


@dataclass(frozen=True)
class ColorizeOptions:
    """All settings of one colorization (see the module docstring; help texts in SETTINGS)."""

    model: str = DEFAULT_MODEL
    weights: str | None = None
    allow_download: bool = False
    device: str = "auto"
    temperature: float | None = None
    saturation: float = 1.0
    render_size: int | None = None
    upsample: UpsampleMethod = "guided"
    decode: DecodeMethod = "annealed_mean"
    batch_size: int = field(default=1)
    engine: str = "auto"

    def __post_init__(self) -> None:
        _check_text("model", self.model, optional=False)
        _check_text("weights", self.weights, optional=True)
        if not isinstance(self.allow_download, bool):
            raise _fail("allow_download", "true or false", self.allow_download)
        self._check_device()
        if self.temperature is not None:
            temperature = _number("temperature", self.temperature)
            if temperature <= 0:
                raise _fail("temperature", "a number > 0", self.temperature)
            object.__setattr__(self, "temperature", temperature)
        saturation = _number("saturation", self.saturation)
        if saturation < 0:
            raise _fail("saturation", "a number >= 0 (0 = gray, 1 = the model's colours)",
                        self.saturation)
        object.__setattr__(self, "saturation", saturation)
        if self.render_size is not None:
            size = _number("render_size", self.render_size, integer=True)
            if not 1 <= size <= MAX_RENDER_SIZE:
                raise _fail("render_size", f"between 1 and {MAX_RENDER_SIZE} pixels",
                            self.render_size)
            object.__setattr__(self, "render_size", size)
        _check_choice("upsample", self.upsample, UPSAMPLE_CHOICES)
        _check_choice("decode", self.decode, DECODE_CHOICES)
        _check_choice("engine", self.engine, ENGINE_CHOICES)
        batch = _number("batch_size", self.batch_size, integer=True)
        if batch < 1:
            raise _fail("batch_size", "at least 1", self.batch_size)
        object.__setattr__(self, "batch_size", batch)

    def _check_device(self) -> None:
        device = self.device
        if not isinstance(device, str):
            raise _fail("device", "a device name", device)
        name = device.strip().lower()
        base = "cuda" if name.startswith("cuda:") and name[5:].isdigit() else name
        _check_choice("device", base, DEVICE_CHOICES)
        object.__setattr__(self, "device", name)

    # ------------------------------------------------------------------ conversions

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], *, ignore: tuple[str, ...] = ()
                     ) -> ColorizeOptions:
        """Options from a plain mapping (JSON, a request, keyword arguments).

        Missing keys and ``None`` values take the defaults; an unknown key is an error (a typo
        must not be silently ignored) unless listed in ``ignore``.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(mapping) - names - set(ignore))
        if unknown:
            raise OptionError(unknown[0], f"unknown setting {unknown[0]!r}; known settings: "
                              f"{', '.join(sorted(names))}")
        given = {k: v for k, v in mapping.items() if k in names and v is not None}
        return cls(**given)

    def as_mapping(self) -> dict[str, Any]:
        """The options as a plain dict of JSON values (round-trips through from_mapping)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The options as one line of JSON."""
        return json.dumps(self.as_mapping(), sort_keys=True)

    def replace(self, **changes: Any) -> ColorizeOptions:
        """A copy with some settings changed (and checked); ``None`` keeps a default-able
        setting at "the model's default"."""
        return dataclasses.replace(self, **changes)

    def loader_key(self) -> tuple[str, str | None, str, bool, str]:
        """What a loaded model depends on: model, weights file, device, download permission,
        engine."""
        return (self.model, self.weights, self.device, self.allow_download, self.engine)


#: The settings that choose a Colorizer (the rest shape each colorization).
LOADER_SETTINGS: tuple[str, ...] = ("model", "weights", "allow_download", "device", "engine")


def options_schema() -> dict[str, Any]:
    """Defaults, labels, help texts, ranges and choices of every setting, as JSON values, for
    front ends that cannot import chromatize (GIMP's Python reads it from the installed plug-in).
    """
    defaults = ColorizeOptions().as_mapping()
    return {
        name: {**dataclasses.asdict(setting), "default": defaults[name]}
        for name, setting in SETTINGS.items()
    }
