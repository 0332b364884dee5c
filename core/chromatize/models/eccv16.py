"""Zhang, Isola & Efros, "Colorful Image Colorization" (ECCV 2016): the classification network.

The module layout mirrors the official PyTorch port (richzhang/colorization,
``colorizers/eccv16.py``) attribute for attribute, so the official release
``colorization_release_v2-9b330a0b.pth`` loads unchanged with ``strict=True``:

- ``model1`` ... ``model7``: VGG-style blocks of Conv2d + ReLU ending in BatchNorm2d (``model5`` and
  ``model6`` use dilation 2); three of them halve the resolution.
- ``model8``: ConvTranspose2d(512, 256, 4, 2, 1), two 3x3 convs, and a 1x1 conv to the 313 bins.
- ``model_out``: Conv2d(313, 2, 1, bias=False), whose weights are the bin centres / 110. The
  official forward pass is ``110 * model_out(softmax(model8(...)))``: the mean of the ab bins.

Our model contract differs from the port: :meth:`ECCV16.forward` takes L in [0, 100] and returns
the 313 logits of ``model8`` (N, 313, H/4, W/4). Decoding (annealed mean, mean, mode) is
:func:`chromatize.bins.decode`'s job; ``model_out`` is kept only so the official file loads
strictly and so :meth:`ECCV16.validate_weights` can prove the file orders its bins like
:data:`chromatize.bins.AB_BINS`.

Why ``logit_scale = 1/2.606`` (an inference, documented here because it is not documented upstream)
---------------------------------------------------------------------------------------------------
The paper decodes with an annealed mean at T = 0.38: softmax(log p / T) over the bins. The original
Caffe deploy network (``colorization_deploy_v2.prototxt``, Caffe branch of the same repository)
implements this as a Scale layer ``conv8_313_rh`` that multiplies the raw ``conv8_313`` output by
2.606 (about 1/0.38) before the softmax, followed by the fixed ``class8_ab`` 1x1 conv holding the
bin centres (OpenCV's widely copied colorization sample sets exactly these two blobs). The PyTorch
port has no such layer and no temperature anywhere: its forward pass is softmax(model8(x))
followed directly by ``model_out``, yet its demo output is reported to match the Caffe demo's
(its README: results "should match" the example outputs; we could not compare images offline).
Both hold only if the
port folded the 2.606 into the weights and bias of ``model8``'s last conv, i.e.
``model8(x) = 2.606 * conv8_313(x)``; an unfolded port would produce the plain mean, visibly greyer.
The network was trained with a softmax cross-entropy on ``conv8_313``, so ``conv8_313`` (not
``model8``'s output) is the log-probability up to a constant; hence ``logit_scale = 1 / 2.606`` and

    chromatize.bins.decode(logits, temperature=T, logit_scale=1/2.606)
        = softmax(model8(x) / (2.606 * T)) @ AB_BINS.

At T = 1/2.606 (= 0.38373, what Caffe's 2.606 actually encodes) that is *exactly* the official
forward path (``tests/test_eccv16.py`` checks it), which is why the registry's default temperature
for this model is :data:`OFFICIAL_TEMPERATURE` rather than the rounded 0.38 of the paper. At
T = 0.38 the softmax is 1 % sharper than the official demo's, a difference far below what anyone
can see; T = 1 gives the plain, desaturated mean of the network's trained distribution.

The official file could not be downloaded here to confirm the fold numerically (the question is
open upstream as richzhang/colorization issue #93). Whatever the answer, the user-facing
behaviour is pinned: the default temperature reproduces the official port's colours exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from chromatize.bins import AB_BINS, NUM_BINS
from chromatize.errors import WeightsError
from chromatize.models.contract import refuse_hints

#: Scale of the Caffe ``conv8_313_rh`` layer, folded into ``model8``'s last conv in the port.
OFFICIAL_LOGIT_RESCALE = 2.606
#: Multiply ``model8``'s output by this to get log-probabilities up to a constant.
OFFICIAL_LOGIT_SCALE = 1.0 / OFFICIAL_LOGIT_RESCALE
#: The temperature at which our annealed mean equals the official forward pass exactly (0.38373).
OFFICIAL_TEMPERATURE = 1.0 / OFFICIAL_LOGIT_RESCALE
#: ab values are normalised by this in the official network (``model_out`` = bins / AB_NORM).
AB_NORM = 110.0
L_CENTRE = 50.0
L_NORM = 100.0
#: Tolerance for comparing the stored ``model_out`` weights with AB_BINS / 110 (float32 rounding).
_HEAD_ATOL = 1e-4


def _conv_block(
    channels: list[int],
    strides: list[int] | None = None,
    dilation: int = 1,
    batch_norm: bool = True,
) -> nn.Sequential:
    """3x3 Conv2d + ReLU for each consecutive pair in ``channels``, then BatchNorm2d.

    Layer indices (conv at 0, 2, 4, ...; BatchNorm last) match the official state-dict keys.
    """
    strides = strides or [1] * (len(channels) - 1)
    layers: list[nn.Module] = []
    for c_in, c_out, stride in zip(channels[:-1], channels[1:], strides, strict=True):
        layers.append(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=True)
        )
        layers.append(nn.ReLU(inplace=True))
    if batch_norm:
        layers.append(nn.BatchNorm2d(channels[-1]))
    return nn.Sequential(*layers)


class ECCV16(nn.Module):
    """The ECCV16 colorization network: L (N, 1, H, W) in [0, 100] -> 313 bin logits at H/4, W/4.

    H and W should be multiples of :attr:`stride` (8); other sizes work but round the output size.
    """

    #: Multiply the output by this to get log-probabilities up to a constant (see module doc).
    logit_scale: float = OFFICIAL_LOGIT_SCALE
    #: Resolution the network was trained at (square).
    default_input_size: int = 256
    #: Total downsampling inside the network; inputs should be multiples of it.
    stride: int = 8
    #: Temperature at which chromatize's annealed mean equals the official demo's softmax.
    default_temperature: float = OFFICIAL_TEMPERATURE
    accepts_hints: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.model1 = _conv_block([1, 64, 64], strides=[1, 2])
        self.model2 = _conv_block([64, 128, 128], strides=[1, 2])
        self.model3 = _conv_block([128, 256, 256, 256], strides=[1, 1, 2])
        self.model4 = _conv_block([256, 512, 512, 512])
        self.model5 = _conv_block([512, 512, 512, 512], dilation=2)
        self.model6 = _conv_block([512, 512, 512, 512], dilation=2)
        self.model7 = _conv_block([512, 512, 512, 512])
        self.model8 = nn.Sequential(
            nn.ConvTranspose2d(512, 256, kernel_size=4, stride=2, padding=1, bias=True),
            nn.ReLU(inplace=True),
            *_conv_block([256, 256, 256], batch_norm=False),
            nn.Conv2d(256, NUM_BINS, kernel_size=1, bias=True),
        )
        self.model_out = nn.Conv2d(NUM_BINS, 2, kernel_size=1, bias=False)
        with torch.no_grad():  # a freshly built network decodes like the official one
            self.model_out.weight.copy_(official_head_weight())

    def forward(self, l: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:  # noqa: E741 - L is the Lab channel
        refuse_hints("eccv16", hints)
        x = (l - L_CENTRE) / L_NORM
        for block in (
            self.model1, self.model2, self.model3, self.model4,
            self.model5, self.model6, self.model7, self.model8,
        ):  # fmt: skip
            x = block(x)
        return x

    def reference_ab(self, logits: torch.Tensor) -> torch.Tensor:
        """ab (N, 2, H/4, W/4) exactly as the official port computes it from ``forward``'s logits.

        ``110 * model_out(softmax(logits))`` - for comparisons and the reference benchmark.
        """
        return AB_NORM * self.model_out(torch.softmax(logits, dim=1))

    def validate_weights(self, source: str) -> None:
        """Raise :class:`WeightsError` unless ``model_out`` holds AB_BINS / 110 in our bin order.

        ``source`` names the weights file in the message. A file that passes decodes the 313 logits
        to the same colours as :data:`chromatize.bins.AB_BINS`, which proves the bin order.
        """
        stored = self.model_out.weight.detach().float().cpu()
        expected = official_head_weight()
        if not torch.allclose(stored, expected, atol=_HEAD_ATOL, rtol=0):
            worst = (stored - expected).abs().flatten().argmax().item()
            bin_index = worst % NUM_BINS
            raise WeightsError(
                f"{source}: the decoder head model_out.weight does not equal the 313 ab bin "
                f"centres / {AB_NORM:g} in chromatize's order (largest difference at bin "
                f"{bin_index}, expected ab {AB_BINS[bin_index].tolist()}); this file is not the "
                "official ECCV16 release or orders its bins differently, so its logits would "
                "decode to the wrong colours"
            )


def official_head_weight() -> torch.Tensor:
    """The official ``model_out.weight``: AB_BINS.T / 110 shaped (2, 313, 1, 1)."""
    return (AB_BINS.T / AB_NORM).reshape(2, NUM_BINS, 1, 1).clone()


def build_eccv16() -> ECCV16:
    """A fresh ECCV16 network (random weights except the fixed ``model_out`` head)."""
    return ECCV16()
