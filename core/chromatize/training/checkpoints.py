"""Training checkpoints: writing them atomically, reading them, and the model they hold.

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
