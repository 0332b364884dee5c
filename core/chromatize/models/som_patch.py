"""SOM + patch MLP baseline: ab quantised by a self-organising map, each pixel's L patch
classified into a SOM cell by a multilayer perceptron, the cell's colour shown.

The SOM (trained with ``minisom`` by :mod:`chromatize.training.baselines`) turns the training
photos' ab into ``cells`` colours, stored in the weights as ``cell_ab``. The MLP sees the
``patch`` x ``patch`` lightness around every 4th pixel (two hidden layers of ``hidden`` ReLU units),
written as convolutions: a ``patch``-sized one with stride 4, then two 1x1. A pixel gets the
colour of its most probable cell (the design's own rule), or, when the weights' ``mean_decode``
is 1, the probability-weighted mean of the cells' colours (a choice the training makes on the
validation photos). Sizes are read back from the weights, so one class serves every SOM size and
patch size the training chose between.
"""

from __future__ import annotations

import torch
from torch import nn

from chromatize.models.baselines import ABBaseline, normalised

DEFAULT_CELLS = 100
DEFAULT_PATCH = 11
DEFAULT_HIDDEN = 128


class SOMPatchClassifier(ABBaseline):
    stride: int = 4
    name = "som"

    def __init__(self, cells: int = DEFAULT_CELLS, patch: int = DEFAULT_PATCH,
                 hidden: int = DEFAULT_HIDDEN) -> None:
        super().__init__()
        if patch % 2 != 1:
            raise ValueError(f"patch size must be odd, got {patch}")
        self.mlp = nn.Sequential(
            nn.Conv2d(1, hidden, patch, stride=self.stride, padding=patch // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, cells, 1),
        )
        self.register_buffer("cell_ab", torch.zeros(cells, 2))
        #: 0: the most probable cell's colour; 1: the probability-weighted mean of the colours
        self.register_buffer("mean_decode", torch.zeros(()))

    @classmethod
    def for_state_dict(cls, state: dict[str, torch.Tensor]) -> SOMPatchClassifier:
        """A model shaped like the one ``state`` was saved from (cells, patch and hidden sizes)."""
        first = state.get("mlp.0.weight")
        cells = state.get("cell_ab")
        if first is None or cells is None or first.ndim != 4:
            return cls()
        return cls(cells=int(cells.shape[0]), patch=int(first.shape[-1]),
                   hidden=int(first.shape[0]))

    @property
    def cells(self) -> int:
        return int(self.cell_ab.shape[0])

    @property
    def patch(self) -> int:
        return int(self.mlp[0].kernel_size[0])

    def cell_logits(self, lightness: torch.Tensor) -> torch.Tensor:
        """(N, cells, H/4, W/4): the MLP's score of every SOM cell at every output pixel."""
        return self.mlp(normalised(lightness))

    def predict_ab(self, lightness: torch.Tensor) -> torch.Tensor:
        logits = self.cell_logits(lightness).float()
        colours = self.cell_ab.float()
        if float(self.mean_decode) > 0.5:
            return torch.einsum("nkhw,kc->nchw", logits.softmax(1), colours)
        return colours[logits.argmax(1)].permute(0, 3, 1, 2).contiguous()
