# -*- coding: utf-8 -*-
"""The "Colorize (AI)" flow, written once over :class:`chromatize_shim.Host` (Python 2.7 and 3).

1. Check every selected drawable is a pixel layer (groups, channels and masks are refused).
2. Read each layer and colorize it with the worker. Nothing in the image changes yet, so any
   failure (worker missing, model missing, out of memory, crash, timeout) leaves the image
   exactly as it was.
3. In ONE undo group: convert a grayscale or indexed image to RGB, then write every result,
   either into a new layer above its source (default) or in place, through the selection.
"""

from __future__ import absolute_import, division, print_function

from chromatize_client import WorkerError
from chromatize_shim import (
    KIND_CHANNEL,
    KIND_GROUP,
    KIND_LAYER,
    KIND_LAYER_MASK,
    MODE_RGB,
    SAMPLE_SIZES,
    PluginError,
    crop_rows,
)

PROCEDURE_LABEL = "Colorize (AI)"
MODEL_CHOICES = ("mobile", "eccv16")
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
OUTPUT_NEW_LAYER = "new-layer"
OUTPUT_IN_PLACE = "in-place"
OUTPUT_CHOICES = (OUTPUT_NEW_LAYER, OUTPUT_IN_PLACE)
LAYER_SUFFIX = " (colorized)"
MODEL_MISSING_HINT = ("In the Colorize (AI) dialog you can choose another model, give a "
                      "weights file, or allow downloading missing model weights.")

_REFUSED = {
    KIND_GROUP: "is a layer group; select the layers inside it instead",
    KIND_CHANNEL: "is a channel; select a layer instead",
    KIND_LAYER_MASK: "is a layer mask; select the layer itself (not its mask) instead",
}


def make_settings(model="mobile", weights="", temperature=0.0, saturation=1.0, render_size=0,
                  device="auto", output=OUTPUT_NEW_LAYER, allow_download=False):
    """Turn dialog values into flow settings (0 / "" mean "the model's default")."""
    if output not in OUTPUT_CHOICES:
        raise PluginError("Unknown output %r; choose %s." % (output, " or ".join(OUTPUT_CHOICES)))
    try:
        temperature = float(temperature)
        saturation = float(saturation)
        render_size = int(render_size)
    except (TypeError, ValueError):
        raise PluginError("Temperature and saturation must be numbers and render size a whole "
                          "number.")
    if saturation < 0:
        raise PluginError("Saturation must be 0 or more (1 = as predicted).")
    if temperature < 0 or render_size < 0:
        raise PluginError("Temperature and render size must be 0 (model default) or more.")
    weights = (weights or "").strip()
    return {
        "output": output,
        "worker": {
            "model": model or "mobile",
            "weights": weights or None,
            "temperature": temperature if temperature > 0 else None,
            "saturation": saturation,
            "render_size": render_size if render_size > 0 else None,
            "device": device or "auto",
            "allow_download": bool(allow_download),
        },
    }


def check_drawables(host, drawables):
    """Refuse anything that is not a pixel layer, naming each offender."""
    if not drawables:
        raise PluginError("Select a layer to colorize.", kind="bad_input")
    problems = []
    for drawable in drawables:
        kind = host.drawable_kind(drawable)
        if kind != KIND_LAYER:
            reason = _REFUSED.get(kind, "is not a pixel layer")
            problems.append("\"%s\" %s." % (host.drawable_name(drawable), reason))
    if problems:
        raise PluginError("Only pixel layers can be colorized: " + " ".join(problems),
                          kind="bad_input")


def colorize_drawables(host, drawables, settings, client):
    """Run the whole flow; raises :class:`PluginError` with a user message on any failure."""
    check_drawables(host, drawables)
    jobs = []
    for drawable in drawables:
        rect = host.selection_bounds(drawable)
        if rect is not None and rect[2] > 0 and rect[3] > 0:
            jobs.append((drawable, rect))
    if not jobs:
        raise PluginError("The selection does not touch the selected layer(s); nothing to "
                          "colorize.", kind="bad_input")

    itemsize = SAMPLE_SIZES[host.sample_dtype]
    host.progress_start(PROCEDURE_LABEL + "…")
    try:
        results = []
        count = float(len(jobs))
        for index, (drawable, rect) in enumerate(jobs):
            width, height = host.drawable_size(drawable)
            pixels, channels = host.read_pixels(drawable)

            def report(fraction, index=index):
                host.progress_update(min(1.0, (index + fraction) / count))

            try:
                data, out_channels = client.colorize(
                    pixels, width, height, channels, host.sample_dtype, settings["worker"],
                    progress=report)
            except WorkerError as exc:
                message = exc.message
                if exc.kind == "model_missing":
                    message = message.rstrip() + "\n\n" + MODEL_MISSING_HINT
                raise PluginError(_with_layer(message, host, drawable, len(jobs)),
                                  kind=exc.kind)
            del pixels
            results.append((drawable, rect,
                            crop_rows(data, width, out_channels, itemsize, rect), out_channels))
            del data

        host.undo_group_start()
        try:
            if host.image_mode() != MODE_RGB:
                host.convert_to_rgb()
            for drawable, rect, block, out_channels in results:
                target = drawable
                if settings["output"] == OUTPUT_NEW_LAYER:
                    target = host.add_layer_above(
                        drawable, host.drawable_name(drawable) + LAYER_SUFFIX)
                host.write_pixels(target, rect, block, out_channels)
        finally:
            host.undo_group_end()
    finally:
        host.progress_end()
    host.flush()
    return len(results)


def _with_layer(message, host, drawable, count):
    if count <= 1:
        return message
    return "Layer \"%s\": %s" % (host.drawable_name(drawable), message)
