"""The named colorization models chromatize knows, with everything needed to find and trust them.

The registry is data: a :class:`ModelSpec` says which model class to build (imported lazily, so
listing models never imports torch), where its weights come from (shipped inside the package, a
download URL, or neither), how to check them (sha256) and how they are licensed. The model's
defaults (render size, temperature) and whether it takes hints belong to its class
(:mod:`chromatize.models.contract`); a spec reads them from there. Where the weights actually are
on this machine is :mod:`chromatize.weights.finding`'s job.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from chromatize.errors import ModelUnavailableError

if TYPE_CHECKING:
    from torch import nn

WeightsFormat = Literal["pth", "safetensors"]


@dataclass(frozen=True)
class ModelSpec:
    """Metadata of one named model.

    ``model_class`` is ``"module:Class"``; the class takes no arguments, builds the network with
    fresh weights and carries the model's defaults as class attributes. ``sha256`` is the full
    hex digest of the weights file or a prefix of it (at least 8 hex digits; see
    :func:`chromatize.weights.verify_sha256`), or None when the file is not pinned. ``shipped``
    is a path relative to the ``chromatize`` package (e.g. ``"shipped/mobile.safetensors"``) for
    weights that ship inside it.
    """

    name: str
    description: str
    architecture: str
    model_class: str
    license: str
    source: str
    url: str | None
    sha256: str | None
    filename: str
    weights_format: WeightsFormat
    shipped: str | None = None
    #: One of the earlier designs ``chromatize eval`` compares against (CLI only, not offered in
    #: the editors' model lists); trained by ``python -m chromatize.training.baselines NAME``.
    baseline: bool = False
    #: The command that trains this model's weights into the cache (baselines), or None.
    training_command: str | None = None

    def __post_init__(self) -> None:
        if ":" not in self.model_class:
            raise ValueError(f"model_class must be 'module:Class', got {self.model_class!r}")
        if self.sha256 is not None:
            digest = self.sha256.lower()
            if not 8 <= len(digest) <= 64 or digest.strip("0123456789abcdef"):
                raise ValueError(f"sha256 must be 8 to 64 hex digits, got {self.sha256!r}")
        if self.weights_format not in ("pth", "safetensors"):
            raise ValueError(
                f"weights_format must be 'pth' or 'safetensors', got {self.weights_format!r}"
            )

    def model_type(self) -> Any:
        """The model class (imports its module, and so torch)."""
        module_name, class_name = self.model_class.split(":", 1)
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ModelUnavailableError(
                f"model {self.name!r}: its architecture module {module_name} is not in this build "
                f"of chromatize ({exc})"
            ) from exc
        return getattr(module, class_name)

    def build(self) -> nn.Module:
        """A freshly initialised network of this model."""
        return self.model_type()()

    @property
    def default_input_size(self) -> int:
        """The render size the model was trained at (from its class)."""
        return int(self.model_type().default_input_size)

    @property
    def default_temperature(self) -> float:
        """The annealed-mean temperature the model was tuned at (from its class)."""
        return float(self.model_type().default_temperature)

    @property
    def accepts_hints(self) -> bool:
        """Whether the model takes colour hints (from its class)."""
        return bool(self.model_type().accepts_hints)

    def shipped_path(self) -> Path | None:
        """Where the shipped weights file would be inside the installed package (may not exist)."""
        if self.shipped is None:
            return None
        return Path(str(resources.files("chromatize").joinpath(self.shipped)))


ECCV16_URL = "https://colorizers.s3.us-east-2.amazonaws.com/colorization_release_v2-9b330a0b.pth"

#: The earlier designs measured as baselines: name, description, architecture, class, source,
#: what their training command needs besides the photos, and whether their weights ship.
BASELINE_FACTS = (
    ("fusion", "fusion regression (Deep Koalarization design)",
     "conv encoder-decoder regressing ab (tanh, MSE) with the ImageNet MobileNetV2's logits "
     "fused into the bottleneck", "chromatize.models.fusion:FusionRegressor",
     "chromatize; embedding network: TensorFlow's ImageNet MobileNetV2 1.0/224 (Apache-2.0)",
     " --backbone mobilenet_v2_1.0_224_quant.tflite", False),
    ("densenet", "DenseNet-style regression",
     "fully convolutional DenseNet regressing ab (tanh, MSE)",
     "chromatize.models.densenet:DenseNetRegressor", "chromatize", "", True),
    ("som", "SOM colour quantisation + patch MLP",
     "self-organising map over ab; MLP classifying each pixel's L patch into a SOM cell",
     "chromatize.models.som_patch:SOMPatchClassifier", "chromatize", "", True),
)

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="mobile",
            description="Embedded default: fast, small, trained for chromatize",
            architecture="MobileNetV2 1.0 encoder (TF-SAME padding) + U-Net-style decoder, "
            "313-bin head",
            model_class="chromatize.models.mobile:MobileHintColorizer",
            license="Apache-2.0",
            source="chromatize; encoder initialised from the ImageNet MobileNetV2 1.0/224 of "
            "TensorFlow (Apache-2.0)",
            url=None,
            # Checked on every load, so a damaged installation fails clearly instead of
            # colorizing with garbage; update it together with shipped/mobile.safetensors.
            sha256="69eaf21863ad11290e7a2678b666e6b478c2e9343247b6d4d80bf1debbd4f1df",
            filename="mobile.safetensors",
            weights_format="safetensors",
            shipped="shipped/mobile.safetensors",
        ),
        ModelSpec(
            name="eccv16",
            description="Zhang, Isola & Efros, Colorful Image Colorization (ECCV 2016), official",
            architecture="VGG-style CNN with dilated convolutions, 313-bin head (32M parameters)",
            model_class="chromatize.models.eccv16:ECCV16",
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
        *(
            ModelSpec(
                name=name,
                description=f"Baseline for chromatize eval: {description}",
                architecture=architecture,
                model_class=model_class,
                license="BSD-3-Clause",
                source=source,
                url=None,
                sha256=None,
                filename=f"baseline-{name}.safetensors",
                weights_format="safetensors",
                baseline=True,
                training_command=f"python -m chromatize.training.baselines {name} "
                f"--data PHOTOS{extra}",
                # small enough to ship (a few MB); not hash-pinned, so that weights a user trains
                # into the cache take their place
                shipped=f"shipped/baseline-{name}.safetensors" if ships else None,
            )
            for name, description, architecture, model_class, source, extra, ships
            in BASELINE_FACTS
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


def list_models(*, baselines: bool = False) -> list[ModelSpec]:
    """The registered models, the default first; the baselines only with ``baselines``
    (the editors offer the others)."""
    return [spec for spec in MODELS.values() if baselines or not spec.baseline]
