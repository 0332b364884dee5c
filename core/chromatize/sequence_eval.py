"""Temporal metrics for colorized sequences, a generated test set with known camera motion, and
``evaluate_sequence`` (temporal on and off side by side).

Metrics, over consecutive pairs of *output* frames (pairs across a scene cut are left out):

- **warping error** (Lai et al., *Learning Blind Video Temporal Consistency*, ECCV 2018):
  ``E = sum_i M_i ||O_t(i) - warp(O_{t+1})(i)||^2 / sum_i M_i`` on sRGB in [0, 1], where the flow
  and the non-occlusion mask ``M`` (forward-backward test) are computed on the *input* frames
  (here with DIS, :mod:`chromatize.flow`, instead of the paper's FlowNet2), averaged over pairs.
  The input's own warping error (gray frames) is reported too: it is the floor any output has.
- **CDC**, colour distribution consistency (Liu et al., *Temporally Consistent Video
  Colorization with Deep Feature Propagation and Self-regularization Learning*, 2021): the
  Jensen-Shannon divergence (base 2) between the 256-bin histograms of each RGB channel of
  consecutive frames, averaged over channels and pairs.
- **PSNR** of each frame against the true colours, when the sequence was made from colour frames.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from chromatize.color import lightness_to_gray, rgb_to_lab
from chromatize.flow import FlowEstimator, estimate_motion, lightness_u8
from chromatize.flow import warp as warp_along
from chromatize.options import ColorizeOptions
from chromatize.pipeline import Colorizer
from chromatize.sequence import SequenceColorizer, TemporalSettings

#: The pairs a metric sees: (previous frame, current frame) as float (H, W, 3) in [0, 1].
Frames = Iterable[np.ndarray]


def as_float_rgb(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 sRGB in [0, 1] from uint8/uint16/float frames (alpha dropped)."""
    x = np.asarray(frame)
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=2)
    x = x[..., :3]
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if x.dtype == np.uint16:
        return x.astype(np.float32) / 65535.0
    return x.astype(np.float32)


def lightness_of(rgb: np.ndarray) -> torch.Tensor:
    """CIE L (H, W) of an sRGB float frame."""
    return rgb_to_lab(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1))[0]


def gray_of(rgb: np.ndarray) -> np.ndarray:
    """The frame's own L rendered as gray (H, W) float32, as evaluation makes its inputs."""
    return lightness_to_gray(lightness_of(rgb)).clamp(0, 1).numpy().astype(np.float32)


def warping_error(before: np.ndarray, after: np.ndarray, backward: torch.Tensor,
                  mask: torch.Tensor) -> float:
    """Lai et al.'s error of one pair: ``after`` warped onto ``before`` with ``backward`` (the
    flow before -> after), squared RGB difference summed over channels, mean over ``mask``."""
    moved = warp_along(torch.from_numpy(after).permute(2, 0, 1), backward)
    diff = (torch.from_numpy(before).permute(2, 0, 1) - moved).square().sum(0)
    total = float(mask.sum())
    return float((diff * mask).sum()) / total if total else math.nan


def _histograms(rgb: np.ndarray) -> np.ndarray:
    q = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.int64)
    h = np.stack([np.bincount(q[..., c].ravel(), minlength=256) for c in range(3)]).astype(float)
    return h / h.sum(axis=1, keepdims=True)


