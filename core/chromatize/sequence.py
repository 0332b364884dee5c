"""Colorizing ordered frames (video, stacks) so that colour follows motion instead of flickering.

Frame by frame, the model's answer for the same surface changes a little whenever the camera or
the surface moves: a visible flicker. Following the design of *Image and Video Colorization*
pipelines (key frames whose colour is propagated along the motion, changes between frames
suppressed), :class:`SequenceColorizer` runs the public stages of
:class:`~chromatize.pipeline.Colorizer` on each frame and, between ``predict`` and ``finish``:

1. estimates optical flow between the previous and current frame on their lightness at the
   render shape (DIS, :mod:`chromatize.flow`), with a forward-backward / photometric check that
   says where the previous frame's content can be carried over;
2. warps the previous frame's *blended* 313-bin colour distribution (low resolution, 1/4 of the
   render) along the flow and mixes it with the current frame's own distribution, with weight
   ``carry`` where the flow is reliable and 0 where it is not (occlusions, new content): a
   recursive filter along motion trajectories;
3. decodes the mixture with the options' decoding and temperature, and finishes the frame at full
   resolution guided by its own lightness (so edges stay the current frame's);
4. starts afresh at scene cuts (little reliable flow or a large lightness residual).

Colour hints (the model contract's (3, h, w) encoding at the render shape) given for a frame
guide it and, warped along the flow, the following frames until a cut; models without hint inputs
refuse them (:class:`~chromatize.models.contract.HintsNotSupportedError`).

Only the previous frame's small state is kept (its 8-bit lightness at the render shape, its
distribution at 1/4 of it, its carried hints), so memory does not grow with the sequence:
frames are consumed from an iterator and results yielded one at a time.

``temporal="off"`` runs each frame exactly as :meth:`Colorizer.colorize` would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from chromatize import bins
from chromatize.errors import ChromatizeError
from chromatize.flow import FlowEstimator, Motion, estimate_motion, lightness_u8, resize_flow, warp
from chromatize.hints import Hints
from chromatize.models.contract import OUTPUT_BINS
from chromatize.options import ColorizeOptions
from chromatize.pipeline import Colorizer, Prediction, Prepared
from chromatize.progress import CancelCallback, Progress

__all__ = ["TEMPORAL_CHOICES", "FrameResult", "SequenceColorizer", "TemporalSettings",
           "colorize_sequence"]

Temporal = Literal["on", "off"]
TEMPORAL_CHOICES: tuple[str, ...] = ("on", "off")
#: Per-frame hints: a mapping frame index -> hints (:class:`~chromatize.hints.Hints` or a hint
#: tensor), or a function of the index.
FrameHints = Hints | torch.Tensor
HintSource = Mapping[int, FrameHints] | Callable[[int], FrameHints | None]


@dataclass(frozen=True)
class TemporalSettings:
    """How strongly colour is carried along motion."""

    #: weight of the carried distribution where the flow is reliable (0 = per frame)
    carry: float = 0.85
    #: DIS preset: "ultrafast", "fast" or "medium"
    flow_preset: str = "medium"

    def __post_init__(self) -> None:
        if not 0.0 <= self.carry < 1.0:
            raise ChromatizeError(f"carry must be in [0, 1), got {self.carry!r}")


@dataclass
class FrameResult:
    """One colorized frame and how it relates to the one before."""

    index: int
    image: np.ndarray
    #: True when this frame started afresh (first frame, scene cut, size change, temporal off)
    cut: bool
    #: fraction of the frame whose colour was carried from the previous one
    carried: float


@dataclass
class _State:
    """What is kept of the previous frame (small, fixed size)."""

    render: tuple[int, int]
    lightness: np.ndarray  # uint8 at the render shape
    probabilities: torch.Tensor  # (313, h/4, w/4), blended
    hints: torch.Tensor | None  # (3, h, w) carried hints, or None


def _render_lightness(prepared: Prepared) -> np.ndarray:
    """The frame's L at its render shape, 8-bit (what the flow sees)."""
    plane = prepared.lightness[None, None]
    h, w = prepared.render
    antialias = plane.shape[-2] > h or plane.shape[-1] > w
    small = F.interpolate(plane, size=(h, w), mode="bilinear", align_corners=False,
                          antialias=antialias)[0, 0]
    return lightness_u8(small)


