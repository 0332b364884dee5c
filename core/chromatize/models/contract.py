"""The contract every colour model follows, written down once.

A colour model is an ``nn.Module`` whose ``forward(l, hints=None)`` takes

- ``l``: lightness **L in [0, 100]**, shape (N, 1, H, W), H and W multiples of ``stride``;
- ``hints``: ``None`` (automatic colorization) or the SIGGRAPH 2017 user-guided encoding at the
  model's input resolution, shape (N, 3, H, W): channels 0-1 the hint colours' ab divided by
  :data:`HINT_AB_SCALE` (110) where the mask is 1 and 0 elsewhere, channel 2 the hint mask
  (1 = a hint pixel, 0 = none). All zeros means "no hints" and must give the automatic result;

and returns **bin logits (N, 313, H/4, W/4)**, or, for a model whose ``output_kind`` is ``"ab"``
(the regression and SOM baselines of ``chromatize eval``), **ab (N, 2, H/4, W/4)** in CIE Lab
units: one colour per pixel, no distribution, so temperature, decoding, colour suggestions and
temporal consistency do not apply to it. Its attributes:

============================ =================================================================
``stride``                   total downsampling; input sides must be multiples of it
``logit_scale``              multiply the raw logits by it to get log-probabilities up to a
                             constant (1.0 for chromatize's own models)
``default_input_size``       the render size it was trained at (about that many pixels squared)
``default_temperature``      annealed-mean temperature it was tuned at
``accepts_hints``            whether ``hints`` may be given; models that do not accept them raise
                             :class:`HintsNotSupportedError` when they are
``output_kind`` (optional)   ``"bins"`` (the default when absent) or ``"ab"``
``decode_log_prior``         (313,) log of the colour prior the distribution was trained
(optional)                   against: the temperature then anneals the evidence, not the prior
                             (:func:`chromatize.bins.probabilities`); absent or all zeros: the
                             paper's plain annealing
============================ =================================================================

The defaults live on the model class and nowhere else; the registry reads them from there.
Normalising L is the model's job.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from chromatize.errors import ChromatizeError

#: Hint ab is divided by this before it enters a model (as in Zhang et al. 2017).
HINT_AB_SCALE = 110.0
#: Channels of the hint tensor: ab (2) + mask (1).
HINT_CHANNELS = 3
#: ``output_kind`` of models returning 313-bin logits (the default) and of models returning ab.
OUTPUT_BINS = "bins"
OUTPUT_AB = "ab"
#: The optional attribute (a tensor, usually a buffer) holding a model's decoding prior.
DECODE_PRIOR_KEY = "decode_log_prior"
#: Attributes a colour model must have, with their types.
REQUIRED_ATTRIBUTES: dict[str, type] = {
    "stride": int,
    "logit_scale": float,
    "default_input_size": int,
    "default_temperature": float,
    "accepts_hints": bool,
}


def output_kind(model: object) -> str:
    """What ``model``'s forward returns: :data:`OUTPUT_BINS` or :data:`OUTPUT_AB`."""
    return str(getattr(model, "output_kind", OUTPUT_BINS))


class HintsNotSupportedError(ChromatizeError):
    """Colour hints were given to a model that has no hint inputs."""


@runtime_checkable
class ColourModel(Protocol):
    """Structural type of a colour model (see the module docstring)."""

    stride: int
    logit_scale: float
    default_input_size: int
    default_temperature: float
    accepts_hints: bool

    def __call__(self, l: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor: ...  # noqa: E741


def decode_log_prior(model: object) -> torch.Tensor | None:
    """``model``'s decoding log prior (313,), or None where it has none (or all zeros)."""
    value = getattr(model, DECODE_PRIOR_KEY, None)
    if not isinstance(value, torch.Tensor) or not bool(value.any()):
        return None
    return value.detach().float().cpu()


def check_model(model: object, name: str) -> None:
    """Raise :class:`ChromatizeError` naming every attribute ``model`` lacks or has wrong."""
    problems = []
    for attribute, kind in REQUIRED_ATTRIBUTES.items():
        value = getattr(model, attribute, None)
        if value is None:
            problems.append(f"{attribute} is missing")
        elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            continue
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            problems.append(f"{attribute} should be {kind.__name__}, is {value!r}")
    if output_kind(model) not in (OUTPUT_BINS, OUTPUT_AB):
        problems.append(f"output_kind should be {OUTPUT_BINS!r} or {OUTPUT_AB!r}, is "
                        f"{output_kind(model)!r}")
    if problems:
        raise ChromatizeError(
            f"{name} does not follow chromatize's model contract ({'; '.join(problems)}); see "
            "chromatize.models.contract"
        )


def refuse_hints(model_name: str, hints: torch.Tensor | None) -> None:
    """For models without hint inputs: raise unless ``hints`` is None."""
    if hints is not None:
        raise HintsNotSupportedError(
            f"the {model_name} model does not accept colour hints; colorize without hints or "
            "choose a model that accepts them"
        )


def check_hints(hints: torch.Tensor, lightness: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``hints`` has the contract's shape for input ``lightness``."""
    expected = (lightness.shape[0], HINT_CHANNELS, *lightness.shape[-2:])
    if tuple(hints.shape) != expected:
        raise ValueError(f"expected hints of shape {expected}, got {tuple(hints.shape)}")
