# -*- coding: utf-8 -*-
""":class:`chromatize_shim.Host` for GIMP 2.10's Python-Fu (``gimpfu``, Python 2.7).

Pixels travel through pixel regions, which GIMP 2.10 hands to Python plug-ins in 8 bits per
channel (``gimp_plugin_enable_precision`` is not available to Python-Fu): on 16/32-bit images
the colorized area is therefore written with 8-bit precision (GIMP 3 keeps full precision).
Indexed images are read through a temporary RGB duplicate (pixel regions of indexed layers hold
palette indices). Writes go through the shadow tiles and ``merge_shadow``, so the selection
applies like for GIMP's own filters.
"""

from __future__ import absolute_import, division, print_function

from chromatize_shim import (
    KIND_CHANNEL,
    KIND_GROUP,
    KIND_LAYER,
    KIND_LAYER_MASK,
    KIND_OTHER,
    MODE_GRAY,
    MODE_INDEXED,
    MODE_RGB,
    Host,
    PluginError,
)
from gimpfu import GRAY, INDEXED, gimp, pdb


class GimpfuHost(Host):
    sample_dtype = "uint8"

    def __init__(self, image):
        self.image = image

    def image_mode(self):
        base = self.image.base_type
        if base == GRAY:
            return MODE_GRAY
        if base == INDEXED:
            return MODE_INDEXED
        return MODE_RGB

    def convert_to_rgb(self):
        pdb.gimp_image_convert_rgb(self.image)

    def undo_group_start(self):
        pdb.gimp_image_undo_group_start(self.image)

    def undo_group_end(self):
        pdb.gimp_image_undo_group_end(self.image)

    def drawable_kind(self, drawable):
        if pdb.gimp_item_is_layer_mask(drawable):
            return KIND_LAYER_MASK
        if pdb.gimp_item_is_group(drawable):
            return KIND_GROUP
        if pdb.gimp_item_is_channel(drawable):
            return KIND_CHANNEL
        if pdb.gimp_item_is_layer(drawable):
            return KIND_LAYER
        return KIND_OTHER

    def drawable_name(self, drawable):
        return drawable.name

    def drawable_size(self, drawable):
        return drawable.width, drawable.height

    def _read(self, drawable):
        width, height = drawable.width, drawable.height
        channels = (1 if drawable.is_gray else 3) + (1 if drawable.has_alpha else 0)
        if drawable.bpp != channels:
            raise PluginError(
                "Layer \"%s\" has %d bytes per pixel where %d were expected; this GIMP 2.10 "
                "plug-in handles 8-bit gray and RGB layers (use GIMP 3 for other formats)."
                % (drawable.name, drawable.bpp, channels), kind="bad_input")
        region = drawable.get_pixel_rgn(0, 0, width, height, False, False)
        return bytes(region[0:width, 0:height]), channels

    def read_pixels(self, drawable):
        if self.image.base_type != INDEXED:
            return self._read(drawable)
        duplicate = pdb.gimp_image_duplicate(self.image)
        try:
            pdb.gimp_image_undo_disable(duplicate)
            pdb.gimp_image_convert_rgb(duplicate)
            twin = pdb.gimp_image_get_layer_by_tattoo(duplicate,
                                                      pdb.gimp_item_get_tattoo(drawable))
            return self._read(twin)
        finally:
            pdb.gimp_image_delete(duplicate)

    def selection_bounds(self, drawable):
        intersects, x, y, width, height = pdb.gimp_drawable_mask_intersect(drawable)
        if not intersects:
            return None
        return x, y, width, height

    def add_layer_above(self, drawable, name):
        layer = pdb.gimp_layer_copy(drawable, False)
        pdb.gimp_item_set_name(layer, name)
        parent = pdb.gimp_item_get_parent(drawable)
        position = pdb.gimp_image_get_item_position(self.image, drawable)
        pdb.gimp_image_insert_layer(self.image, layer, parent, position)
        return layer

    def write_pixels(self, drawable, rect, data, channels):
        x, y, width, height = rect
        if drawable.bpp != channels:
            raise PluginError("internal error: writing %d channels into \"%s\" (%d bytes per "
                              "pixel)" % (channels, drawable.name, drawable.bpp))
        region = drawable.get_pixel_rgn(x, y, width, height, True, True)
        region[x:x + width, y:y + height] = data
        drawable.flush()
        drawable.merge_shadow(True)
        drawable.update(x, y, width, height)

    def progress_start(self, text):
        gimp.progress_init(text)

    def progress_update(self, fraction):
        gimp.progress_update(fraction)

    def progress_end(self):
        pdb.gimp_progress_end()

    def progress_set_text(self, text):
        pdb.gimp_progress_set_text(text)

    def message(self, text):
        gimp.message(text)

    def flush(self):
        gimp.displays_flush()