def _as_hint_plane(hints: torch.Tensor, render: tuple[int, int]) -> torch.Tensor:
    t = torch.as_tensor(hints, dtype=torch.float32)
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if tuple(t.shape) != (3, *render):
        raise ChromatizeError(f"hints for a frame must have shape (3, {render[0]}, {render[1]}) "
                              f"(the render shape), got {tuple(t.shape)}")
    return t


def carry_hints(hints: torch.Tensor, motion: Motion) -> torch.Tensor:
    """Hints (3, h, w) of the previous frame moved along ``motion`` (flow on the same grid);
    hints landing where the flow is unreliable are dropped."""
    moved = warp(hints, motion.backward, mode="nearest")
    keep = (moved[2] > 0.5) & (motion.reliable > 0.5)
    return moved * keep[None].float()


def merge_hints(carried: torch.Tensor | None, given: torch.Tensor | None) -> torch.Tensor | None:
    """Given hints win where they are set; carried ones fill the rest."""
    if carried is None:
        return given
    if given is None:
        return carried
    own = given[2:3] > 0.5
    return torch.where(own, given, carried)


@contextmanager
def _single_threaded() -> Iterator[None]:
    """Run the block with one intra-op torch thread: the flow and blending ops are small, and
    on busy cores torch's per-op thread barriers made them about ten times slower."""
    saved = torch.get_num_threads()
    if saved != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if saved != 1:
            torch.set_num_threads(saved)


