"""Colour hints: "this pixel is this colour", given by the user, obeyed by the colorization.

:class:`Hints` holds points (square patches ``size`` pixels wide centred on a pixel) with an sRGB
colour, in **image pixel coordinates** (x to the right, y down, (0, 0) the top-left pixel). Make
them from a list of points (:meth:`Hints.from_points`), from an RGBA "hint image" of the image's
size where alpha > 0 marks a hint pixel with that pixel's colour (:meth:`Hints.from_image`), or
from JSON ``[{"x": 120, "y": 45, "color": "#2e8b57", "size": 5}, ...]`` (:meth:`Hints.from_json`).

Hints enter the pipeline twice (:class:`chromatize.pipeline.Colorizer`):

- :meth:`Hints.to_tensor` encodes them for the model at its input (render) resolution, as the
  model contract says (:mod:`chromatize.models.contract`): hint ab / 110 and a 0/1 mask, every
  hint covering at least one render pixel (several hints on one render pixel are averaged);
- :meth:`Hints.full_resolution` lists the image pixels the hints cover and their ab, which
  ``finish`` writes at full resolution with the image's own lightness, so the output carries the
  hint colour at its pixels even where the model follows hints only approximately.

Files (the command line's ``--hints``) are in the coordinates of the input **as stored**, before
any EXIF orientation; :meth:`Hints.oriented` turns them upright with the same orientation the
image reader applies (:func:`stored_orientation`).

:func:`suggest_colours` lists, for one pixel, the model's most probable distinct colours there
(the 313-bin distribution merged into a few swatches), for a palette the user picks from.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chromatize import bins, color
from chromatize.errors import ChromatizeError
from chromatize.models.contract import HINT_AB_SCALE, HINT_CHANNELS, HintsNotSupportedError

__all__ = [
    "DEFAULT_HINT_SIZE", "MAX_HINT_SIZE", "ColourSuggestion", "HintError", "Hints",
    "frame_hint_files", "load_frame_hints", "load_hints", "parse_colour", "refuse_hints",
    "sample_hints", "stored_orientation", "suggest_colours",
]

#: Side of a hint patch in pixels when none is given.
DEFAULT_HINT_SIZE = 1
#: Largest patch side accepted.
MAX_HINT_SIZE = 1024
#: Swatches closer than this in ab are merged into one suggestion.
SUGGESTION_MERGE_DISTANCE = 15.0

_HEX = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


class HintError(ChromatizeError):
    """Colour hints that cannot be used (unreadable, wrong size, out of bounds, bad colour)."""


def refuse_hints(model_name: str) -> None:
    """Raise :class:`~chromatize.models.contract.HintsNotSupportedError` for a model that has no
    hint inputs (front ends grey out their hint controls for such models instead)."""
    raise HintsNotSupportedError(
        f"the {model_name} model does not accept colour hints; colorize without hints, or use a "
        "model that accepts them (mobile does)"
    )


def parse_colour(value: object, where: str = "hint") -> tuple[float, float, float]:
    """An sRGB colour in [0, 1] from ``"#rrggbb"``/``"#rgb"`` or three numbers in [0, 1]."""
    if isinstance(value, str):
        match = _HEX.match(value.strip())
        if match is None:
            raise HintError(f"{where}: colour {value!r} is not a hex colour like '#2e8b57'")
        digits = match.group(1)
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        return tuple(int(digits[i:i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]
    try:
        values = [float(v) for v in value]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise HintError(f"{where}: colour {value!r} is neither a hex string like '#2e8b57' nor "
                        "three numbers in [0, 1]") from None
    if len(values) != 3 or not all(np.isfinite(values)) or min(values) < 0 or max(values) > 1:
        raise HintError(f"{where}: colour {value!r} must be three sRGB values in [0, 1] "
                        "(or a hex string like '#2e8b57')")
    return values[0], values[1], values[2]


def _hex(rgb: Sequence[float]) -> str:
    return "#" + "".join(f"{int(round(min(1.0, max(0.0, float(c))) * 255)):02x}" for c in rgb)


def _integer(value: object, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise HintError(f"{where}: {name} must be a whole number of pixels, got {value!r}")
    if not np.isfinite(value) or float(value) != int(value):
        raise HintError(f"{where}: {name} must be a whole number of pixels, got {value!r}")
    return int(value)


@dataclass(frozen=True, eq=False)
class Hints:
    """Colour hints for one image: ``len(hints)`` patches, arrays of one entry per hint.

    ``x``, ``y``: the patch centre's pixel (int64); ``rgb``: (N, 3) float32 sRGB in [0, 1];
    ``size``: patch side in pixels (int64, >= 1; a patch covers ``size`` pixels from
    ``x - size // 2``). ``image_size`` is the (width, height) the hints were made for when known
    (a hint image's size): :meth:`validate` checks it. Later hints win where patches overlap.
    """

    x: np.ndarray
    y: np.ndarray
    rgb: np.ndarray
    size: np.ndarray
    image_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for name in ("x", "y", "size"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), np.int64).reshape(-1))
        object.__setattr__(self, "rgb", np.asarray(self.rgb, np.float32).reshape(-1, 3))
        n = len(self.x)
        if not (len(self.y) == len(self.size) == len(self.rgb) == n):
            raise HintError("hints: x, y, rgb and size must have one entry per hint")

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        return f"Hints({len(self)} hints, image_size={self.image_size})"

    # -------------------------------------------------------------------- making them

    @classmethod
    def empty(cls) -> Hints:
        return cls(np.zeros(0), np.zeros(0), np.zeros((0, 3)), np.zeros(0))

    @classmethod
    def from_points(cls, points: Iterable[Mapping[str, Any] | Sequence[Any]],
                    *, size: int = DEFAULT_HINT_SIZE, where: str = "hints") -> Hints:
        """Hints from points: mappings ``{"x", "y", "color" (or "colour"), "size"?}`` or tuples
        ``(x, y, colour[, size])``; a colour is ``"#rrggbb"`` or three sRGB numbers in [0, 1]."""
        xs, ys, rgbs, sizes = [], [], [], []
        for i, point in enumerate(points):
            at = f"{where}: hint {i + 1}"
            if isinstance(point, Mapping):
                unknown = sorted(set(point) - {"x", "y", "color", "colour", "size"})
                if unknown:
                    raise HintError(f"{at}: unknown key {unknown[0]!r} (expected x, y, color, "
                                    "size)")
                missing = [k for k in ("x", "y") if k not in point]
                if missing or ("color" not in point and "colour" not in point):
                    raise HintError(f"{at}: needs x, y and color, e.g. "
                                    '{"x": 120, "y": 45, "color": "#2e8b57", "size": 5}')
                x, y = point["x"], point["y"]
                colour = point.get("color", point.get("colour"))
                side = point.get("size", size)
            else:
                try:
                    x, y, colour, *rest = point
                except (TypeError, ValueError):
                    raise HintError(f"{at}: expected (x, y, colour[, size]), got {point!r}"
                                    ) from None
                if len(rest) > 1:
                    raise HintError(f"{at}: expected (x, y, colour[, size]), got {point!r}")
                side = rest[0] if rest else size
            xs.append(_integer(x, "x", at))
            ys.append(_integer(y, "y", at))
            sizes.append(_integer(side, "size", at))
            if not 1 <= sizes[-1] <= MAX_HINT_SIZE:
                raise HintError(f"{at}: size must be between 1 and {MAX_HINT_SIZE} pixels, "
                                f"got {sizes[-1]}")
            rgbs.append(parse_colour(colour, at))
        if not xs:
            return cls.empty()
        return cls(np.array(xs), np.array(ys), np.array(rgbs), np.array(sizes))

    @classmethod
    def from_json(cls, source: str | os.PathLike[str], where: str | None = None) -> Hints:
        """Hints from a JSON file or text: a list of ``{"x", "y", "color", "size"?}`` objects
        (or ``{"hints": [...]}``)."""
        text = None
        if isinstance(source, str) and source.lstrip().startswith(("[", "{")):
            text, name = source, where or "hints"
        else:
            path = Path(source)
            name = where or str(path)
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise HintError(f"{name}: cannot read the hints file "
                                f"({getattr(exc, 'strerror', None) or exc})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HintError(f"{name}: not valid JSON ({exc.msg} at line {exc.lineno}); expected "
                            '[{"x": 120, "y": 45, "color": "#2e8b57", "size": 5}, ...]') from None
        if isinstance(data, dict) and "hints" in data:
            data = data["hints"]
        if not isinstance(data, list):
            raise HintError(f"{name}: expected a JSON list of hints, e.g. "
                            '[{"x": 120, "y": 45, "color": "#2e8b57", "size": 5}]')
        return cls.from_points(data, where=name)

    @classmethod
    def from_image(cls, rgba: np.ndarray, where: str = "hint image") -> Hints:
        """Hints from a hint image (H, W, 4) RGBA or (H, W, 2) gray+alpha (uint8, uint16 or
        float in [0, 1]): every pixel with alpha > 0 is a one-pixel hint of its colour."""
        array = np.asarray(rgba)
        if array.ndim != 3 or array.shape[2] not in (2, 4):
            raise HintError(f"{where}: a hint image needs an alpha channel (RGBA): alpha > 0 "
                            f"marks hint pixels; got an array of shape {array.shape}")
        if array.dtype == np.uint8 or array.dtype == np.uint16:
            scale = float(np.iinfo(array.dtype).max)
        elif array.dtype.kind == "f":
            scale = 1.0
            if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
                raise HintError(f"{where}: float values must lie in [0, 1]")
        else:
            raise HintError(f"{where}: dtype {array.dtype} is not supported")
        ys, xs = np.nonzero(array[..., -1] > 0)
        colours = array[ys, xs, :-1].astype(np.float32) / scale
        if colours.shape[1] == 1:
            colours = np.repeat(colours, 3, axis=1)
        height, width = array.shape[:2]
        return cls(xs, ys, colours, np.ones(len(xs)), image_size=(width, height))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Hints:
        """Hints from a ``.json`` file or a hint image file (RGBA PNG, ...)."""
        return load_hints(path)

    # -------------------------------------------------------------------- checking, orienting

    def validate(self, layout: Any, where: str = "hints") -> Hints:
        """Raise :class:`HintError` unless every hint lies inside the image ``layout`` (an
        :class:`~chromatize.imagearray.ImageLayout` or anything with ``width`` and ``height``)
        and a hint image has the image's size; returns ``self``."""
        width, height = int(layout.width), int(layout.height)
        if self.image_size is not None and tuple(self.image_size) != (width, height):
            w, h = self.image_size
            raise HintError(f"{where}: the hint image is {w}x{h} pixels but the image is "
                            f"{width}x{height}; make the hint image the image's size")
        bad = np.nonzero((self.x < 0) | (self.x >= width) | (self.y < 0) | (self.y >= height))[0]
        if len(bad):
            i = int(bad[0])
            raise HintError(f"{where}: hint {i + 1} at x={self.x[i]}, y={self.y[i]} lies outside "
                            f"the {width}x{height} image (x in 0..{width - 1}, "
                            f"y in 0..{height - 1})")
        if len(self) and (not np.isfinite(self.rgb).all() or self.rgb.min() < 0
                          or self.rgb.max() > 1):
            raise HintError(f"{where}: hint colours must be sRGB values in [0, 1]")
        if len(self) and (self.size.min() < 1 or self.size.max() > MAX_HINT_SIZE):
            raise HintError(f"{where}: hint sizes must be between 1 and {MAX_HINT_SIZE} pixels")
        return self

    def oriented(self, orientation: int, stored_width: int, stored_height: int) -> Hints:
        """These hints, given for an image stored ``stored_width`` x ``stored_height``, moved
        the way EXIF ``orientation`` (1-8) turns the image upright (as the image reader does)."""
        w, h = int(stored_width), int(stored_height)
        if self.image_size is not None and tuple(self.image_size) != (w, h):
            return self  # validate() reports the size mismatch in stored terms
        x, y = self.x, self.y
        moves = {
            1: (x, y, False), 2: (w - 1 - x, y, False), 3: (w - 1 - x, h - 1 - y, False),
            4: (x, h - 1 - y, False), 5: (y, x, True), 6: (h - 1 - y, x, True),
            7: (h - 1 - y, w - 1 - x, True), 8: (y, w - 1 - x, True),
        }
        if orientation not in moves:
            return self
        nx, ny, swapped = moves[orientation]
        size = self.image_size
        if size is not None and swapped:
            size = (size[1], size[0])
        return Hints(nx, ny, self.rgb, self.size, image_size=size)

    # -------------------------------------------------------------------- for the pipeline

    def ab(self) -> torch.Tensor:
        """The hints' colours as CIE Lab ab, (N, 2) float32."""
        if not len(self):
            return torch.zeros(0, 2)
        rgb = torch.from_numpy(np.ascontiguousarray(self.rgb.T))[:, :, None]  # (3, N, 1)
        return color.rgb_to_lab(rgb)[1:, :, 0].T.contiguous()

    def _boxes(self, scale_x: float, scale_y: float, width: int, height: int
               ) -> tuple[np.ndarray, ...]:
        """Each patch's [x0, x1) x [y0, y1) in a grid ``scale`` times the image's, clipped to
        ``width`` x ``height``, at least one cell."""
        start_x = self.x - self.size // 2
        start_y = self.y - self.size // 2
        x0 = np.clip(np.floor(np.maximum(start_x, 0) * scale_x), 0, width - 1).astype(np.int64)
        y0 = np.clip(np.floor(np.maximum(start_y, 0) * scale_y), 0, height - 1).astype(np.int64)
        x1 = np.clip(np.ceil(np.minimum(start_x + self.size, width / scale_x) * scale_x),
                     x0 + 1, width).astype(np.int64)
        y1 = np.clip(np.ceil(np.minimum(start_y + self.size, height / scale_y) * scale_y),
                     y0 + 1, height).astype(np.int64)
        return x0, x1, y0, y1

    @staticmethod
    def _cells(boxes: tuple[np.ndarray, ...], width: int) -> tuple[np.ndarray, np.ndarray]:
        """(flat cell index, hint index) for every cell of every box, in hint order."""
        x0, x1, y0, y1 = boxes
        widths, heights = x1 - x0, y1 - y0
        cells, owners = [], []
        for side_h in np.unique(heights):
            for side_w in np.unique(widths[heights == side_h]):
                which = np.nonzero((heights == side_h) & (widths == side_w))[0]
                dy, dx = np.meshgrid(np.arange(side_h), np.arange(side_w), indexing="ij")
                rows = y0[which, None] + dy.reshape(1, -1)
                cols = x0[which, None] + dx.reshape(1, -1)
                cells.append((rows * width + cols).reshape(-1))
                owners.append(np.repeat(which, side_h * side_w))
        if not cells:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        cells_, owners_ = np.concatenate(cells), np.concatenate(owners)
        order = np.argsort(owners_, kind="stable")  # hint order (groups are by patch shape)
        return cells_[order], owners_[order]

    def to_tensor(self, prepared: Any) -> torch.Tensor:
        """The model's hint input (1, 3, h, w) for ``prepared`` (a
        :class:`~chromatize.pipeline.Prepared`) at its render shape: channels 0-1 the hint ab /
        110 (averaged where several hints share a render pixel), channel 2 the 0/1 mask."""
        self.validate(prepared.layout)
        h, w = prepared.render
        width, height = prepared.layout.width, prepared.layout.height
        out = torch.zeros(1, HINT_CHANNELS, h, w)
        if not len(self):
            return out
        cells, owners = self._cells(self._boxes(w / width, h / height, w, h), w)
        ab = self.ab().numpy().astype(np.float64)
        counts = np.bincount(cells, minlength=h * w).astype(np.float64)
        sums = np.stack([np.bincount(cells, ab[owners, c], minlength=h * w) for c in (0, 1)], 1)
        hit = counts > 0
        mean = np.zeros((h * w, 2))
        mean[hit] = sums[hit] / counts[hit, None]
        out[0, :2] = torch.from_numpy((mean.T / HINT_AB_SCALE).astype(np.float32)).view(2, h, w)
        out[0, 2] = torch.from_numpy(hit.astype(np.float32)).view(h, w)
        return out

    def full_resolution(self, width: int, height: int) -> tuple[np.ndarray, torch.Tensor]:
        """The image pixels the hints cover, as sorted flat indices ``y * width + x`` (int64),
        and their ab (2, n) float32 (the last hint wins where patches overlap)."""
        if not len(self):
            return np.zeros(0, np.int64), torch.zeros(2, 0)
        cells, owners = self._cells(self._boxes(1.0, 1.0, width, height), width)
        # the last hint covering a pixel wins: keep each pixel's last occurrence
        reverse_unique, first = np.unique(cells[::-1], return_index=True)
        last = len(cells) - 1 - first
        ab = self.ab()[torch.from_numpy(owners[last])].T.contiguous()
        return reverse_unique.astype(np.int64), ab

    def full_resolution_mask(self, width: int, height: int) -> np.ndarray:
        """(H, W) bool: the image pixels the hints cover."""
        indices, _ = self.full_resolution(width, height)
        mask = np.zeros(height * width, bool)
        mask[indices] = True
        return mask.reshape(height, width)

    def full_resolution_ab(self, width: int, height: int) -> np.ndarray:
        """(2, H, W) float32: the hints' ab at the pixels they cover, NaN elsewhere."""
        indices, ab = self.full_resolution(width, height)
        out = np.full((2, height * width), np.nan, np.float32)
        out[:, indices] = ab.numpy()
        return out.reshape(2, height, width)


def stored_orientation(path: str | os.PathLike[str]) -> int:
    """The EXIF orientation (1-8) of an image file; 1 when it has none or cannot say."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            value = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # unreadable files fail later, where they are read for real
        return 1
    return value if value in range(1, 9) else 1


def load_hints(path: str | os.PathLike[str], *, image_path: str | os.PathLike[str] | None = None
               ) -> Hints:
    """Hints from a ``.json`` file or a hint image file, given in the stored coordinates of
    the image at ``image_path`` (if given, turned upright by that file's EXIF orientation)."""
    from chromatize.errors import InputImageError
    from chromatize.imageio import read_image

    path = Path(path)
    if not path.is_file():
        raise HintError(f"{path}: no such hints file")
    stored = None if image_path is None else _stored_size(image_path)
    if path.suffix.lower() == ".json":
        hints = Hints.from_json(path)
    else:
        try:
            pixels = read_image(path, max_pixels=None).pixels
        except InputImageError as exc:
            raise HintError(f"hints file {exc}") from None
        hints = Hints.from_image(pixels, where=str(path))
    if image_path is None or stored is None:
        return hints
    (stored_w, stored_h), orientation = stored
    if hints.image_size is not None and tuple(hints.image_size) != (stored_w, stored_h):
        w, h = hints.image_size
        raise HintError(f"{path}: the hint image is {w}x{h} pixels but {Path(image_path).name} "
                        f"is {stored_w}x{stored_h} as stored; make the hint image the image's "
                        "size (hints use its stored pixel coordinates, before EXIF rotation)")
    hints.validate(_Size(stored_w, stored_h), where=str(path))
    return hints if orientation == 1 else hints.oriented(orientation, stored_w, stored_h)


@dataclass(frozen=True)
class _Size:
    width: int
    height: int


def _stored_size(image_path: str | os.PathLike[str]) -> tuple[tuple[int, int], int] | None:
    """(stored (width, height), EXIF orientation) of an image file; None if Pillow cannot open
    it (the image reader reports that file)."""
    from PIL import Image

    try:
        with Image.open(image_path) as im:
            size = im.size
    except Exception:
        return None
    return (int(size[0]), int(size[1])), stored_orientation(image_path)


# ------------------------------------------------------------------------ colour suggestions


@dataclass(frozen=True)
class ColourSuggestion:
    """One swatch: ``hex``/``rgb`` (sRGB at the pixel's lightness), ``ab``, ``probability``."""

    hex: str
    rgb: tuple[float, float, float]
    ab: tuple[float, float]
    probability: float


def suggest_colours(prediction: Any, prepared: Any, x: int, y: int, k: int = 5, *,
                    temperature: float = 1.0,
                    merge_distance: float = SUGGESTION_MERGE_DISTANCE) -> list[ColourSuggestion]:
    """The model's ``k`` most probable distinct colours at image pixel (x, y), most probable
    first: the 313-bin distribution (at ``temperature``; 1 = the model's own) there, bins
    merged greedily (from the most probable) into swatches of bins within ``merge_distance``
    ab units of the swatch's first bin, each swatch's ab the probability-weighted mean of its
    bins and its colour that ab at the pixel's lightness. Probabilities sum to at most 1."""
    layout = prepared.layout
    Hints.from_points([(x, y, (0.5, 0.5, 0.5))]).validate(layout, where="suggestions")
    if k < 1:
        raise ChromatizeError(f"suggestions: k must be at least 1, got {k}")
    probs = prediction.probabilities(temperature)
    gh, gw = probs.shape[-2:]
    row = min(gh - 1, max(0, int((y + 0.5) * gh / layout.height)))
    col = min(gw - 1, max(0, int((x + 0.5) * gw / layout.width)))
    p = probs[:, row, col].double().cpu()
    centres = bins.AB_BINS.double()
    order = torch.argsort(p, descending=True)
    seeds: list[int] = []
    mass: list[float] = []
    sums: list[torch.Tensor] = []
    for index in order.tolist():
        weight = float(p[index])
        if weight <= 0:
            break
        if seeds:
            distances = torch.linalg.vector_norm(centres[seeds] - centres[index], dim=1)
            nearest = int(torch.argmin(distances))
            if float(distances[nearest]) <= merge_distance:
                mass[nearest] += weight
                sums[nearest] = sums[nearest] + weight * centres[index]
                continue
        seeds.append(index)
        mass.append(weight)
        sums.append(weight * centres[index])
    ranked = sorted(range(len(seeds)), key=lambda i: -mass[i])[:k]
    lightness = float(prepared.lightness[y, x])
    out = []
    for i in ranked:
        ab = (sums[i] / mass[i]).float()
        lab = torch.tensor([lightness, float(ab[0]), float(ab[1])]).view(3, 1, 1)
        rgb = color.lab_to_rgb(lab, gamut="chroma").view(3).clamp(0, 1).tolist()
        out.append(ColourSuggestion(_hex(rgb), (rgb[0], rgb[1], rgb[2]),
                                    (float(ab[0]), float(ab[1])), mass[i]))
    return out


def sample_hints(rgb: np.ndarray, count: int, seed: int, size: int = 5) -> Hints:
    """The evaluation protocol of Zhang et al. 2017: ``count`` square hint patches ``size`` pixels
    wide at seeded, uniformly random positions wholly inside the image, each with its patch's
    mean true colour (``rgb``: the original, (H, W, 3) uint8 or float in [0, 1])."""
    image = np.asarray(rgb)
    values = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(
        np.float32)
    h, w = values.shape[:2]
    side = max(1, min(size, h, w))
    rng = np.random.default_rng(seed)
    x0 = rng.integers(0, w - side + 1, count)
    y0 = rng.integers(0, h - side + 1, count)
    colours = np.stack([values[y:y + side, x:x + side, :3].reshape(-1, 3).mean(0)
                        for x, y in zip(x0, y0, strict=True)]) if count else np.zeros((0, 3))
    return Hints(x0 + side // 2, y0 + side // 2, np.clip(colours, 0.0, 1.0),
                 np.full(count, side), (w, h))


def load_frame_hints(path: str | os.PathLike[str]) -> dict[int, Hints]:
    """Hints for the frames of a sequence from one file: JSON whose hints may carry a ``"frame"``
    (0-based index; default 0), e.g. ``[{"frame": 12, "x": 120, "y": 45, "color": "#2e8b57"}]``,
    or a hint image (it guides frame 0). Returns frame index -> that frame's hints."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        return {0: load_hints(path)}
    if not path.is_file():
        raise HintError(f"{path}: no such hints file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {0: Hints.from_json(path)}  # raises the same clear message as for a photo
    if isinstance(data, dict) and "hints" in data:
        data = data["hints"]
    if not isinstance(data, list):
        return {0: Hints.from_json(path)}  # raises: not a list
    by_frame: dict[int, list[Any]] = {}
    for i, point in enumerate(data):
        frame = point.get("frame", 0) if isinstance(point, Mapping) else 0
        frame = _integer(frame, "frame", f"{path}: hint {i + 1}")
        if frame < 0:
            raise HintError(f"{path}: hint {i + 1}: frame must be 0 or more, got {frame}")
        rest = ({k: v for k, v in point.items() if k != "frame"} if isinstance(point, Mapping)
                else point)
        by_frame.setdefault(frame, []).append(rest)
    return {frame: Hints.from_points(items, where=f"{path} (frame {frame})")
            for frame, items in sorted(by_frame.items())}


def frame_hint_files(folder: str | os.PathLike[str], frame_stems: Sequence[str]
                     ) -> dict[int, Path]:
    """Hint files in ``folder`` for the frames of a sequence: ``<frame stem>.png`` or ``.json``
    for a folder of frames (``frame_stems`` their stems, in order), or ``<index>.png`` /
    ``.json`` (the 0-based frame number, zero padding allowed) for any sequence. Raises
    :class:`HintError` when no file matches a frame, or two files name the same frame."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HintError(f"{folder} is not a folder of hint files")
    by_stem = {stem: i for i, stem in enumerate(frame_stems)}
    found: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".png", ".json", ".tif", ".tiff") or not path.is_file():
            continue
        index = by_stem.get(path.stem)
        if index is None and path.stem.isdigit():
            index = int(path.stem)
        if index is None:
            continue
        if index in found:
            raise HintError(f"{found[index].name} and {path.name} in {folder} both give hints "
                            f"for frame {index}; keep one")
        found[index] = path
    if not found:
        raise HintError(f"no hint file in {folder} names a frame: name them after the frame "
                        "files (<frame stem>.png or .json) or by frame number (0.png, 12.json)")
    return found
