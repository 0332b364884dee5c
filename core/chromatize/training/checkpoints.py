"""Training checkpoints: writing them atomically, reading them, and the model they hold; and the
float16 safetensors files that export and the baselines write.

A checkpoint is a ``torch.save`` dict written by :mod:`chromatize.training.train` (``best.pt``,
``last.pt``) or :mod:`chromatize.training.averaging`: ``model`` (state dict), ``state`` (step,
elapsed seconds, ...), ``prior`` (the training split's bin counts), ``args`` (the run's options as
strings) and, once scored, ``metrics``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from chromatize.atomic import replacing
from chromatize.models.mobile import build_mobile, is_hint_state

#: The largest magnitude float16 holds; a tensor beyond it stays float32 in a weights file.
FLOAT16_MAX = float(torch.finfo(torch.float16).max)


def fp16_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state with floating-point tensors as float16, others (batch-norm counters)
    unchanged: what the shipped weights files hold. A tensor with values beyond float16's range
    (a batch norm's running variance after a hot training run, say) stays float32: as float16 it
    would turn into infinities and every output into NaN. Non-finite weights (a diverged run)
    raise ``ValueError``."""
    state = {}
    for key, value in model.state_dict().items():
        value = value.detach()
        if value.is_floating_point():
            if not torch.isfinite(value).all():
                raise ValueError(f"the weights hold non-finite values in {key}: the training "
                                 "run diverged; export an earlier checkpoint")
            fits = value.numel() == 0 or float(value.abs().max()) <= FLOAT16_MAX
            value = value.to(torch.float16 if fits else torch.float32)
        state[key] = value.contiguous()
    return state


def write_weights(state: dict[str, torch.Tensor], meta: dict[str, str], out: Path,
                  fresh: nn.Module) -> None:
    """``state`` as safetensors at ``out`` (with ``meta``), atomically; the file must load strictly
    into ``fresh`` (a new network of the right shape) before it takes the name."""
    from safetensors.torch import load_file, save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out, ".safetensors.tmp") as tmp:
        save_file(state, tmp, metadata=meta)
        fresh.load_state_dict(load_file(tmp), strict=True)


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary name beside ``path``, then rename it into place."""
    with replacing(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by the training tools, on the CPU."""
    return torch.load(path, map_location="cpu", weights_only=False)


def model_of(checkpoint: dict[str, Any]) -> nn.Module:
    """A ``mobile`` network (v2 with hint inputs when the weights have them) holding the
    checkpoint's weights (strictly: every tensor must fit)."""
    model = build_mobile(hints=is_hint_state(checkpoint["model"]))
    model.load_state_dict(checkpoint["model"], strict=True)
    return model
