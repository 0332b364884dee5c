"""A randomly initialised state dict in the official ECCV16 layout, for tests.

The layout is written out here independently of :mod:`chromatize.models.eccv16`, transcribed from
richzhang/colorization ``colorizers/eccv16.py``: blocks of (Conv2d, ReLU)* ending in BatchNorm2d,
``model8`` without BatchNorm, and ``model_out`` = Conv2d(313, 2, 1, bias=False).
"""

from __future__ import annotations

import torch

from chromatize.bins import AB_BINS
from chromatize.registry import ModelSpec


def official_layout() -> dict[str, tuple[int, ...]]:
    """Parameter/buffer shapes of the official port, written out independently of ECCV16.

    Transcribed from richzhang/colorization colorizers/eccv16.py: blocks of (conv, ReLU)* + BN.
    """
    shapes: dict[str, tuple[int, ...]] = {}

    def block(name: str, channels: list[int]) -> None:
        idx = 0
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            shapes[f"{name}.{idx}.weight"] = (c_out, c_in, 3, 3)
            shapes[f"{name}.{idx}.bias"] = (c_out,)
            idx += 2
        c = channels[-1]
        for key in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{idx}.{key}"] = (c,)
        shapes[f"{name}.{idx}.num_batches_tracked"] = ()

    block("model1", [1, 64, 64])
    block("model2", [64, 128, 128])
    block("model3", [128, 256, 256, 256])
    block("model4", [256, 512, 512, 512])
    for name in ("model5", "model6", "model7"):
        block(name, [512, 512, 512, 512])
    shapes["model8.0.weight"] = (512, 256, 4, 4)
    shapes["model8.0.bias"] = (256,)
    for idx in (2, 4):
        shapes[f"model8.{idx}.weight"] = (256, 256, 3, 3)
        shapes[f"model8.{idx}.bias"] = (256,)
    shapes["model8.6.weight"] = (313, 256, 1, 1)
    shapes["model8.6.bias"] = (313,)
    shapes["model_out.weight"] = (2, 313, 1, 1)
    return shapes


def random_official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A randomly initialised state dict in the official layout (model_out = bins / 110)."""
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for key, shape in official_layout().items():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(0, dtype=torch.long)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith("running_mean"):
            sd[key] = torch.randn(shape, generator=gen) * 0.1
        elif key == "model_out.weight":
            sd[key] = (AB_BINS.T / 110.0).reshape(shape).clone()
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod().item())) if len(shape) > 1 else 1
            sd[key] = torch.randn(shape, generator=gen) / fan_in**0.5
    return sd


def eccv16_spec(
    url: str | None, sha256: str | None, filename: str = "eccv16-test.pth"
) -> ModelSpec:
    """A registry entry for a test copy of eccv16 (served by a local server, or not at all)."""
    return ModelSpec(
        name="eccv16-test",
        description="test copy of eccv16 served by a local HTTP server",
        architecture="ECCV16",
        model_class="chromatize.models.eccv16:ECCV16",
        license="BSD-2-Clause",
        source="tests",
        url=url,
        sha256=sha256,
        filename=filename,
        weights_format="pth",
    )