def cdc_pair(a: np.ndarray, b: np.ndarray) -> float:
    """Jensen-Shannon divergence (bits) of the RGB channel histograms, mean over channels."""
    p, q = _histograms(a), _histograms(b)
    m = 0.5 * (p + q)

    def kl(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(x > 0, x * np.log2(x / y), 0.0).sum(axis=1)

    return float(np.mean(0.5 * kl(p, m) + 0.5 * kl(q, m)))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


@dataclass
class ModeScores:
    """Running totals of one way of colorizing (temporal on, off, or the input itself)."""

    warp: list[float] = field(default_factory=list)
    cdc: list[float] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    seconds: float = 0.0
    frames: int = 0

    def summary(self) -> dict[str, float]:
        def mean(values: list[float]) -> float:
            finite = [v for v in values if math.isfinite(v)]
            return float(np.mean(finite)) if finite else math.nan

        return {"warping_error": mean(self.warp), "cdc": mean(self.cdc),
                "psnr": mean(self.psnr), "frames": float(self.frames),
                "fps": self.frames / self.seconds if self.seconds else math.nan}


@dataclass
class SequenceReport:
    """Scores of temporal on and off (and the gray input) over one sequence."""

    source: str
    frames: int
    pairs: int
    cuts: list[int]
    modes: dict[str, dict[str, float]]

    def format_table(self) -> str:
        lines = [f"{self.source}: {self.frames} frames, {self.pairs} pairs scored, "
                 f"cuts at {self.cuts or 'none'}",
                 f"{'metric':<24}" + "".join(f"{m:>12}" for m in self.modes)]
        for key, label, fmt in (("warping_error", "warping error (x1e3)", "{:.3f}"),
                                ("cdc", "CDC (x1e3)", "{:.3f}"), ("psnr", "PSNR (dB)", "{:.2f}"),
                                ("fps", "frames per second", "{:.1f}")):
            scale = 1e3 if key in ("warping_error", "cdc") else 1.0
            cells = [fmt.format(v[key] * scale) if math.isfinite(v[key]) else "-"
                     for v in self.modes.values()]
            lines.append(f"{label:<24}" + "".join(f"{c:>12}" for c in cells))
        return "\n".join(lines)


@dataclass
class _Previous:
    gray_u8: np.ndarray
    outputs: dict[str, np.ndarray]


def _score_pair(prev: _Previous, gray_u8: np.ndarray, outputs: dict[str, np.ndarray],
                scores: dict[str, ModeScores], flow: FlowEstimator) -> bool:
    """Add one consecutive pair to every mode; False (nothing added) across a cut."""
    motion = estimate_motion(gray_u8, prev.gray_u8, flow)  # flow: previous -> current frame
    if motion.is_cut:
        return False
    for name, out in outputs.items():
        scores[name].warp.append(warping_error(prev.outputs[name], out, motion.backward,
                                               motion.reliable))
        scores[name].cdc.append(cdc_pair(prev.outputs[name], out))
    return True


def evaluate_sequence(frames: Frames, options: ColorizeOptions | None = None, *,
                      source: str = "sequence", colorizer: Colorizer | None = None,
                      truth: bool = True, settings: TemporalSettings | None = None,
                      progress: Callable[[int], None] | None = None) -> SequenceReport:
    """Colorize ``frames`` (colour frames if ``truth``, their L as input) with temporal on and
    off in one pass, scoring each pair as it goes (memory bounded)."""
    options = options if options is not None else ColorizeOptions()
    colorizer = colorizer if colorizer is not None else Colorizer.from_options(options)
    runners = {m: SequenceColorizer(colorizer, options, temporal=m, settings=settings)
               for m in ("on", "off")}
    scores = {name: ModeScores() for name in ("on", "off", "input")}
    flow = FlowEstimator("medium")
    prev: _Previous | None = None
    count, pairs, cuts = 0, 0, []
    for count, frame in enumerate(frames, 1):
        rgb = as_float_rgb(frame)
        gray = gray_of(rgb) if truth else rgb.mean(axis=2).astype(np.float32)
        outputs = {"input": np.repeat(gray[..., None], 3, axis=2)}
        for name, runner in runners.items():
            started = time.perf_counter()
            outputs[name] = as_float_rgb(runner.process(gray).image)
            scores[name].seconds += time.perf_counter() - started
            scores[name].frames += 1
            if truth:
                scores[name].psnr.append(psnr(outputs[name], rgb))
        gray_u8 = lightness_u8(lightness_of(outputs["input"]))
        if prev is not None:
            scored = _score_pair(prev, gray_u8, outputs, scores, flow)
            pairs += scored
            if not scored:
                cuts.append(count - 1)
        prev = _Previous(gray_u8, outputs)
        if progress is not None:
            progress(count)
    return SequenceReport(source, count, pairs, cuts, {n: s.summary() for n, s in scores.items()})


# --------------------------------------------------------------------------------------------
# A generated test set: camera motion over still photos, with a cut
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CameraPath:
    """A camera move over one photo: per-frame pan (pixels of the output), zoom and rotation."""

    pan: tuple[float, float] = (3.0, 1.0)
    zoom: float = 0.0  # total relative zoom over the shot
    rotate: float = 0.0  # total rotation over the shot, degrees


def _fit(photo: np.ndarray, size: tuple[int, int], margin: float) -> np.ndarray:
    import cv2

    h, w = size
    scale = max(h * margin / photo.shape[0], w * margin / photo.shape[1])
    dsize = (max(w, round(photo.shape[1] * scale)), max(h, round(photo.shape[0] * scale)))
    return cv2.resize(photo, dsize, interpolation=cv2.INTER_AREA if scale < 1 else
                      cv2.INTER_CUBIC)


def camera_shot(photo: np.ndarray, frames: int, path: CameraPath,
                size: tuple[int, int] = (360, 640)) -> Iterator[np.ndarray]:
    """``frames`` views (H, W, 3) uint8 of ``photo`` (uint8 RGB) along ``path``; the true motion
    between views is the affine map the path describes."""
    import cv2

    h, w = size
    base = _fit(photo, size, 1.35)
    centre = np.array([base.shape[1] / 2.0, base.shape[0] / 2.0])
    start = centre - np.array(path.pan) * (frames - 1) / 2.0
    for i in range(frames):
        t = i / max(frames - 1, 1)
        scale = 1.0 + path.zoom * t
        matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), path.rotate * t, scale)
        at = start + np.array(path.pan) * i
        matrix[:, 2] += at - np.array([w / 2.0, h / 2.0])
        yield cv2.warpAffine(base, matrix, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REFLECT)


#: The camera moves of the generated clips: a pan, a pan with zoom, a pan with a small rotation.
SHOTS = (CameraPath(pan=(4.0, 1.0)), CameraPath(pan=(-2.0, 1.5), zoom=0.12),
         CameraPath(pan=(2.0, -1.0), rotate=3.0))


def camera_clip(first: np.ndarray, second: np.ndarray, frames: int = 24, *,
                shots: tuple[CameraPath, CameraPath] = (SHOTS[1], SHOTS[2]),
                size: tuple[int, int] = (360, 640)) -> Iterator[np.ndarray]:
    """Two shots of ``frames // 2`` frames each (over two photos), so a cut in the middle."""
    half = frames // 2
    yield from camera_shot(first, half, shots[0], size)
    yield from camera_shot(second, frames - half, shots[1], size)
