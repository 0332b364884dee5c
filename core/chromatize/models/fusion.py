"""Fusion regression baseline: the "Deep Koalarization" design (Baldassarre, Morín & Rodés-Guirao,
2017) with the ImageNet MobileNetV2 as its global embedding network.

An encoder of plain convolutions (trained from scratch) takes L down to stride 8; the frozen
ImageNet classifier sees the same photo as a gray 224x224 image and its 1001 logits (the layer
before the softmax, as the paper takes Inception-ResNet-v2's) are repeated over every position
and fused into the bottleneck by a 1x1 convolution; a decoder of convolutions and upsampling
regresses ab with tanh, trained with mean squared error. The paper's Inception-ResNet-v2 weights
cannot be had here; the embedding is the same MobileNetV2 that ``mobile`` starts from, and the
convolution widths are halved to fit a 20-minute CPU budget.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from chromatize.models.baselines import ABBaseline, ab_head, conv_bn_relu, normalised
from chromatize.models.mobile import MobileNetV2Classifier, lightness_to_backbone_input

#: Side of the gray image the embedding network classifies.
EMBEDDING_SIZE = 224
#: Outputs of the ImageNet classifier (index 0 = background).
EMBEDDING_CLASSES = 1001


class FusionRegressor(ABBaseline):
    stride: int = 8
    name = "fusion"

    def __init__(self) -> None:
        super().__init__()
        widths = (32, 64, 64, 128, 128, 256, 256, 128)
        strides = (2, 1, 2, 1, 2, 1, 1, 1)
        layers: list[nn.Module] = []
        in_ch = 1
        for out_ch, stride in zip(widths, strides, strict=True):
            layers.append(conv_bn_relu(in_ch, out_ch, stride))
            in_ch = out_ch
        self.encoder = nn.Sequential(*layers)
        self.embedding = MobileNetV2Classifier()
        self.embedding.requires_grad_(False)
        self.fuse = nn.Sequential(nn.Conv2d(128 + EMBEDDING_CLASSES, 128, 1), nn.ReLU(inplace=True))
        self.decoder = nn.Sequential(conv_bn_relu(128, 64), nn.Upsample(scale_factor=2.0),
                                     conv_bn_relu(64, 32), conv_bn_relu(32, 32))
        self.head = ab_head(32)

    def train(self, mode: bool = True) -> FusionRegressor:
        super().train(mode)
        self.embedding.eval()  # frozen: its batch-norm statistics stay ImageNet's
        return self

    def embed(self, lightness: torch.Tensor) -> torch.Tensor:
        """The classifier's logits (N, 1001) for the photo in gray at 224x224."""
        gray = F.interpolate(lightness.float(), size=(EMBEDDING_SIZE, EMBEDDING_SIZE),
                             mode="bilinear", align_corners=False, antialias=True)
        with torch.no_grad():
            return self.embedding(lightness_to_backbone_input(gray))

    def predict_ab(self, lightness: torch.Tensor) -> torch.Tensor:
        features = self.encoder(normalised(lightness))
        embedding = self.embed(lightness).to(features.dtype)
        tiled = embedding[:, :, None, None].expand(-1, -1, *features.shape[-2:])
        return self.head(self.decoder(self.fuse(torch.cat([features, tiled], 1)))).float()
