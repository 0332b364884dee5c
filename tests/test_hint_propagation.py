"""Hints carried into their surroundings after the network (chromatize.hint_propagation)."""

from __future__ import annotations

import numpy as np
import torch
from contract_models import TinyHintModel

from chromatize import hint_propagation
from chromatize.hint_propagation import propagate_hints, spatial_sigma
from chromatize.hints import Hints
from chromatize.models.contract import HINT_AB_SCALE
from chromatize.options import ColorizeOptions
from chromatize.pipeline import Colorizer


def _hint_tensor(height: int, width: int, cells: list[tuple[int, int, float, float]]
                 ) -> torch.Tensor:
    """Contract hints (3, H, W): one 4x4 block per (row, col, a, b) on a grid 4x coarser."""
    hints = torch.zeros(3, height, width)
    for row, col, a, b in cells:
        ys, xs = slice(4 * row, 4 * row + 4), slice(4 * col, 4 * col + 4)
        hints[0, ys, xs], hints[1, ys, xs], hints[2, ys, xs] = a / HINT_AB_SCALE, \
            b / HINT_AB_SCALE, 1.0
    return hints


def test_no_hints_change_nothing() -> None:
    ab = torch.randn(2, 12, 16)
    assert propagate_hints(ab, torch.full((48, 64), 50.0), torch.zeros(3, 48, 64)) is ab


def test_a_hint_pulls_its_surface_and_not_across_a_lightness_edge() -> None:
    h, w = 12, 16
    ab = torch.zeros(2, h, w)  # the model said gray everywhere
    lightness = torch.full((4 * h, 4 * w), 40.0)
    lightness[:, 4 * 10:] = 90.0  # a much brighter surface from column 10 on
    hints = _hint_tensor(4 * h, 4 * w, [(6, 8, 40.0, -30.0)])
    out = propagate_hints(ab, lightness, hints, count=1)
    # at the hint the colour is the hint's; on its own surface it is pulled most of the way
    assert torch.allclose(out[:, 6, 8], torch.tensor([40.0, -30.0]), atol=1e-3)
    assert float(out[0, 6, 6]) > 20.0
    # across the lightness edge, at the same distance, it hardly moves
    assert abs(float(out[0, 6, 10])) < 2.0
    # the pull falls with distance on the same surface
    assert float(out[0, 6, 7]) > float(out[0, 6, 5]) > float(out[0, 6, 3])


def test_many_hints_stay_local_and_the_model_keeps_the_rest() -> None:
    assert spatial_sigma(48, 72, 100) < spatial_sigma(48, 72, 10) <= spatial_sigma(48, 72, 1)
    assert spatial_sigma(48, 72, 1) <= hint_propagation.MAX_SPREAD * float(np.hypot(48, 72))
    h, w = 40, 40
    ab = torch.full((2, h, w), 10.0)
    lightness = torch.full((4 * h, 4 * w), 50.0)
    hints = _hint_tensor(4 * h, 4 * w, [(2, 2, -20.0, 30.0)])
    out = propagate_hints(ab, lightness, hints, count=100)  # spacing of 100 hints: 4 cells
    assert torch.allclose(out[:, 38, 38], ab[:, 38, 38], atol=1e-3)  # far away: the model's
    assert torch.allclose(out[:, 2, 2], torch.tensor([-20.0, 30.0]), atol=1e-3)


def test_two_hints_meet_between_them_in_proportion() -> None:
    h, w = 8, 24
    ab = torch.zeros(2, h, w)
    lightness = torch.full((4 * h, 4 * w), 50.0)
    hints = _hint_tensor(4 * h, 4 * w, [(4, 4, 30.0, 0.0), (4, 19, -30.0, 0.0)])
    out = propagate_hints(ab, lightness, hints, count=2)
    assert float(out[0, 4, 4]) > 25.0 and float(out[0, 4, 19]) < -25.0
    middle = float(out[0, 4, 11:13].mean())
    assert abs(middle) < 3.0  # halfway: the two pulls cancel


def test_the_pipeline_carries_the_hints_pull_into_the_prediction() -> None:
    rng = np.random.default_rng(0)
    gray = np.clip(0.5 + 0.02 * rng.standard_normal((96, 128)), 0, 1).astype(np.float32)
    colorizer = Colorizer(TinyHintModel(follow=False), device="cpu")
    options = ColorizeOptions()
    prepared = colorizer.prepare(gray, options)
    hints = Hints.from_points([{"x": 40, "y": 50, "color": "#2a8f2a", "size": 5}])
    automatic = colorizer.predict(prepared, options)
    guided = colorizer.predict(prepared, options, hints=hints)
    assert automatic.hint_pull is None and guided.hint_pull is not None
    assert torch.allclose(guided.ab, automatic.ab + guided.hint_pull)
    target = hints.ab()[0]
    # the model ignores hints, yet the cells around the hint now carry its colour
    h, w = guided.ab.shape[-2:]
    cy, cx = int(50 * h / 96), int(40 * w / 128)
    before = (automatic.ab[:, cy, cx + 2] - target).norm()
    after = (guided.ab[:, cy, cx + 2] - target).norm()
    assert float(after) < 0.5 * float(before)


def test_sequences_keep_the_pull_on_frames_whose_colour_is_carried() -> None:
    """Temporal consistency re-decodes each frame from a blended distribution; the hints' pull
    (here the only thing that moves colour: the model ignores hints) must survive that."""
    from chromatize.color import rgb_to_lab
    from chromatize.sequence import SequenceColorizer

    rng = np.random.default_rng(4)
    base = np.clip(0.5 + 0.15 * rng.standard_normal((96, 128)), 0, 1).astype(np.float32)
    frames = [base, np.roll(base, 2, axis=1)]
    colorizer = Colorizer(TinyHintModel(follow=False), device="cpu")
    options = ColorizeOptions(render_size=64)
    key = Hints.from_points([{"x": 60, "y": 48, "color": "#2e8b57", "size": 4}])
    want = key.ab()[0]

    def near_hint_error(results) -> float:
        out = results[1].image
        lab = rgb_to_lab(torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1))
        ring = lab[1:, 40:56, 52:72].reshape(2, -1).mean(1)  # around the moved hint
        return float((ring - want).norm())

    guided = SequenceColorizer(colorizer, options, temporal="on")
    plain = SequenceColorizer(colorizer, options, temporal="on")
    with_hints = list(guided.colorize_frames(iter(frames), hints={0: key}))
    without = list(plain.colorize_frames(iter(frames)))
    assert not with_hints[1].cut and with_hints[1].carried > 0
    assert near_hint_error(with_hints) < 0.6 * near_hint_error(without)
