# -*- coding: utf-8 -*-
"""The "Colorize (AI)" flow, written once over :class:`chromatize_shim.Host` (Python 2.7 and 3).

1. Check every selected drawable is a pixel layer (groups, channels and masks are refused).
2. Read each layer and colorize it with the worker. Nothing in the image changes yet, so any
   failure (worker missing, model missing, out of memory, crash, timeout) leaves the image
   exactly as it was.
3. In ONE undo group: convert a grayscale or indexed image to RGB, then write every result,
   either into a new layer above its source (default) or in place, through the selection.

The dialog's controls come from the settings schema ``chromatize gimp install`` writes into
``chromatize-worker.json`` (chromatize's own defaults, labels, help texts, ranges and choices;
:func:`settings_schema`, :func:`dialog_fields`); only the output control is the plug-in's own.
GIMP's controls cannot say "the model's default", so 0 (or an empty text) stands for it, and
:func:`worker_value` alone turns that into the worker's JSON null.
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
OUTPUT = "output"
OUTPUT_NEW_LAYER = "new-layer"
OUTPUT_IN_PLACE = "in-place"
OUTPUT_CHOICES = (OUTPUT_NEW_LAYER, OUTPUT_IN_PLACE)
#: The plug-in's own control (where the colours go); every other one is a chromatize setting.
OUTPUT_FIELD = {
    "name": OUTPUT, "kind": "choice", "label": "Output",
    "help": "Where the colors go: a new layer above each selected layer, or the layer itself.",
    "default": OUTPUT_NEW_LAYER, "minimum": None, "maximum": None, "hint": "",
    "choices": [(OUTPUT_NEW_LAYER, "New layer above"), (OUTPUT_IN_PLACE, "In place")],
}
#: The dialog's controls, in order: chromatize settings (described by the installed schema)
#: and the output.
DIALOG_SETTINGS = ("model", "weights", "temperature", "saturation", "render_size", "device",
                   OUTPUT, "allow_download")
LAYER_SUFFIX = " (colorized)"
MODEL_MISSING_HINT = ("In the Colorize (AI) dialog you can choose another model, give a "
                      "weights file, or allow downloading the model's weights.")
NOT_INSTALLED = ("The chromatize plug-in's settings are missing from its configuration (it "
                 "was not installed by `chromatize gimp install`, or by an older chromatize). "
                 "Run `chromatize gimp install` in the Python environment where chromatize is "
                 "installed, then restart GIMP.")

_REFUSED = {
    KIND_GROUP: "is a layer group; select the layers inside it instead",
    KIND_CHANNEL: "is a channel; select a layer instead",
    KIND_LAYER_MASK: "is a layer mask; select the layer itself (not its mask) instead",
}
_NUMBER_KINDS = ("float", "int")
_TEXT_KINDS = ("text", "path")


def settings_schema(config):
    """The settings schema ``chromatize gimp install`` wrote into the plug-in's configuration
    (defaults, labels, help texts, ranges and choices of chromatize's settings)."""
    schema = config.get("settings") if isinstance(config, dict) else None
    if not isinstance(schema, dict) or not all(
            isinstance(schema.get(name), dict) for name in DIALOG_SETTINGS if name != OUTPUT):
        raise PluginError(NOT_INSTALLED, kind="not_installed")
    return schema


def _default_stand_in(setting):
    """What the dialog shows for a setting whose default is "the model's": 0 or an empty text."""
    return "" if setting["kind"] in _TEXT_KINDS else 0


def _field(setting):
    kind = "text" if setting["kind"] in _TEXT_KINDS else setting["kind"]
    modelled = setting.get("default") is None  # the default is the model's own value
    hint = ""
    if modelled and setting.get("default_text"):
        hint = "%s: %s" % ("empty" if kind == "text" else "0", setting["default_text"])
    help_text = setting["help"] + (" (%s)" % hint if hint else "")
    labels = setting.get("choice_labels") or {}
    if labels:  # a model's description is too long for a menu entry: it goes in the tooltip
        help_text += " " + "; ".join("%s: %s" % (value, labels.get(value, value))
                                     for value in setting.get("choices") or ())
    minimum = setting.get("minimum")
    return {
        "name": setting["name"], "kind": kind, "label": setting["label"], "help": help_text,
        "hint": hint,
        "default": _default_stand_in(setting) if modelled else setting["default"],
        "minimum": 0 if modelled and kind in _NUMBER_KINDS else minimum,
        "maximum": setting.get("maximum") if setting.get("maximum") is not None
        else setting.get("slider_maximum"),
        "choices": [(value, value) for value in setting.get("choices") or ()],
    }


def dialog_fields(schema):
    """The dialog's controls in order, as dicts: ``name`` (the setting), ``kind`` ("choice",
    "text", "float", "int" or "bool"), ``label``, ``help``, ``hint`` (what 0 or an empty text
    means, or ""), ``default``, ``minimum``, ``maximum`` and ``choices`` ((value, label) pairs).
    """
    return [OUTPUT_FIELD if name == OUTPUT else _field(schema[name])
            for name in DIALOG_SETTINGS]


def _number(setting, value):
    integer = setting["kind"] == "int"
    try:
        number = float(value)
        if integer:
            if number != int(number):
                raise ValueError(value)
            number = int(number)
    except (TypeError, ValueError):
        raise PluginError("'%s' must be %s, got %r." % (
            setting["label"], "a whole number" if integer else "a number", value))
    return number


def worker_value(setting, value):
    """A dialog value as the worker's request field (JSON value) for ``setting`` (its schema).

    The one place where the dialog's stand-ins for "the model's default" (0 for a number, an
    empty text) become JSON null; the worker checks the rest (chromatize.options).
    """
    kind = setting["kind"]
    if kind == "bool":
        return bool(value)
    if kind in _TEXT_KINDS or kind == "choice":
        text = (value or "").strip()
        return None if not text and (kind == "choice" or setting.get("default") is None) \
            else text
    number = _number(setting, value)
    if number == 0 and setting.get("default") is None:
        return None
    low, high = setting.get("minimum"), setting.get("maximum")
    if (low is not None and number < low) or (high is not None and number > high):
        raise PluginError("'%s' must be %s, got %s." % (
            setting["label"], "between %s and %s" % (low, high) if high is not None
            else "at least %s" % low, value))
    return number


def make_settings(schema, **values):
    """Turn dialog values (by setting name, plus ``output``) into flow settings:
    ``{"output": ..., "worker": {setting: JSON value}}``; settings not given are left to the
    worker's defaults."""
    output = values.pop(OUTPUT, OUTPUT_NEW_LAYER)
    if output not in OUTPUT_CHOICES:
        raise PluginError("Unknown output %r; choose %s." % (output, " or ".join(OUTPUT_CHOICES)))
    worker = {}
    for name, value in values.items():
        setting = schema.get(name)
        if not isinstance(setting, dict):
            raise PluginError("Unknown setting %r." % (name,))
        worker[name] = worker_value(setting, value)
    return {"output": output, "worker": worker}


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
