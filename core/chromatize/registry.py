"""The named colorization models chromatize knows, with everything needed to find and trust them.

A :class:`ModelSpec` says which architecture to build (imported lazily, so listing models never
imports torch-heavy modules), where its weights come from (shipped inside the package, a download
URL, or neither), how to check them (sha256) and how they are licensed. Where the weights actually
are on this machine is :mod:`chromatize.weights`' job; :func:`model_status` summarises it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from chromatize.errors import ModelUnavailableError

if TYPE_CHECKING:
    from torch import nn

ModelStatus = Literal["shipped", "cached", "downloadable", "missing"]
WeightsFormat = Literal["pth", "safetensors"]


@dataclass(frozen=True)
class ModelSpec:
    """Metadata of one named model.

    ``builder`` is ``"module:function"``; the function takes no arguments and returns the network
    with fresh weights. ``sha256`` is the full hex digest of the weights file or a prefix of it
    (at least 8 hex digits; see :func:`chromatize.weights.verify_sha256`), or None when the file
    is not pinned. ``shipped`` is a path relative to the ``chromatize`` package
    (e.g. ``"shipped/mobile.safetensors"``) for weights that ship inside it.
    """

    name: str
    description: str
    architecture: str
    builder: str
    default_input_size: int
    default_temperature: float
    license: str
    source: str
    url: str | None
    sha256: str | None
    filename: str
    weights_format: WeightsFormat
    shipped: str | None = None

    def __post_init__(self) -> None:
        if ":" not in self.builder:
            raise ValueError(f"builder must be 'module:function', got {self.builder!r}")
        if self.sha256 is not None:
            digest = self.sha256.lower()
            if not 8 <= len(digest) <= 64 or digest.strip("0123456789abcdef"):
                raise ValueError(f"sha256 must be 8 to 64 hex digits, got {self.sha256!r}")
        if self.weights_format not in ("pth", "safetensors"):
            raise ValueError(
                f"weights_format must be 'pth' or 'safetensors', got {self.weights_format!r}"
            )

    def build(self) -> nn.Module:
        """Import the builder and return a freshly initialised network."""
        module_name, func_name = self.builder.split(":", 1)
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ModelUnavailableError(
                f"model {self.name!r}: its architecture module {module_name} is not in this build "
                f"of chromatize ({exc})"
            ) from exc
        return getattr(module, func_name)()

    def shipped_path(self) -> Path | None:
        """Where the shipped weights file would be inside the installed package (may not exist)."""
        if self.shipped is None:
            return None
        return Path(str(resources.files("chromatize").joinpath(self.shipped)))


ECCV16_URL = "https://colorizers.s3.us-east-2.amazonaws.com/colorization_release_v2-9b330a0b.pth"

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="mobile",
            description="Embedded default: fast, small, trained for chromatize",
            architecture="MobileNetV2 1.0 encoder (TF-SAME padding) + U-Net-style decoder, "
            "313-bin head",
            builder="chromatize.models.mobile:build_mobile",
            # The training photos' scale; equal to MobileColorizer.default_input_size (tested).
            default_input_size=224,
            # Chosen on the training run's held-out split (see shipped/MODEL_CARD.md); the same
            # value is recorded in the weights' metadata and a test keeps the two equal.
            default_temperature=1.0,
            license="Apache-2.0",
            source="chromatize; encoder initialised from the ImageNet MobileNetV2 1.0/224 of "
            "TensorFlow (Apache-2.0)",
            url=None,
            # Checked on every load, so a damaged installation fails clearly instead of
            # colorizing with garbage; update it together with shipped/mobile.safetensors.
            sha256="be6b014656a04f250c94167929e40527c1b002d5e68604eaf25210c15eb9c680",
            filename="mobile.safetensors",
            weights_format="safetensors",
            shipped="shipped/mobile.safetensors",
        ),
        ModelSpec(
            name="eccv16",
            description="Zhang, Isola & Efros, Colorful Image Colorization (ECCV 2016), official",
            architecture="VGG-style CNN with dilated convolutions, 313-bin head (32M parameters)",
            builder="chromatize.models.eccv16:build_eccv16",
            default_input_size=256,
            # 1/2.606: reproduces the official demo's softmax exactly (chromatize.models.eccv16).
            default_temperature=1.0 / 2.606,
            license="BSD-2-Clause",
            source="richzhang/colorization (official PyTorch port of the Caffe release)",
            url=ECCV16_URL,
            # Only the first 8 hex digits of the file's sha256 are known: torch.hub's naming
            # convention puts them in the file name (…-9b330a0b.pth) and torch.hub checks exactly
            # that prefix. The full digest cannot be learned offline; pin it once it is known.
            sha256="9b330a0b",
            filename="colorization_release_v2-9b330a0b.pth",
            weights_format="pth",
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    """The spec of model ``name``; :class:`ModelUnavailableError` listing known names if none."""
    try:
        return MODELS[name]
    except KeyError:
        raise ModelUnavailableError(
            f"unknown model {name!r}; known models: {', '.join(MODELS)}"
        ) from None


def list_models() -> list[ModelSpec]:
    """All registered models, the default first."""
    return list(MODELS.values())


def model_status(name: str) -> ModelStatus:
    """Where model ``name``'s weights would come from right now, without touching the network.

    Follows the resolution order of :func:`chromatize.weights.resolve_weights` (cache before
    shipped): ``"cached"`` (a file in the user cache), ``"shipped"`` (inside the package),
    ``"downloadable"`` (has a URL, not yet downloaded) or ``"missing"`` (cannot be used).
    """
    from chromatize.weights import cached_path  # weights imports this module

    spec = get_spec(name)
    if cached_path(spec).is_file():
        return "cached"
    shipped = spec.shipped_path()
    if shipped is not None and shipped.is_file():
        return "shipped"
    if spec.url:
        return "downloadable"
    return "missing"