class SequenceColorizer:
    """Colorize the frames of one sequence in order, carrying colour along the motion.

    ``colorizer`` does the per-frame work; ``options`` are the settings of every frame
    (default: the colorizer's); ``temporal`` is ``"on"`` or ``"off"`` (each frame on its own).
    One instance holds one sequence's state: call :meth:`reset` before another sequence.
    """

    def __init__(self, colorizer: Colorizer, options: ColorizeOptions | None = None, *,
                 temporal: Temporal = "on", settings: TemporalSettings | None = None) -> None:
        if temporal not in TEMPORAL_CHOICES:
            raise ChromatizeError(f"unknown «temporal» {temporal!r}; choose on or off")
        if temporal == "on" and colorizer.output_kind != OUTPUT_BINS:
            raise ChromatizeError(
                f"the {colorizer.model_name} model predicts one colour per pixel, not a colour "
                "distribution, so it cannot carry colour along the motion; set «temporal» off "
                "or choose a model such as mobile")
        self.colorizer = colorizer
        self.options = colorizer.call_options(options)
        self.temporal = temporal
        self.settings = settings if settings is not None else TemporalSettings()
        self._flow = FlowEstimator(self.settings.flow_preset) if temporal == "on" else None
        self._state: _State | None = None
        self._index = 0

    def reset(self) -> None:
        """Forget the previous frame (the next frame starts afresh)."""
        self._state = None
        self._index = 0

    def process(self, image: np.ndarray, hints: Hints | torch.Tensor | None = None, *,
                mask: np.ndarray | None = None,
                cancel: CancelCallback | None = None) -> FrameResult:
        """Colorize the next frame. ``hints`` are this frame's: :class:`~chromatize.hints.Hints`
        in its pixel coordinates (then also obeyed exactly at their pixels, as for a photo) or
        the model contract's (3, h, w) tensor at its render shape; None for none. ``cancel()``
        is polled between the stages and inside ``finish`` (raises
        :class:`~chromatize.errors.Cancelled`; the sequence's state is then as before the
        frame)."""
        stop = Progress(None, cancel)
        stop.check()
        index, self._index = self._index, self._index + 1
        try:
            return self._process(index, image, hints, mask, stop, cancel)
        except BaseException:
            self._index = index
            raise

    def _process(self, index: int, image: np.ndarray, hints: Hints | torch.Tensor | None,
                 mask: np.ndarray | None, stop: Progress,
                 cancel: CancelCallback | None) -> FrameResult:
        opts = self.options
        exact = hints if isinstance(hints, Hints) else None
        if hints is not None:
            self.colorizer.refuse_hints_unless_accepted()
        prepared = self.colorizer.prepare(image, opts, mask=mask, cancel=cancel)
        stop.check()
        if exact is not None:
            exact.validate(prepared.layout, where=f"hints for frame {index}")
        tensor = exact.to_tensor(prepared) if exact is not None else hints
        given = None if tensor is None else _as_hint_plane(tensor, prepared.render)
        if self.temporal == "off":
            prediction = self.colorizer.predict(prepared, opts,
                                                hints=None if given is None else given[None])
            stop.check()
            out = self.colorizer.finish(prepared, prediction, opts, hints=exact, cancel=cancel)
            return FrameResult(index, out, True, 0.0)
        with _single_threaded():
            lightness = _render_lightness(prepared)
            motion = self._motion(prepared.render, lightness)
            carried = None
            if motion is not None and self._state is not None and self._state.hints is not None:
                carried = carry_hints(self._state.hints, motion)
            used = merge_hints(carried, given)
        prediction = self.colorizer.predict(prepared, opts,
                                            hints=None if used is None else used[None])
        with _single_threaded():
            blended, distribution, fraction = self._blend(prediction, motion)
        stop.check()
        out = self.colorizer.finish(prepared, blended, opts, hints=exact, cancel=cancel)
        self._state = _State(prepared.render, lightness, distribution, used)
        return FrameResult(index, out, motion is None, fraction)

    def _motion(self, render: tuple[int, int], lightness: np.ndarray) -> Motion | None:
        """Motion from the previous frame, or None where this frame starts afresh."""
        state = self._state
        if state is None or state.render != render or self._flow is None:
            return None
        motion = estimate_motion(state.lightness, lightness, self._flow)
        return None if motion.is_cut else motion

    def _blend(self, prediction: Prediction, motion: Motion | None
               ) -> tuple[Prediction, torch.Tensor, float]:
        """The current prediction mixed with the previous frame's distribution along
        ``motion``; returns it, its distribution and the carried fraction of the frame."""
        own = prediction.probabilities(1.0)
        if motion is None or self._state is None or self.settings.carry == 0.0:
            return prediction, own, 0.0
        size = tuple(own.shape[-2:])
        device = own.device
        flow = resize_flow(motion.backward, size).to(device)
        weight = F.interpolate(motion.reliable[None, None], size=size, mode="area")[0, 0]
        weight = (self.settings.carry * weight).to(device)
        moved = warp(self._state.probabilities.to(device), flow)
        mixed = torch.lerp(own, moved, weight[None])
        log_p = mixed.clamp_min(1e-12).log()
        opts = self.options
        ab = bins.decode(log_p[None], opts.decode, self.colorizer.temperature(opts),
                         log_prior=prediction.log_prior)[0]
        ab = bins.apply_saturation(ab, opts.saturation)
        if prediction.hint_pull is not None:
            ab = ab + prediction.hint_pull  # the hints still pull the blended colours
        scale = prediction.logit_scale
        fraction = float(weight.mean() / self.settings.carry)
        return (Prediction(log_p / scale, scale, ab, prediction.log_prior, prediction.hint_pull),
                mixed, fraction)

    def colorize_frames(self, frames: Iterable[np.ndarray], *, hints: HintSource | None = None,
                        progress: Callable[[int], None] | None = None,
                        cancel: CancelCallback | None = None) -> Iterator[FrameResult]:
        """Colorize ``frames`` (consumed one at a time) in order, yielding each result.

        ``hints`` maps a frame index to its hint tensor (or is a function of the index);
        ``progress(done)`` is called after each frame; ``cancel()`` is polled before each."""
        self.reset()
        tracker = Progress(None, cancel)
        for i, frame in enumerate(frames):
            tracker.check()
            yield self.process(frame, _hints_for(hints, i), cancel=cancel)
            if progress is not None:
                progress(i + 1)


def _hints_for(hints: HintSource | None, index: int) -> FrameHints | None:
    if hints is None:
        return None
    if callable(hints):
        return hints(index)
    return hints.get(index)


def colorize_sequence(frames: Iterable[np.ndarray], options: ColorizeOptions | None = None, *,
                      temporal: Temporal = "on", colorizer: Colorizer | None = None,
                      hints: HintSource | None = None) -> Iterator[np.ndarray]:
    """Colorized frames of ``frames`` in order (a generator: memory stays bounded).

    ``options`` choose the model and settings (default ``ColorizeOptions()``); pass
    ``colorizer`` to reuse a loaded one. This is the call front ends (napari stacks, the CLI)
    use for a sequence of planes."""
    options = options if options is not None else ColorizeOptions()
    colorizer = colorizer if colorizer is not None else Colorizer.from_options(options)
    runner = SequenceColorizer(colorizer, options, temporal=temporal)
    for result in runner.colorize_frames(frames, hints=hints):
        yield result.image
