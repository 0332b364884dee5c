# -*- coding: utf-8 -*-
"""The host-neutral layer between the colorize flow and an editor (Python 2.7 and 3).

:class:`Host` lists everything the flow needs from an editor: pixels in and out, the selection,
undo grouping, progress and messages. ``chromatize_shim_gimp3.Gimp3Host`` implements it with
GIMP 3's GObject-Introspection API, ``chromatize_shim_gimpfu.GimpfuHost`` with GIMP 2.10's
``gimpfu``; the flow (``chromatize_flow``) is written once against it. Drawables are opaque
handles owned by the host.

Pixel blocks are ``bytes``: rows top to bottom, channels interleaved, samples of
``host.sample_dtype`` (little-endian), sRGB-encoded ("R'G'B'A" in babl terms).
"""

from __future__ import absolute_import, division, print_function

KIND_LAYER = "layer"
KIND_GROUP = "group"
KIND_CHANNEL = "channel"
KIND_LAYER_MASK = "layer_mask"
KIND_OTHER = "other"

MODE_RGB = "rgb"
MODE_GRAY = "gray"
MODE_INDEXED = "indexed"

SAMPLE_SIZES = {"float32": 4, "uint16": 2, "uint8": 1}


class PluginError(Exception):
    """A failure the plug-in reports to the user as is (the image has not been changed)."""

    def __init__(self, message, kind="failed"):
        Exception.__init__(self, message)
        self.message = message
        self.kind = kind

    def __str__(self):
        return self.message


class Host(object):
    """What the colorize flow needs from an image editor. Subclasses implement every method."""

    #: dtype of the pixel blocks read and written: "float32" (GIMP 3) or "uint8" (GIMP 2.10).
    sample_dtype = "float32"

    # --- image ---------------------------------------------------------------------------
    def image_mode(self):
        """MODE_RGB, MODE_GRAY or MODE_INDEXED."""
        raise NotImplementedError

    def convert_to_rgb(self):
        """Convert the image to RGB mode (same precision); called inside the undo group."""
        raise NotImplementedError

    def undo_group_start(self):
        raise NotImplementedError

    def undo_group_end(self):
        raise NotImplementedError

    # --- drawables -----------------------------------------------------------------------
    def drawable_kind(self, drawable):
        """KIND_LAYER for a pixel layer; KIND_GROUP, KIND_CHANNEL, KIND_LAYER_MASK, KIND_OTHER."""
        raise NotImplementedError

    def drawable_name(self, drawable):
        raise NotImplementedError

    def drawable_id(self, drawable):
        """A number that identifies ``drawable`` in its image (to compare two handles)."""
        raise NotImplementedError

    def has_alpha(self, drawable):
        raise NotImplementedError

    def drawable_size(self, drawable):
        """``(width, height)`` in pixels."""
        raise NotImplementedError

    def read_pixels(self, drawable):
        """The whole drawable as ``(bytes, channels)``.

        Channels are 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA); indexed drawables are
        read as RGB(A). Reading never changes the image.
        """
        raise NotImplementedError

    def selection_bounds(self, drawable):
        """``(x, y, width, height)`` in drawable coordinates of the part to change.

        The whole drawable when nothing is selected, the bounding box of selection and
        drawable otherwise, None when the selection misses the drawable.
        """
        raise NotImplementedError

    def add_layer_above(self, drawable, name):
        """Insert a copy of ``drawable`` (same offsets, alpha, mode) just above it; return it."""
        raise NotImplementedError

    def hint_pixels(self, hints_layer, drawable):
        """``hints_layer`` as 8-bit R'G'B'A ``bytes`` covering ``drawable`` exactly (its size,
        in its coordinates: the layers' offsets taken into account; transparent where the
        hints layer does not reach). Reading never changes the image."""
        raise PluginError("This editor's plug-in cannot read a hints layer.", kind="bad_hints")

    def set_visible(self, drawable, visible):
        """Show or hide a layer, undoably (called inside the undo group)."""
        raise NotImplementedError

    def write_pixels(self, drawable, rect, data, channels):
        """Write ``data`` (covering ``rect`` only) into ``drawable``, undoably.

        The write goes through the editor's shadow buffer, so the current selection applies as
        for the editor's own filters: soft selections blend, unselected pixels stay unchanged.
        ``channels`` is 3 or 4.
        """
        raise NotImplementedError

    # --- feedback ------------------------------------------------------------------------
    def progress_start(self, text):
        raise NotImplementedError

    def progress_update(self, fraction):
        raise NotImplementedError

    def progress_end(self):
        raise NotImplementedError

    def progress_set_text(self, text):
        """Say what is happening now next to the progress bar (optional for a host)."""

    def message(self, text):
        """Show an informational message."""
        raise NotImplementedError

    def flush(self):
        """Refresh the editor's displays after changes."""
        raise NotImplementedError


def crop_rows(data, width, channels, itemsize, rect):
    """The bytes of ``rect`` = (x, y, w, h) cut out of a ``width``-wide interleaved block."""
    x, y, w, h = rect
    stride = width * channels * itemsize
    start = x * channels * itemsize
    length = w * channels * itemsize
    if x == 0 and w == width:
        if y == 0 and h * stride == len(data):
            return data  # the whole block: no copy
        return data[y * stride:(y + h) * stride]
    return b"".join(data[row * stride + start:row * stride + start + length]
                    for row in range(y, y + h))
