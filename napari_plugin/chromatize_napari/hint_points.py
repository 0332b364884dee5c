"""A napari Points layer as colour hints: the hints adapter (Qt-free, no widgets).

A hint point's face colour is its hint colour, its size the side of the square patch in the
input layer's data pixels, and its position goes through the Points layer's data-to-world and
the input layer's world-to-data mapping (so a Points layer with another scale or translate still
lands where it is drawn). For a stack, the point's plane coordinates (those before Y, X) say
which plane it guides; a 2D Points layer over a stack guides every plane.

:func:`read_hint_points` runs on the GUI thread and copies what a worker needs
(:class:`HintPoints`); :meth:`HintPoints.for_plane` makes the
:class:`chromatize.hints.Hints` of one plane in any thread. Problems (a point outside the image
or the stack) raise :class:`chromatize.hints.HintError` worded for the widget.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from chromatize.hints import MAX_HINT_SIZE, HintError, Hints

#: Face colour of the points of a new hints layer (sea green: a colour a photo rarely has by
#: chance, so a forgotten default shows; pick the real colour from the suggestions).
DEFAULT_HINT_COLOUR = "#2e8b57"
#: Label of the widget's hints field (messages name it).
HINTS_LABEL = "Hints"


@dataclass(frozen=True)
class HintPoints:
    """Hint points of one Points layer, in the input layer's data coordinates (one row each)."""

    layer_name: str
    #: (N, k) plane index of each point (k = number of axes before Y, X; 0 for a 2D input)
    planes: np.ndarray
    #: (N,) whether the point has no plane coordinate (a 2D Points layer): it guides all planes
    every_plane: np.ndarray
    #: (N,) pixel column (x) and row (y) of each point, rounded to the nearest pixel
    x: np.ndarray
    y: np.ndarray
    #: (N, 3) sRGB in [0, 1]
    rgb: np.ndarray
    #: (N,) patch side in the input's data pixels (>= 1)
    size: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def on_plane(self, index: tuple[int, ...]) -> np.ndarray:
        """Which points guide the plane at ``index`` (``()`` for a 2D input): bool (N,)."""
        if not len(self):
            return np.zeros(0, bool)
        same = np.all(self.planes == np.asarray(index, np.int64).reshape(1, -1), axis=1) \
            if self.planes.shape[1] else np.ones(len(self), bool)
        return same | self.every_plane

    def for_plane(self, index: tuple[int, ...]) -> Hints | None:
        """The hints of the plane at ``index``, None when no point guides it."""
        which = np.nonzero(self.on_plane(index))[0]
        if not len(which):
            return None
        return Hints(self.x[which], self.y[which], self.rgb[which], self.size[which])

    def hinted_planes(self, stack_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
        """The plane indices some point guides, in C order."""
        if not len(self):
            return []
        if self.every_plane.any() or not stack_shape:
            return list(np.ndindex(*stack_shape))
        return sorted({tuple(int(v) for v in row) for row in self.planes})

    def signature(self, index: tuple[int, ...]) -> str:
        """A digest of the hints of plane ``index``: equal digests, equal hints."""
        which = np.nonzero(self.on_plane(index))[0]
        parts = (self.x[which], self.y[which], np.round(self.rgb[which] * 255).astype(np.int64),
                 self.size[which])
        digest = hashlib.sha1(usedforsecurity=False)
        for part in parts:
            digest.update(np.ascontiguousarray(part, np.int64).tobytes())
        return digest.hexdigest()

    def check(self, plane_shape: tuple[int, int], stack_shape: tuple[int, ...],
              image_name: str) -> HintPoints:
        """Raise :class:`HintError` (in the widget's words) unless every point lies on the input
        layer: inside its planes' height x width and, for a stack, on one of its planes."""
        height, width = plane_shape
        for i in range(len(self)):
            where = (f"hint point {i + 1} of '{self.layer_name}'")
            if not (0 <= self.x[i] < width and 0 <= self.y[i] < height):
                raise HintError(
                    f"{where} (x={self.x[i]}, y={self.y[i]}) lies outside input layer "
                    f"'{image_name}' ({width}x{height} pixels); move or delete it")
            if not self.every_plane[i] and stack_shape:
                plane = tuple(int(v) for v in self.planes[i])
                if any(not 0 <= p < n for p, n in zip(plane, stack_shape, strict=True)):
                    raise HintError(
                        f"{where} is on plane {plane}, but input layer '{image_name}' has planes "
                        f"{tuple(n - 1 for n in stack_shape)} at most; move or delete it")
        return self


def image_ndim(image: Any) -> int:
    """The number of data axes of an Image layer without the colour channel."""
    return int(image.ndim)


def read_hint_points(points: Any, image: Any) -> HintPoints:
    """The points of napari Points layer ``points`` in the data coordinates of Image layer
    ``image``. Call on the GUI thread (reads layer state); the layers are only read."""
    n, ndim = len(points.data), image_ndim(image)
    data = np.asarray(points.data, dtype=float).reshape(n, int(points.ndim))
    planes_ndim = max(ndim - 2, 0)
    coords = np.zeros((n, ndim))
    every = np.zeros(n, bool)
    origin = np.asarray(image.data_to_world(np.zeros(ndim)), dtype=float)
    for i, point in enumerate(data):
        world = np.asarray(points.data_to_world(point), dtype=float)
        if len(world) < ndim:  # e.g. a 2D Points layer over a stack: every plane
            world = np.concatenate([origin[: ndim - len(world)], world])
            every[i] = True
        coords[i] = np.asarray(image.world_to_data(world[-ndim:]), dtype=float)
    colours = np.asarray(points.face_color, dtype=np.float32).reshape(n, 4)[:, :3]
    sizes = np.asarray(points.size, dtype=float).reshape(-1) * _size_factor(points, image)
    return HintPoints(
        layer_name=str(points.name),
        planes=np.rint(coords[:, :planes_ndim]).astype(np.int64),
        every_plane=every if planes_ndim else np.zeros(n, bool),
        x=np.rint(coords[:, -1]).astype(np.int64),
        y=np.rint(coords[:, -2]).astype(np.int64),
        rgb=np.clip(colours, 0.0, 1.0),
        size=np.clip(np.rint(sizes), 1, MAX_HINT_SIZE).astype(np.int64),
    )


def _size_factor(points: Any, image: Any) -> float:
    """Input pixels per Points data unit (1 for a hints layer made over the input)."""
    mine = np.abs(np.asarray(points.scale, dtype=float)[-2:])
    theirs = np.abs(np.asarray(image.scale, dtype=float)[-2:])
    return float(np.mean(mine / np.where(theirs > 0, theirs, 1.0)))


def default_point_size(plane_shape: tuple[int, int]) -> int:
    """Size of a new hint point: about 1/60 of the image's short side, odd, 3 to 31 pixels
    (visible without covering much)."""
    side = max(3, min(31, round(min(plane_shape) / 60)))
    return side if side % 2 else side + 1


def hints_layer_kwargs(image: Any, name: str) -> dict[str, Any]:
    """Keyword arguments for a Points layer of hints placed exactly over ``image``."""
    ndim = image_ndim(image)
    spatial = image.data.shape[-3:-1] if image.rgb else image.data.shape[-2:]
    if image.multiscale:
        spatial = image.data[0].shape[-3:-1] if image.rgb else image.data[0].shape[-2:]
    return {
        "ndim": ndim,
        "name": name,
        "face_color": DEFAULT_HINT_COLOUR,
        "border_color": "white",
        "border_width": 0.1,
        "size": default_point_size((int(spatial[0]), int(spatial[1]))),
        "symbol": "square",
        "scale": np.array(image.scale, dtype=float),
        "translate": np.array(image.translate, dtype=float),
        "rotate": np.array(image.rotate, dtype=float),
        "shear": np.array(image.shear, dtype=float),
        "affine": np.array(image.affine.affine_matrix, dtype=float),
        "metadata": {"chromatize_hints_for": str(image.name)},
    }
