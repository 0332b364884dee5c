"""Turning a napari Image layer into planes the colorizer can take, and building the output layer.

Qt-free and thread-aware: :func:`snapshot_layer` runs on the GUI thread and copies everything the
worker needs (a reference to the data, contrast limits, transforms), so the worker thread never
touches a napari object. Nothing here modifies the input layer or its data.

Intensity mapping: napari shows a single-channel layer through its contrast limits, so a uint16
microscopy image whose signal sits in [100, 3000] looks like a normal photo on screen. We colorize
what the user sees: every plane is mapped with ``(value - low) / (high - low)``, clipped to
[0, 1], before it reaches the colorizer. RGB(A) layers are mapped the same way on their colour
channels (their alpha channel is scaled by its dtype's range only). The output layer's dtype is
uint8 for uint8 input, uint16 for uint16 input and float32 in [0, 1] otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chromatize.errors import InputImageError

#: Key under which the output layer's metadata records how it was made.
METADATA_KEY = "chromatize"
#: Suffix of the new layer's name: "<input> (colorized)".
NAME_SUFFIX = " (colorized)"
#: The layer properties that place a layer in the world (see :func:`layer_transforms`).
TRANSFORM_KEYS = ("scale", "translate", "rotate", "shear", "affine", "units", "axis_labels")


@dataclass(frozen=True)
class LayerSnapshot:
    """What the worker thread needs from an Image layer, read on the GUI thread."""

    name: str
    data: Any  # array-like; numpy, dask or zarr (read one plane at a time)
    rgb: bool
    contrast_limits: tuple[float, float]
    transforms: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    #: which layer this is (its ``id``), for keeping its prepared planes between runs
    source: Any = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.data.shape)

    @property
    def channels(self) -> int:
        """Channels per pixel of the input: 1 for grayscale layers, 3 or 4 for RGB(A) layers."""
        return self.shape[-1] if self.rgb else 1

    @property
    def plane_shape(self) -> tuple[int, int]:
        """(height, width) of one plane."""
        spatial = self.shape[-3:-1] if self.rgb else self.shape[-2:]
        return int(spatial[0]), int(spatial[1])

    @property
    def stack_shape(self) -> tuple[int, ...]:
        """Leading (non-spatial) axes, e.g. (T,) or (T, Z); () for a single 2D plane."""
        return self.shape[:-3] if self.rgb else self.shape[:-2]

    @property
    def n_planes(self) -> int:
        return int(np.prod(self.stack_shape, dtype=np.int64))

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    @property
    def output_dtype(self) -> np.dtype:
        """uint8 stays uint8, uint16 stays uint16, everything else becomes float32 in [0, 1]."""
        if self.dtype in (np.dtype(np.uint8), np.dtype(np.uint16)):
            return self.dtype
        return np.dtype(np.float32)

    @property
    def output_channels(self) -> int:
        """RGBA in, RGBA out (alpha passed through); everything else gives RGB."""
        return 4 if self.channels == 4 else 3

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (*self.stack_shape, *self.plane_shape, self.output_channels)


def snapshot_layer(layer: Any) -> LayerSnapshot:
    """Read what colorizing ``layer`` (a napari Image layer) needs. Call on the GUI thread.

    Raises :class:`InputImageError` for layers that are not Image layers.
    """
    from napari.layers import Image

    if not isinstance(layer, Image):
        raise InputImageError(
            f"layer {getattr(layer, 'name', layer)!r} is not an Image layer; "
            "choose an image layer as input"
        )
    data = layer.data[0] if layer.multiscale else layer.data  # level 0 = full resolution
    rgb = bool(layer.rgb)  # napari guarantees non-empty data, >= 2 dims, 3 or 4 channels if rgb
    low, high = (float(v) for v in layer.contrast_limits)
    return LayerSnapshot(
        name=str(layer.name),
        data=data,
        rgb=rgb,
        contrast_limits=(low, high),
        transforms=layer_transforms(layer),
        metadata=dict(layer.metadata),
        source=id(layer),
    )


def layer_transforms(layer: Any) -> dict[str, Any]:
    """Keyword arguments that place a new layer exactly over ``layer`` in world coordinates."""
    transforms: dict[str, Any] = {
        "scale": np.array(layer.scale, dtype=float),
        "translate": np.array(layer.translate, dtype=float),
        "rotate": np.array(layer.rotate, dtype=float),
        "shear": np.array(layer.shear, dtype=float),
        "affine": np.array(layer.affine.affine_matrix, dtype=float),
    }
    units = getattr(layer, "units", None)
    if units is not None:
        transforms["units"] = tuple(str(u) for u in units)
    axis_labels = getattr(layer, "axis_labels", None)
    if axis_labels is not None:
        transforms["axis_labels"] = tuple(axis_labels)
    return transforms


def iter_plane_indices(snapshot: LayerSnapshot) -> Iterator[tuple[int, ...]]:
    """Indices of the leading axes, one per 2D plane, in C order (``()`` for a 2D layer)."""
    yield from np.ndindex(*snapshot.stack_shape)


def _dtype_range(dtype: np.dtype) -> tuple[float, float]:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return 0.0, 1.0


def _unit_to_dtype(unit: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float32 values in [0, 1] (modified in place) to ``dtype``: integers rounded to full range."""
    if np.issubdtype(dtype, np.integer):
        unit *= float(np.iinfo(dtype).max)
        np.rint(unit, out=unit)
        return unit.astype(dtype)
    return unit


