"""``mobile``: chromatize's embedded default colorizer.

A MobileNetV2 1.0 encoder (ImageNet weights converted from TensorFlow Lite, see
:mod:`chromatize.models.tflite_convert`) that reproduces TensorFlow's SAME padding exactly, and a
light U-Net-style decoder with skips from strides 4, 8, 16 and 32 plus a global-context branch
(pooled stride-32 features broadcast to every position). Output: 313 bin logits at 1/4 of the input
resolution, ``logit_scale`` 1.

The grayscale input L in [0, 100] is turned into the sRGB gray level a photo of that lightness has,
then into the backbone's input range ((u8 - 128) / 128), and replicated to 3 channels: the encoder
sees exactly what it would see for a grayscale JPEG.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from chromatize.bins import NUM_BINS
from chromatize.color import lightness_to_gray
from chromatize.models.contract import DECODE_PRIOR_KEY, check_hints, refuse_hints

#: (expand ratio, out channels, repeats, first stride) of MobileNetV2 1.0's residual stages.
MOBILENET_V2_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
#: Indices of the inverted-residual blocks whose outputs feed the decoder (strides 4, 8, 16).
SKIP_BLOCKS: tuple[int, int, int] = (2, 5, 12)
ENCODER_CHANNELS: tuple[int, int, int, int] = (24, 32, 96, 1280)
RELU6_MAX = 6.0


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after) along one axis: extra padding goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow SAME padding computed from the input size (asymmetric when
    the stride is 2 and the input size is even)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1):
        # With stride 1 and an odd kernel, SAME is symmetric: let the convolution pad itself.
        pad = kernel // 2 if stride == 1 and kernel % 2 == 1 else 0
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=pad, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        if k > 1 and self.padding == (0, 0):
            top, bottom = same_padding(x.shape[-2], k, s)
            left, right = same_padding(x.shape[-1], k, s)
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class ConvReLU6(nn.Sequential):
    """Convolution (batch norm folded into its bias) followed by ReLU6 (clip to [0, 6])."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(SameConv2d(in_ch, out_ch, kernel, stride, groups), nn.ReLU6())


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (none at ratio 1), 3x3 depthwise, 1x1 linear projection."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int):
        super().__init__()
        hidden = in_ch * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvReLU6(in_ch, hidden, 1))
        layers.append(ConvReLU6(hidden, hidden, 3, stride, groups=hidden))
        layers.append(SameConv2d(hidden, out_ch, 1))
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.residual else y


class MobileNetV2Encoder(nn.Module):
    """MobileNetV2 1.0 feature extractor (no classifier). Input: (N, 3, H, W) in [-1, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvReLU6(3, 32, 3, 2)
        blocks: list[nn.Module] = []
        in_ch = 32
        for expand, out_ch, repeats, stride in MOBILENET_V2_STAGES:
            for i in range(repeats):
                blocks.append(InvertedResidual(in_ch, out_ch, stride if i == 0 else 1, expand))
                in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        self.head = ConvReLU6(in_ch, 1280, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features at strides 4, 8, 16 and 32."""
        feats: list[torch.Tensor] = []
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in SKIP_BLOCKS:
                feats.append(x)
        feats.append(self.head(x))
        return feats


class MobileNetV2Classifier(nn.Module):
    """Encoder + the ImageNet classifier (1001 outputs, index 0 = background): only used to prove
    that a converted backbone is faithful."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = MobileNetV2Encoder()
        self.classifier = nn.Conv2d(1280, 1001, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.encoder(x)[-1]
        return self.classifier(f.mean(dim=(2, 3), keepdim=True)).flatten(1)


def lightness_to_backbone_input(lightness: torch.Tensor) -> torch.Tensor:
    """L in [0, 100] (N, 1, H, W) -> the backbone input (N, 3, H, W) of a gray sRGB photo."""
    v = lightness_to_gray(lightness.float().clamp(0.0, 100.0))
    return ((v * 255.0 - 128.0) / 128.0).expand(-1, 3, -1, -1)


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class FuseBlock(nn.Sequential):
    """Cheap 3x3 context at high resolution: 1x1 mix, 3x3 depthwise, 1x1 mix (BN + ReLU each)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(
            ConvBNReLU(in_ch, out_ch, 1),
            ConvBNReLU(out_ch, out_ch, 3, groups=out_ch),
            ConvBNReLU(out_ch, out_ch, 1),
        )


