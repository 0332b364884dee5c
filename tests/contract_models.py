"""A tiny network that follows chromatize's model contract, for tests of the stages around it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from chromatize import bins
from chromatize.models.contract import HINT_AB_SCALE


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


class TinyHintModel(nn.Module):
    """A tiny contract model that accepts hints: seeded random logits (times ``scale``), and
    within ``spread`` cells of a hint a distribution peaked at the hint's ab (what a
    hint-trained network learns to do, without training); ``follow=False`` ignores hints."""

    logit_scale = 1.0
    default_input_size = 64
    default_temperature = 0.38
    stride = 8
    accepts_hints = True

    def __init__(self, follow: bool = True, spread: int = 4, scale: float = 1.0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.conv = nn.Conv2d(1, 313, 3, stride=4, padding=1)
        self.follow, self.spread = follow, spread
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * scale)

    def forward(self, l: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:  # noqa: E741
        logits = self.conv((l - 50.0) / 50.0)
        if hints is None or not self.follow:
            return logits
        mask = F.avg_pool2d(hints[:, 2:3], 4)
        ab = F.avg_pool2d(hints[:, :2] * HINT_AB_SCALE, 4) / mask.clamp_min(1e-6)
        for _ in range(self.spread):  # spread each hint's colour to the cells around it
            grown = F.avg_pool2d(ab * mask, 3, 1, 1) / F.avg_pool2d(mask, 3, 1, 1).clamp_min(1e-6)
            ab = torch.where(mask > 0, ab, grown)
            mask = F.max_pool2d(mask, 3, 1, 1)
        centres = bins.AB_BINS.to(l.device)
        distance = ((centres[None, :, :, None, None] - ab[:, None]) ** 2).sum(2)
        return torch.where(mask > 0, -distance / 50.0, logits)
