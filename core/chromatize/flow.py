"""Optical flow between frames, warping along it, and where it can be trusted.

Flow is OpenCV's DIS (Kroeger et al., *Fast Optical Flow using Dense Inverse Search*, ECCV 2016)
on 8-bit lightness: it runs on the CPU with no weights (``opencv-python-headless``, the ``video``
extra). Conventions, as OpenCV's: ``flow(a, b)[y, x] = (dx, dy)`` means pixel (x, y) of ``a`` is
found at (x + dx, y + dy) in ``b``. To carry something from the previous frame into the current
one we need the flow *from the current frame to the previous one* (backward warping: every
current pixel looks up where it was).

A pixel's carried value is trusted where the forward and backward flows agree (the occlusion
test of Sundaram, Brox & Keutzer, ECCV 2010: ``|f + b(x + f)|^2 < 0.01 (|f|^2 + |b(x + f)|^2) +
0.5``), where it does not come from outside the previous frame, and where the warped lightness
matches (a photometric check). A frame where little can be trusted is a scene cut.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from chromatize.errors import ChromatizeError

#: DIS presets by name (OpenCV's constants).
PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}
#: Forward-backward test constants (Sundaram et al. 2010), in pixels of the flow grid.
FB_RELATIVE = 0.01
FB_ABSOLUTE = 0.5
#: A warped pixel whose lightness differs by more than this (L units) is not trusted.
PHOTOMETRIC_TOLERANCE = 10.0
#: A frame is a scene cut when less than this fraction of it can be trusted...
CUT_RELIABLE_FRACTION = 0.35
#: ... or when its mean lightness residual after warping is above this (L units).
CUT_RESIDUAL = 14.0


def _cv2():  # noqa: ANN202 - cv2 has no stubs
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ChromatizeError(
            "temporal colorization needs OpenCV; install chromatize with the video extra "
            "(pip install 'chromatize[video]')"
        ) from exc
    return cv2


def lightness_u8(lightness: torch.Tensor | np.ndarray) -> np.ndarray:
    """L in [0, 100] (H, W) as uint8 0..255, the input DIS takes."""
    array = lightness.numpy() if isinstance(lightness, torch.Tensor) else np.asarray(lightness)
    return np.clip(array * 2.55 + 0.5, 0, 255).astype(np.uint8)


class FlowEstimator:
    """DIS optical flow with one preset; keeps its OpenCV object (not thread-safe)."""

    def __init__(self, preset: str = "medium") -> None:
        if preset not in PRESETS:
            raise ChromatizeError(f"unknown flow preset {preset!r}; choose one of "
                                  f"{', '.join(PRESETS)}")
        self.preset = preset
        self._dis = _cv2().DISOpticalFlow_create(PRESETS[preset])

    def __call__(self, a: np.ndarray, b: np.ndarray) -> torch.Tensor:
        """Flow (2, H, W) float32 from uint8 image ``a`` to ``b`` (same shape)."""
        if a.shape != b.shape or a.dtype != np.uint8 or b.dtype != np.uint8 or a.ndim != 2:
            raise ValueError(f"flow needs two uint8 (H, W) images of one shape, got {a.shape} "
                             f"{a.dtype} and {b.shape} {b.dtype}")
        flow = self._dis.calc(np.ascontiguousarray(a), np.ascontiguousarray(b), None)
        return torch.from_numpy(flow).permute(2, 0, 1).contiguous()


@functools.lru_cache(maxsize=8)
def _pixel_grid(h: int, w: int) -> torch.Tensor:
    """(2, H, W) pixel coordinates x, y (cached per shape; do not modify)."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    return torch.stack((xs, ys))


def _grid(flow: torch.Tensor) -> torch.Tensor:
    """Sampling grid (1, H, W, 2) in [-1, 1] for ``grid_sample`` at x + flow(x)."""
    _, h, w = flow.shape
    at = _pixel_grid(h, w).to(flow.device) + flow
    scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=flow.device)
    return (at * scale[:, None, None] - 1.0).permute(1, 2, 0)[None]


def warp(values: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """``values`` (C, H, W) sampled at x + flow(x) (flow (2, H, W) on the same grid); outside
    the frame the nearest border value is used (mark those pixels unreliable separately)."""
    out = F.grid_sample(values[None].float(), _grid(flow.float()), mode=mode,
                        padding_mode="border", align_corners=True)
    return out[0]


def inside(flow: torch.Tensor) -> torch.Tensor:
    """(H, W) bool: x + flow(x) lies inside the frame."""
    _, h, w = flow.shape
    at = _pixel_grid(h, w).to(flow.device) + flow
    x, y = at[0], at[1]
    return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


def consistent(backward: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """(H, W) bool: forward-backward test for the current frame's pixels, ``backward`` being
    the flow current -> previous and ``forward`` previous -> current."""
    there = warp(forward, backward)
    total = backward + there
    limit = FB_RELATIVE * (backward.square().sum(0) + there.square().sum(0)) + FB_ABSOLUTE
    return total.square().sum(0) < limit


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``flow`` (2, H, W) on another grid of ``size`` (h, w), vectors scaled to it."""
    _, h, w = flow.shape
    if (h, w) == tuple(size):
        return flow
    out = F.interpolate(flow[None], size=size, mode="area" if size[0] < h else "bilinear")[0]
    return out * torch.tensor([size[1] / w, size[0] / h], dtype=out.dtype)[:, None, None]


@dataclass
class Motion:
    """How the current frame relates to the previous one, on the flow grid."""

    #: (2, H, W) flow from the current frame to the previous one
    backward: torch.Tensor
    #: (H, W) float in {0, 1}: where the previous frame's content can be carried over
    reliable: torch.Tensor
    #: fraction of the frame that is reliable
    reliable_fraction: float
    #: mean |L_current - L_previous warped| over the whole frame, L units
    residual: float

    @property
    def is_cut(self) -> bool:
        """Whether the current frame starts a new scene."""
        return self.reliable_fraction < CUT_RELIABLE_FRACTION or self.residual > CUT_RESIDUAL


def estimate_motion(previous: np.ndarray, current: np.ndarray,
                    estimator: FlowEstimator) -> Motion:
    """Flow, reliability and cut test between two uint8 lightness images of one shape."""
    backward = estimator(current, previous)
    forward = estimator(previous, current)
    prev_l = torch.from_numpy(previous).float()[None] / 2.55
    cur_l = torch.from_numpy(current).float()[None] / 2.55
    difference = (warp(prev_l, backward)[0] - cur_l[0]).abs()
    reliable = consistent(backward, forward) & inside(backward) & (
        difference < PHOTOMETRIC_TOLERANCE)
    return Motion(backward, reliable.float(), float(reliable.float().mean()),
                  float(difference.mean()))