class ColorDecoder(nn.Module):
    """U-Net-style decoder from encoder features at strides 4/8/16/32 to 313 logits at stride 4.

    The stride-32 features are fused with a global-context vector (their spatial mean through a
    linear layer, broadcast to every position) so that distant parts of the image agree on colour.
    """

    def __init__(self, channels: tuple[int, int, int, int] = ENCODER_CHANNELS) -> None:
        super().__init__()
        c4, c8, c16, c32 = channels
        self.reduce32 = ConvBNReLU(c32, 256, 1)
        self.global_context = nn.Sequential(nn.Linear(c32, 256), nn.ReLU(inplace=True))
        self.fuse32 = ConvBNReLU(512, 256, 3)
        self.up16 = FuseBlock(256 + c16, 192)
        self.up8 = FuseBlock(192 + c8, 128)
        self.up4 = FuseBlock(128 + c4, 64)
        self.logits = nn.Conv2d(64, 313, 1)

    @staticmethod
    def _up_cat(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([x, skip], dim=1)

    def forward(self, feats: list[torch.Tensor],
                guidance: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits from encoder features; ``guidance`` (features at strides 32, 16, 8 and 4 with
        this decoder's widths there, from :class:`HintEncoder`) is added at each stride."""
        f4, f8, f16, f32 = feats
        g32, g16, g8, g4 = guidance if guidance is not None else (None, None, None, None)
        x = self.reduce32(f32)
        g = self.global_context(f32.mean(dim=(2, 3)))[:, :, None, None].expand_as(x)
        x = _plus(self.fuse32(torch.cat([x, g], dim=1)), g32)
        x = _plus(self.up16(self._up_cat(x, f16)), g16)
        x = _plus(self.up8(self._up_cat(x, f8)), g8)
        x = _plus(self.up4(self._up_cat(x, f4)), g4)
        return self.logits(x)


def _plus(x: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
    return x if extra is None else x + extra


#: Widths of :class:`HintEncoder`'s levels at strides 4, 8, 16 and 32.
HINT_WIDTHS: tuple[int, int, int, int] = (32, 48, 64, 96)
#: The decoder's widths after fuse32, up16, up8 and up4, where the hint features are added.
DECODER_WIDTHS: tuple[int, int, int, int] = (256, 192, 128, 64)
#: Spreads (Gaussian sigma, in cells of 4 pixels) of the hint colour fields: about 6, 16 and
#: 48 pixels of the model's input.
HINT_SPREADS: tuple[float, ...] = (1.5, 4.0, 12.0)
#: Channels of the stride-4 hint features: coverage, mean hint ab, the lightness, and per spread a
#: colour field (2) and its confidence.
HINT_FEATURES = 4 + 3 * len(HINT_SPREADS)


def _conv_relu(in_ch: int, out_ch: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, stride, padding=1), nn.ReLU(inplace=True))


def _gaussian_blur(x: torch.Tensor, sigma: float, channels: int) -> torch.Tensor:
    """Separable Gaussian blur of ``channels`` channels with zero padding (the sum of weights
    falls off at the border, which normalised convolution wants). The kernel is built from
    constants only, so the ONNX export sees a fixed kernel shape."""
    radius = max(1, round(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(dtype=x.dtype, device=x.device)
    column = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    row = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    x = F.conv2d(x, column, padding=(radius, 0), groups=channels)
    return F.conv2d(x, row, padding=(0, radius), groups=channels)


def hint_fields(lightness: torch.Tensor, hints: torch.Tensor) -> torch.Tensor:
    """The stride-4 features :class:`HintEncoder` starts from (N, HINT_FEATURES, H/4, W/4):
    hint coverage, mean hint ab (/110) and lightness per 4x4 cell, and for each of
    :data:`HINT_SPREADS` a normalised convolution of the hints: the distance-weighted mean hint
    colour around every cell times its confidence (1 - exp(-2 x the weight of hints there
    relative to one hint cell)), and that confidence. Dense fields let a few convolutions carry a
    sparse hint's colour over its region instead of learning the spreading from scratch."""
    def pool(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, 4, ceil_mode=True)

    mask = pool(hints[:, 2:3])
    colour = pool(hints[:, :2])  # ab is zero where the mask is
    features = [mask, colour, pool(lightness / 50.0 - 1.0)]
    for sigma in HINT_SPREADS:
        blurred = _gaussian_blur(torch.cat([mask, colour], dim=1), sigma, channels=3)
        weight = blurred[:, :1]
        confidence = 1.0 - torch.exp(-2.0 * weight * (2 * math.pi * sigma * sigma))
        mean = blurred[:, 1:] / weight.clamp_min(1e-6)
        features += [mean * confidence, confidence]
    return torch.cat(features, dim=1)


class HintEncoder(nn.Module):
    """Local colour hints (Zhang et al. 2017) to additive decoder features.

    Input: the contract's hint tensor (ab / 110, mask) and the lightness, at the model's input
    resolution, turned into dense hint colour fields at stride 4 (:func:`hint_fields`). A small
    plain CNN sees them with the lightness (so it can stop a colour at lightness edges) and
    halves the resolution three times; at strides 32, 16, 8 and 4 a 1x1 projection, initialised
    to zero, maps its features to the decoder's width there, so a hint acts both locally and
    over a whole object. The zero projections make a fresh encoder a no-op: training starts
    from the automatic model unchanged.
    """

    def __init__(self) -> None:
        super().__init__()
        w4, w8, w16, w32 = HINT_WIDTHS
        self.stem = nn.Sequential(_conv_relu(HINT_FEATURES, w4), _conv_relu(w4, w4))
        self.down8 = nn.Sequential(_conv_relu(w4, w8, 2), _conv_relu(w8, w8))
        self.down16 = nn.Sequential(_conv_relu(w8, w16, 2), _conv_relu(w16, w16))
        self.down32 = nn.Sequential(_conv_relu(w16, w32, 2), _conv_relu(w32, w32))
        d32, d16, d8, d4 = DECODER_WIDTHS
        self.project = nn.ModuleList(
            [nn.Conv2d(w32, d32, 1), nn.Conv2d(w16, d16, 1), nn.Conv2d(w8, d8, 1),
             nn.Conv2d(w4, d4, 1)])
        for conv in self.project:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, lightness: torch.Tensor, hints: torch.Tensor) -> list[torch.Tensor]:
        """Features to add at strides 32, 16, 8 and 4 (matching the encoder's SAME sizes)."""
        x4 = self.stem(hint_fields(lightness, hints.to(lightness.dtype)))
        x8 = self.down8(x4)
        x16 = self.down16(x8)
        x32 = self.down32(x16)
        return [p(f) for p, f in zip(self.project, (x32, x16, x8, x4), strict=True)]


class MobileColorizer(nn.Module):
    """L (N, 1, H, W) in [0, 100] -> bin logits (N, 313, H/4, W/4); H, W multiples of 32."""

    logit_scale: float = 1.0
    #: About 224x224 pixels: 192x288 for a 3:2 photo and 192x256 for a 4:3 one, the scale of the
    #: training photos (shorter side 192). The model is sensitive to scale and to resampling: on the
    #: held-out photos, rendering 3:2 ones 1.17x larger (the old default, 256) cost about one
    #: point of class-rebalanced AuC for the scale alone (shipped/MODEL_CARD.md, "Render size").
    default_input_size: int = 224
    #: Chosen on the training run's held-out split (shipped/MODEL_CARD.md); the same value is
    #: recorded in the weights' metadata and a test keeps the two equal.
    default_temperature: float = 1.0
    stride: int = 32
    accepts_hints: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.encoder = MobileNetV2Encoder()
        self.decoder = ColorDecoder()

    def forward(self, lightness: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:
        refuse_hints("mobile", hints)
        if lightness.ndim != 4 or lightness.shape[1] != 1:
            raise ValueError(f"expected L of shape (N, 1, H, W), got {tuple(lightness.shape)}")
        return self.decoder(self.encoder(lightness_to_backbone_input(lightness)))


class MobileHintColorizer(MobileColorizer):
    """``mobile`` v2: :class:`MobileColorizer` plus a :class:`HintEncoder`, so it takes the
    contract's optional local colour hints; all-zero hints and ``None`` give the same automatic
    result."""

    accepts_hints: bool = True
    #: Chosen on the held-out split when the weights were exported (shipped/MODEL_CARD.md); the
    #: same value is recorded in the weights' metadata and a test keeps the two equal.
    default_temperature: float = 1.0
    #: State keys a weights file may lack (loaded as their initial value): files written before
    #: the decoding prior was stored decode with the paper's plain annealing.
    optional_state_keys: tuple[str, ...] = (DECODE_PRIOR_KEY,)

    def __init__(self) -> None:
        super().__init__()
        self.hint_encoder = HintEncoder()
        #: log of the colour prior the distribution was trained against (313,); the temperature
        #: anneals the evidence relative to it (:func:`chromatize.bins.probabilities`). Set by
        #: training from its split's prior, stored in the weights; all zeros = plain annealing.
        self.register_buffer(DECODE_PRIOR_KEY, torch.zeros(NUM_BINS))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,  # type: ignore[no-untyped-def]
                              missing_keys, unexpected_keys, error_msgs) -> None:
        for key in self.optional_state_keys:
            state_dict.setdefault(prefix + key, getattr(self, key).detach().clone())
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, lightness: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:
        if lightness.ndim != 4 or lightness.shape[1] != 1:
            raise ValueError(f"expected L of shape (N, 1, H, W), got {tuple(lightness.shape)}")
        if hints is None:
            hints = lightness.new_zeros((lightness.shape[0], 3, *lightness.shape[-2:]))
        else:
            check_hints(hints, lightness)
        feats = self.encoder(lightness_to_backbone_input(lightness))
        return self.decoder(feats, self.hint_encoder(lightness.float(), hints))


def build_mobile(hints: bool = False) -> nn.Module:
    """The ``mobile`` architecture with freshly initialised weights (load a state dict into it):
    v1 without hint inputs, or v2 (:class:`MobileHintColorizer`) with ``hints``."""
    return MobileHintColorizer() if hints else MobileColorizer()


def is_hint_state(state: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict holds a :class:`MobileHintColorizer` (it has hint-encoder weights)."""
    return any(k.startswith("hint_encoder.") for k in state)
