"""DenseNet-style regression baseline: densely connected convolution blocks regressing ab with a
mean-squared-error loss, the design of the DenseNet colorization papers, as a fully convolutional
DenseNet (dense blocks down to stride 16 and back up to stride 4 with skip connections, Jégou et
al.'s "Tiramisu" layout) so that every output pixel sees a large part of the photo.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from chromatize.models.baselines import ABBaseline, ab_head, normalised


class DenseLayer(nn.Sequential):
    def __init__(self, in_ch: int, growth: int) -> None:
        super().__init__(nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True),
                         nn.Conv2d(in_ch, growth, 3, padding=1, bias=False))


class DenseBlock(nn.Module):
    """``layers`` layers, each seeing every earlier output; returns input + all new features."""

    def __init__(self, in_ch: int, growth: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(in_ch + i * growth, growth) for i in range(layers))
        self.out_channels = in_ch + layers * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        return x


class TransitionDown(nn.Sequential):
    def __init__(self, channels: int) -> None:
        super().__init__(nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                         nn.Conv2d(channels, channels, 1, bias=False), nn.AvgPool2d(2))


class DenseNetRegressor(ABBaseline):
    stride: int = 16
    name = "densenet"
    #: (growth, layers) of the dense blocks at strides 2, 4, 8 and 16 (the bottleneck).
    DOWN = ((12, 4), (16, 4), (20, 4), (24, 4))

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 32, 3, stride=2, padding=1, bias=False)
        channels = 32
        self.down = nn.ModuleList()
        self.transitions = nn.ModuleList()
        skips: list[int] = []
        for i, (growth, layers) in enumerate(self.DOWN):
            block = DenseBlock(channels, growth, layers)
            self.down.append(block)
            channels = block.out_channels
            if i < len(self.DOWN) - 1:
                skips.append(channels)
                self.transitions.append(TransitionDown(channels))
        # up path: stride 16 -> 8 -> 4, concatenating the down path's features at each stride
        self.up = nn.ModuleList()
        self.squeeze = nn.ModuleList()
        for skip, (growth, layers) in zip(skips[:0:-1], self.DOWN[-2:0:-1], strict=True):
            self.squeeze.append(nn.Conv2d(channels, 64, 1, bias=False))
            block = DenseBlock(64 + skip, growth, layers)
            self.up.append(block)
            channels = block.out_channels
        self.head = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                                  ab_head(channels))

    def predict_ab(self, lightness: torch.Tensor) -> torch.Tensor:
        x = self.stem(normalised(lightness))
        skips: list[torch.Tensor] = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.transitions):
                skips.append(x)
                x = self.transitions[i](x)
        for squeeze, block, skip in zip(self.squeeze, self.up, skips[:0:-1], strict=True):
            x = F.interpolate(squeeze(x), size=skip.shape[-2:], mode="bilinear",
                              align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.head(x).float()
