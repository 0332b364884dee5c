"""Temporal colorization: DIS flow and its reliability, cuts, temporal on/off, hint warping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

cv2 = pytest.importorskip("cv2", minversion="4.8")

from chromatize.flow import FlowEstimator, estimate_motion, lightness_u8  # noqa: E402
from chromatize.models.contract import HINT_AB_SCALE  # noqa: E402
from chromatize.options import ColorizeOptions  # noqa: E402
from chromatize.pipeline import Colorizer  # noqa: E402
from chromatize.sequence import SequenceColorizer, colorize_sequence  # noqa: E402
from chromatize.sequence_eval import (  # noqa: E402
    as_float_rgb,
    camera_clip,
    evaluate_sequence,
    gray_of,
)


def _texture(h: int = 120, w: int = 200, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = (rng.random((h, w)) * 255).astype(np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


def _shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    return np.roll(np.roll(image, dy, axis=0), dx, axis=1)


def test_flow_recovers_a_known_shift_and_trusts_it() -> None:
    before = _texture()
    after = _shifted(before, 3, 1)  # content moves right 3, down 1
    motion = estimate_motion(before, after, FlowEstimator("medium"))
    inner = motion.backward[:, 10:-10, 10:-10]  # current -> previous: (-3, -1)
    assert inner[0].median().item() == pytest.approx(-3.0, abs=0.2)
    assert inner[1].median().item() == pytest.approx(-1.0, abs=0.2)
    assert motion.reliable_fraction > 0.8 and not motion.is_cut


def test_unrelated_frames_are_a_cut() -> None:
    motion = estimate_motion(_texture(seed=1), _texture(seed=2), FlowEstimator("medium"))
    assert motion.is_cut


def _photos() -> tuple[np.ndarray, np.ndarray]:
    data = pytest.importorskip("skimage.data")
    return data.chelsea(), data.coffee()


@pytest.fixture(scope="module")
def mobile() -> Colorizer:
    return Colorizer.from_options(ColorizeOptions(device="cpu", engine="torch"))


def _gray_clip(frames: int = 8, size: tuple[int, int] = (144, 256)) -> list[np.ndarray]:
    first, second = _photos()
    return [gray_of(as_float_rgb(f)) for f in camera_clip(first, second, frames, size=size)]


def test_temporal_off_is_exactly_per_frame_colorize(mobile: Colorizer) -> None:
    frames = _gray_clip(4)
    outputs = list(colorize_sequence(iter(frames), mobile.options, temporal="off",
                                     colorizer=mobile))
    for frame, out in zip(frames, outputs, strict=True):
        np.testing.assert_array_equal(out, mobile.colorize(frame))


def test_temporal_on_starts_afresh_at_the_cut(mobile: Colorizer) -> None:
    frames = _gray_clip(8)
    runner = SequenceColorizer(mobile, temporal="on")
    results = list(runner.colorize_frames(iter(frames)))
    assert [r.cut for r in results] == [True, False, False, False, True, False, False, False]
    assert all(r.carried > 0.5 for r in results if not r.cut)
    # no colour from the first shot reaches the second: the cut frame is the per-frame result
    np.testing.assert_array_equal(results[4].image, mobile.colorize(frames[4]))


def test_frames_are_consumed_one_at_a_time(mobile: Colorizer) -> None:
    frames = _gray_clip(4)
    pulled: list[int] = []

    def source():
        for i, frame in enumerate(frames):
            pulled.append(i)
            yield frame

    for n, _ in enumerate(colorize_sequence(source(), colorizer=mobile), 1):
        assert len(pulled) == n  # never reads ahead: memory does not grow with the sequence


@pytest.mark.slow
def test_temporal_on_halves_the_warping_error(mobile: Colorizer) -> None:
    first, second = _photos()
    report = evaluate_sequence(camera_clip(first, second, 10, size=(144, 256)), mobile.options,
                               colorizer=mobile)
    on, off = report.modes["on"], report.modes["off"]
    assert report.cuts == [5] and report.pairs == 8
    assert on["warping_error"] <= 0.5 * off["warping_error"]
    assert on["cdc"] < off["cdc"]
    assert on["psnr"] >= off["psnr"] - 0.5


class HintEcho(nn.Module):
    """Accepts hints and records them; its colour is the hint's where there is one."""

    logit_scale = 1.0
    default_input_size = 64
    default_temperature = 0.38
    stride = 4
    accepts_hints = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor | None] = []
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, l: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:  # noqa: E741
        self.seen.append(None if hints is None else hints.clone())
        n, _, h, w = l.shape
        logits = torch.zeros(n, 313, h // 4, w // 4)
        if hints is not None:
            mask = torch.nn.functional.max_pool2d(hints[:, 2:3], 4)
            logits[:, 0:1] += 20.0 * mask
        return logits


def _hint_at(y: int, x: int, size: int = 64) -> torch.Tensor:
    hints = torch.zeros(3, size, size)
    hints[0, y, x], hints[1, y, x], hints[2, y, x] = 40 / HINT_AB_SCALE, -20 / HINT_AB_SCALE, 1
    return hints


def test_hints_follow_the_motion_until_a_cut() -> None:
    model = HintEcho()
    colorizer = Colorizer(model, device="cpu")
    base = _texture(64, 64, seed=3)
    frames = [_shifted(base, 2 * i, 0) for i in range(3)] + [_texture(64, 64, seed=9)]
    runner = SequenceColorizer(colorizer, ColorizeOptions(render_size=64), temporal="on")
    results = list(runner.colorize_frames(iter(frames), hints={0: _hint_at(30, 20)}))
    assert [r.cut for r in results] == [True, False, False, True]
    for i, seen in enumerate(model.seen[:3]):  # the hint moves 2 pixels right per frame
        assert seen is not None
        ys, xs = torch.nonzero(seen[0, 2], as_tuple=True)
        assert (ys.tolist(), xs.tolist()) == ([30], [20 + 2 * i])
        assert seen[0, :2, 30, 20 + 2 * i].tolist() == pytest.approx(
            [40 / HINT_AB_SCALE, -20 / HINT_AB_SCALE])
    assert model.seen[3] is None  # dropped at the cut


def test_key_frame_hints_in_image_pixels_are_obeyed_and_carried() -> None:
    """chromatize Hints on a key frame (image pixel coordinates, at twice the render size) are
    written exactly at their pixels with the frame's lightness, and reach the next frame's model
    input carried along the motion."""
    from chromatize.color import rgb_to_lab
    from chromatize.hints import Hints

    model = HintEcho()
    colorizer = Colorizer(model, device="cpu")
    base = _texture(128, 128, seed=4)
    frames = [_shifted(base, 4 * i, 0) for i in range(2)]
    runner = SequenceColorizer(colorizer, ColorizeOptions(render_size=64), temporal="on")
    key = Hints.from_points([{"x": 40, "y": 60, "color": "#2e8b57", "size": 4}])
    first = runner.process(frames[0], key)
    second = runner.process(frames[1])
    assert first.image.dtype == np.uint8  # the caller's dtype
    lab = rgb_to_lab(torch.from_numpy(first.image.astype(np.float32) / 255).permute(2, 0, 1))
    want = key.ab()[0]
    assert torch.allclose(lab[1:, 58:62, 38:42].mean((1, 2)), want, atol=2.0)
    gray = torch.from_numpy(frames[0].astype(np.float32) / 255)[None].expand(3, -1, -1)
    assert torch.allclose(lab[0, 58:62, 38:42], rgb_to_lab(gray)[0, 58:62, 38:42], atol=1.0)
    carried = model.seen[1]
    assert carried is not None and carried[0, 2].sum() > 0, "the hint reached the next frame"
    assert not second.cut
    with pytest.raises(Exception, match="outside"):
        runner.process(frames[0], Hints.from_points([{"x": 500, "y": 5, "color": "#ff0000"}]))


def test_a_frame_can_be_cancelled_mid_way_and_the_sequence_goes_on() -> None:
    """cancel() is polled between a frame's stages: a cancelled frame raises Cancelled, leaves
    the sequence as it was (same index, same previous frame), and the next call goes on."""
    from chromatize.errors import Cancelled

    colorizer = Colorizer(HintEcho(), device="cpu")
    base = _texture(64, 64, seed=5)
    runner = SequenceColorizer(colorizer, ColorizeOptions(render_size=64), temporal="on")
    first = runner.process(base)
    polls = iter([False, False, True])
    with pytest.raises(Cancelled):
        runner.process(_shifted(base, 2, 0), cancel=lambda: next(polls, True))
    again = runner.process(_shifted(base, 2, 0))
    assert (first.index, again.index) == (0, 1) and not again.cut, "state kept over the cancel"


def test_hints_of_the_wrong_shape_are_refused() -> None:
    from chromatize.errors import ChromatizeError

    colorizer = Colorizer(HintEcho(), device="cpu")
    runner = SequenceColorizer(colorizer, ColorizeOptions(render_size=64))
    with pytest.raises(ChromatizeError, match=r"shape \(3, 64, 64\)"):
        runner.process(_texture(64, 64), hints=torch.zeros(3, 32, 32))


def test_lightness_u8_scales_l_to_bytes() -> None:
    assert lightness_u8(np.array([[0.0, 50.0, 100.0]])).tolist() == [[0, 127, 255]]