def _rescale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``(values - low) / (high - low)`` clipped to [0, 1], as a new float32 array."""
    unit = values.astype(np.float32)  # always a copy: the caller's plane is only read
    if high > low:
        unit -= np.float32(low)
        unit *= np.float32(1.0 / (high - low))
    else:  # a degenerate range: everything at or above the single limit is white
        unit = (unit >= np.float32(high)).astype(np.float32)
    np.clip(unit, 0.0, 1.0, out=unit)
    return unit


def map_plane(snapshot: LayerSnapshot, plane: Any) -> np.ndarray:
    """One plane, as the user sees it, in :attr:`LayerSnapshot.output_dtype`.

    Gray (H, W) or RGB(A) (H, W, 3|4). Gray and colour values go through the layer's contrast
    limits to the output dtype's full range; alpha is rescaled by dtype range only. A uint8 or
    uint16 plane whose contrast limits already span its dtype is passed on as is (no copy), so
    large photos cost no extra memory here; anything else is a new array. The plane is only read.
    """
    plane = np.asarray(plane)
    out_dtype = snapshot.output_dtype
    limits = tuple(float(v) for v in snapshot.contrast_limits)
    if plane.dtype == out_dtype and np.issubdtype(out_dtype, np.integer) \
            and limits == _dtype_range(out_dtype):
        return plane
    values = plane[..., :3] if snapshot.rgb else plane
    mapped = _unit_to_dtype(_rescale(values, *limits), out_dtype)
    if snapshot.rgb and snapshot.channels == 4:
        alpha = plane[..., 3:4]
        if alpha.dtype != out_dtype:
            alpha = _unit_to_dtype(_rescale(alpha, *_dtype_range(alpha.dtype)), out_dtype)
        mapped = np.concatenate([mapped, alpha], axis=-1)
    return np.ascontiguousarray(mapped)


def output_contrast_limits(dtype: np.dtype) -> tuple[float, float]:
    """Display range of the output layer: the full range of its dtype ([0, 1] for float)."""
    return _dtype_range(np.dtype(dtype))


def _contrast_mapped_thumbnail(layer: Any, dtype: np.dtype) -> np.ndarray | None:
    """The thumbnail of an integer RGB(A) ``layer`` with colours through its contrast limits, as
    float RGBA in [0, 1] (napari's setter turns it into uint8); None when nothing is sliced."""
    if layer._slice.empty:
        return None
    image = np.asarray(layer._slice.thumbnail.raw)
    if layer._slice_input.ndisplay == 3 and image.ndim == 4:
        image = np.max(image, axis=0)
    # Downsampled as napari does it (nearest neighbour, the same zoom), so only the mapping
    # of values differs from napari's own thumbnail.
    from scipy import ndimage

    fit = np.divide(layer._thumbnail_shape[:2], image.shape[:2]).min()
    new_shape = np.clip(fit * np.array(image.shape[:2]), 1, layer._thumbnail_shape[:2])
    zoom = (*(new_shape / image.shape[:2]), 1)
    small = ndimage.zoom(image, zoom, prefilter=False, order=0)
    low, high = (float(v) for v in layer.contrast_limits)
    colour = _rescale(small[..., :3], low, high)
    if small.shape[-1] == 4:
        alpha = _rescale(small[..., 3:4], *_dtype_range(dtype)) * np.float32(layer.opacity)
    else:
        alpha = np.full((*small.shape[:2], 1), layer.opacity, np.float32)
    return np.concatenate([colour, alpha], axis=-1)


def show_thumbnail_in_contrast_limits(layer: Any) -> None:
    """Make ``layer``'s thumbnail (the layer list's icon) show what its canvas shows.

    napari (0.5 to at least 0.9) draws the thumbnail of an RGB layer whose dtype is an integer
    type other than uint8 without its contrast limits: a uint16 result, whose canvas is right
    (the canvas maps 0..65535 through the limits), gets a solid white icon. For such layers this
    replaces the layer's thumbnail update by one that maps the colour channels through the
    contrast limits (alpha by its dtype's range) and then lets napari finish as for float RGB.
    Other layers keep napari's own. Idempotent; the layer's data is only read.
    """
    if getattr(layer, "_chromatize_thumbnail", False):
        layer._update_thumbnail()
        return
    own = type(layer)._update_thumbnail

    def update() -> None:
        dtype = np.dtype(layer.dtype)
        if not (layer.rgb and dtype.kind in "ui" and dtype != np.uint8):
            own(layer)
            return
        try:
            thumbnail = _contrast_mapped_thumbnail(layer, dtype)
        except AttributeError:  # napari's internals moved: its own thumbnail, wrong but harmless
            thumbnail = None
        if thumbnail is None:
            own(layer)
        else:
            layer.thumbnail = thumbnail

    layer._update_thumbnail = update
    layer._chromatize_thumbnail = True
    update()


def output_layer_name(input_name: str) -> str:
    return f"{input_name}{NAME_SUFFIX}"


def output_layer_kwargs(
    snapshot: LayerSnapshot, record: dict[str, Any], dtype: np.dtype
) -> dict[str, Any]:
    """Keyword arguments for ``viewer.add_image`` / layer updates of the colorized result.

    The metadata is a copy of the input layer's with ``record`` (model and parameters) under
    :data:`METADATA_KEY`.
    """
    metadata = dict(snapshot.metadata)
    metadata[METADATA_KEY] = dict(record)
    return {
        "name": output_layer_name(snapshot.name),
        "rgb": True,
        "contrast_limits": output_contrast_limits(dtype),
        "metadata": metadata,
        **{key: value for key, value in snapshot.transforms.items()},
    }


def is_output_layer(layer: Any) -> bool:
    """True for RGB Image layers this plug-in made (their metadata holds a chromatize record)."""
    from napari.layers import Image

    return (
        isinstance(layer, Image)
        and bool(layer.rgb)
        and isinstance(layer.metadata.get(METADATA_KEY), dict)
    )
