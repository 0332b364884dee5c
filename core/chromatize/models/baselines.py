"""What the earlier colorizer designs (``chromatize eval``'s baselines) share.

Each baseline predicts one ab colour per output pixel (``output_kind = "ab"``, see
:mod:`chromatize.models.contract`) instead of a 313-bin distribution, takes no colour hints and is
trained by :mod:`chromatize.training.baselines`. They are listed by ``chromatize models --all``
and usable with ``--model NAME`` in the CLI, but not offered in the editors.
"""

from __future__ import annotations

import torch
from torch import nn

from chromatize.models.contract import OUTPUT_AB, refuse_hints

#: Largest |a| or |b| a regression head produces (tanh scaled by it): sRGB's ab stays within it.
AB_RANGE = 110.0
#: Render size of every baseline (the same as ``mobile``'s, so they are compared at one scale).
BASELINE_INPUT_SIZE = 224


class ABBaseline(nn.Module):
    """A baseline: the model contract's attributes for a model that returns ab.

    ``default_temperature`` and ``logit_scale`` are part of the contract but unused: ab models
    have no distribution to anneal.
    """

    stride: int = 4
    logit_scale: float = 1.0
    default_input_size: int = BASELINE_INPUT_SIZE
    default_temperature: float = 1.0
    accepts_hints: bool = False
    output_kind: str = OUTPUT_AB
    name: str = "baseline"

    def forward(self, lightness: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:
        refuse_hints(self.name, hints)
        return self.predict_ab(lightness)

    def predict_ab(self, lightness: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def normalised(lightness: torch.Tensor) -> torch.Tensor:
    """L in [0, 100] -> about [-1, 1]."""
    return (lightness.float().clamp(0.0, 100.0) - 50.0) / 50.0


def ab_head(in_ch: int) -> nn.Sequential:
    """The regression designs' output: a 1x1 convolution to ab, tanh, scaled to :data:`AB_RANGE`."""
    return nn.Sequential(nn.Conv2d(in_ch, 2, 1), nn.Tanh(), Scale(AB_RANGE))


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = float(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def conv_bn_relu(in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))
