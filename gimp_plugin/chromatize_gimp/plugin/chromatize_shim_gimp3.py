# -*- coding: utf-8 -*-
""":class:`chromatize_shim.Host` for GIMP 3 (Python 3, GObject Introspection, GEGL buffers).

Pixels travel as 32-bit float ("R'G'B'A float", "Y'A float", ...), so 8-, 16- and 32-bit
images keep their precision; babl converts from and to the drawable's own format (indexed
drawables are read as RGB). Results are written through the shadow buffer and merged with
undo, which applies the selection exactly like GIMP's own filters.
"""

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

from chromatize_shim import (  # noqa: E402
    KIND_CHANNEL,
    KIND_GROUP,
    KIND_LAYER,
    KIND_LAYER_MASK,
    KIND_OTHER,
    MODE_GRAY,
    MODE_INDEXED,
    MODE_RGB,
    Host,
)

_FORMATS = {1: "Y' float", 2: "Y'A float", 3: "R'G'B' float", 4: "R'G'B'A float"}


class Gimp3Host(Host):
    sample_dtype = "float32"

    def __init__(self, image):
        self.image = image

    def image_mode(self):
        base = self.image.get_base_type()
        if base == Gimp.ImageBaseType.GRAY:
            return MODE_GRAY
        if base == Gimp.ImageBaseType.INDEXED:
            return MODE_INDEXED
        return MODE_RGB

    def convert_to_rgb(self):
        if not self.image.convert_rgb():
            raise RuntimeError("GIMP could not convert the image to RGB")

    def undo_group_start(self):
        self.image.undo_group_start()
        # The Layers dialog's list is frozen while the group changes the image and rebuilt
        # (new thumbnails) when it is thawed: after an image is converted to RGB, GIMP 3.0.4
        # otherwise kept showing the layer's gray thumbnail for minutes, however the layer was
        # updated afterwards (drawable.update after merge_shadow did not refresh it).
        self.image.freeze_layers()

    def undo_group_end(self):
        self.image.thaw_layers()
        self.image.undo_group_end()

    def drawable_kind(self, drawable):
        if drawable.is_layer_mask():
            return KIND_LAYER_MASK
        if drawable.is_group():
            return KIND_GROUP
        if drawable.is_channel():
            return KIND_CHANNEL
        if drawable.is_layer():
            return KIND_LAYER
        return KIND_OTHER

    def drawable_name(self, drawable):
        return drawable.get_name()

    def drawable_id(self, drawable):
        return drawable.get_id()

    def has_alpha(self, drawable):
        return bool(drawable.has_alpha())

    def drawable_size(self, drawable):
        return drawable.get_width(), drawable.get_height()

    def read_pixels(self, drawable):
        gray = drawable.is_gray()
        channels = (1 if gray else 3) + (1 if drawable.has_alpha() else 0)
        width, height = self.drawable_size(drawable)
        buffer = drawable.get_buffer()
        data = buffer.get(Gegl.Rectangle.new(0, 0, width, height), 1.0, _FORMATS[channels],
                          Gegl.AbyssPolicy.CLAMP)
        return bytes(data), channels

    def selection_bounds(self, drawable):
        intersects, x, y, width, height = drawable.mask_intersect()
        if not intersects:
            return None
        return x, y, width, height

    def add_layer_above(self, drawable, name):
        layer = drawable.copy()
        layer.set_name(name)
        parent = drawable.get_parent()
        position = self.image.get_item_position(drawable)
        if not self.image.insert_layer(layer, parent, position):
            raise RuntimeError("GIMP could not add the new layer")
        return layer

    def hint_pixels(self, hints_layer, drawable):
        _, x, y = drawable.get_offsets()
        _, hx, hy = hints_layer.get_offsets()
        width, height = self.drawable_size(drawable)
        # Abyss NONE: transparent (no hint) where the hints layer does not reach. Scale 1 only:
        # GIMP 3.0.4 gave scaled-down reads of a hints layer the right alpha but black colours.
        data = hints_layer.get_buffer().get(Gegl.Rectangle.new(x - hx, y - hy, width, height),
                                            1.0, "R'G'B'A u8", Gegl.AbyssPolicy.NONE)
        return bytes(data)

    def set_visible(self, drawable, visible):
        drawable.set_visible(bool(visible))

    def write_pixels(self, drawable, rect, data, channels):
        x, y, width, height = rect
        shadow = drawable.get_shadow_buffer()
        shadow.set(Gegl.Rectangle.new(x, y, width, height), _FORMATS[channels], data)
        shadow.flush()
        drawable.merge_shadow(True)
        drawable.update(x, y, width, height)

    def progress_start(self, text):
        Gimp.progress_init(text)

    def progress_update(self, fraction):
        Gimp.progress_update(fraction)

    def progress_end(self):
        Gimp.progress_end()

    def progress_set_text(self, text):
        Gimp.progress_set_text(text)

    def message(self, text):
        Gimp.message(text)

    def flush(self):
        Gimp.displays_flush()
