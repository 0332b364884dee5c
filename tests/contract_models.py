"""A tiny network that follows chromatize's model contract, for tests of the stages around it."""

from __future__ import annotations

import torch
from torch import nn


class TinyColourModel(nn.Module):
    """One strided convolution from L to 313 logits at 1/4 size, with seeded weights."""

    logit_scale = 1.0
    default_input_size = 32
    default_temperature = 0.38
    stride = 8
    accepts_hints = False

    def __init__(self, seed: int = 3) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(1, 313, 3, stride=4, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))

    def forward(self, l: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:  # noqa: E741
        return self.conv((l - 50.0) / 50.0)
