# -*- coding: utf-8 -*-
"""The "Colorize (AI)" flow, written once over :class:`chromatize_shim.Host` (Python 2.7 and 3).

1. Check every selected drawable is a pixel layer (groups, channels and masks are refused).
2. Read each layer and colorize it with the worker. Nothing in the image changes yet, so any
   failure (worker missing, model missing, out of memory, crash, timeout) leaves the image
   exactly as it was.
3. In ONE undo group: convert a grayscale or indexed image to RGB, then write every result,
   either into a new layer above its source (default) or in place, through the selection
   (and hide the hints layer when the user asked for it).

Colour hints: the user paints dots with any brush and colour on a transparent layer and picks
it as the "Hints layer". Every pixel of it with alpha above 0 that lies over the layer being
colorized is a hint (read in that layer's coordinates, whatever the two layers' offsets), sent
to the worker as a hint image (protocol 2); the whole layer guides the model, the selection
still limits what changes. The hints layer itself is never changed; it is hidden in the result
only when "Hide the hints layer" is ticked.

The dialog's controls come from the settings schema ``chromatize gimp install`` writes into
``chromatize-worker.json`` (chromatize's own defaults, labels, help texts, ranges and choices;
:func:`settings_schema`, :func:`dialog_fields`); only the output control is the plug-in's own.
GIMP's controls cannot say "the model's default", so 0 (or an empty text) stands for it, and
:func:`worker_value` alone turns that into the worker's JSON null.

The words are the plug-in's own where chromatize's are written for the command line or for
Python (:data:`GIMP_WORDING`): tooltips in plain words that state the defaults, a "Detail"
choice of render sizes known to work (the exact size stays available for experts), each
model's availability in the model list (:func:`model_availability`, checked each time the
dialog opens), and error advice phrased in terms of the dialog (:func:`explain_failure`).
"""

from __future__ import absolute_import, division, print_function

import os
import re

from chromatize_client import WorkerError
from chromatize_shim import (
    KIND_CHANNEL,
    KIND_GROUP,
    KIND_LAYER,
    KIND_LAYER_MASK,
    MODE_GRAY,
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
DETAIL = "detail"
DETAIL_STANDARD = "standard"
#: The "Detail" choice: render sizes as multiples of the model's own (what it was trained at).
#: Around the model's own size colours are reliable; far above it (2048 and more) faces can turn
#: blue-purple with yellow blotches, so the choice stops at twice the model's size.
DETAIL_CHOICES = (
    (DETAIL_STANDARD, "Standard (recommended)", 1.0),
    ("more", "More (1.5x, slower)", 1.5),
    ("most", "Most (2x, slower; colours may drift)", 2.0),
)
#: The largest exact render size the dialog offers (chromatize accepts more; nobody should).
DIALOG_RENDER_SIZE_MAX = 1024
DETAIL_FIELD = {
    "name": DETAIL, "kind": "choice", "label": "Detail",
    "help": "How closely the model looks at the photo. Standard uses the size the model was "
            "trained at (%s) and gives the most reliable colours; More and Most look closer "
            "(slower) and can bring out small things but may also give odd colours. "
            "Ignored when 'Exact render size' is set.",
    "default": DETAIL_STANDARD, "minimum": None, "maximum": None, "hint": "",
    "choices": [(value, label) for value, label, _ in DETAIL_CHOICES],
}
#: The dialog's controls, in order: chromatize settings (described by the installed schema),
#: the detail choice and the output.
HINTS_LAYER = "hints_layer"
HIDE_HINTS = "hide_hints"
#: The plug-in's own controls for colour hints (a layer chooser and a checkbox).
HINTS_FIELDS = (
    {"name": HINTS_LAYER, "kind": "layer", "label": "Hints layer",
     "help": "Optional: a layer with colour hints. Paint dots with any brush and color on a "
             "transparent layer (an RGB image: Image > Mode > RGB first for a grayscale "
             "one), then choose it here: the colorized photo takes those colors where you "
             "painted, with its own lightness. None = no hints. Only models that accept "
             "hints use it (%s).",
     "default": None, "minimum": None, "maximum": None, "hint": "", "choices": []},
    {"name": HIDE_HINTS, "kind": "bool", "label": "Hide the hints layer afterwards",
     "help": "Hide the hints layer in the result (it is never changed; off by default).",
     "default": False, "minimum": None, "maximum": None, "hint": "", "choices": []},
)
DIALOG_SETTINGS = ("model", HINTS_LAYER, HIDE_HINTS, "weights", "temperature", "saturation",
                   DETAIL, "render_size", "device", OUTPUT, "allow_download")
#: The dialog's own controls (not chromatize settings).
PLUGIN_FIELDS = (OUTPUT, DETAIL, HINTS_LAYER, HIDE_HINTS)
#: The plug-in's own words for chromatize's settings (label, tooltip): plain words, GIMP's
#: terms, the defaults said. ``%(defaults)s`` is replaced by the models' own values.
GIMP_WORDING = {
    "model": ("Model", "Which colorization model to use. Models whose weights are not on this "
              "computer yet are marked in the list: tick 'Download weights if needed' to fetch "
              "them once, or choose a 'Weights file'."),
    "weights": ("Weights file", "A weights file to use instead of the model's own, for "
                "example the official ECCV16 file you downloaded yourself. Leave it empty to "
                "use the model's own weights."),
    "temperature": ("Color boldness", "How bold the colors are: lower values pick the most "
                    "likely color more decisively (more vivid), higher values blend the "
                    "possible colors (more muted). 0 = the model's own value "
                    "(%(temperature)s)."),
    "saturation": ("Saturation", "Color strength of the result: 0 = gray, 1 = the model's "
                   "colors (default), above 1 = stronger."),
    "render_size": ("Exact render size (pixels)", "For experts: the size in pixels the photo "
                    "is shrunk to for the model (the result is always full size). 0 = use "
                    "'Detail' (default; the model's own size is %(render_size)s). Sizes far "
                    "above twice the model's own usually give wrong colors."),
    "device": ("Device", "Where the computation runs: auto (default) uses a graphics card "
               "when chromatize can, otherwise the processor (cpu)."),
    "allow_download": ("Download weights if needed", "Let chromatize download a model's "
                       "official weights once when they are not on this computer yet (they "
                       "are kept for next time). Off by default."),
}
LAYER_SUFFIX = " (colorized)"
MODEL_MISSING_HINT = ("In the Colorize (AI) dialog you can choose another 'Model' or a "
                      "'Weights file'.")
#: Share of the progress bar the worker's part takes; the rest is writing back into GIMP.
WORKER_SHARE = 0.95
WRITING_BACK = "Writing back"
#: How the model list marks a model's availability.
AVAILABILITY_NOTES = {"ready": "", "download": "not downloaded yet",
                      "missing": "weights missing"}
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
            isinstance(schema.get(name), dict) for name in DIALOG_SETTINGS
            if name not in PLUGIN_FIELDS):
        raise PluginError(NOT_INSTALLED, kind="not_installed")
    return schema


def _default_stand_in(setting):
    """What the dialog shows for a setting whose default is "the model's": 0 or an empty text."""
    return "" if setting["kind"] in _TEXT_KINDS else 0


def installed_models(schema):
    """The models the installer recorded (name, description, status, weights_files,
    default_temperature, default_input_size); [] for an older installation."""
    models = schema.get("model", {}).get("models")
    return [entry for entry in models or () if isinstance(entry, dict) and "name" in entry]


def model_availability(schema, exists=os.path.isfile, visible=os.path.isdir):
    """``{model: "ready" | "download" | "missing"}``: whether each model's weights are on this
    computer now (one of its recorded weights files exists), can be downloaded, or neither.
    Weights shipped inside chromatize are always there. Where the plug-in cannot see the
    folders at all (a sandboxed GIMP: Flatpak, a chroot) the status at install time counts."""
    availability = {}
    for entry in installed_models(schema):
        files = entry.get("weights_files") or ()
        status = entry.get("status")
        seen = [path for path in files if visible(os.path.dirname(path))]
        if status == "shipped" or any(exists(path) for path in seen) or (
                not seen and status == "cached"):
            availability[entry["name"]] = "ready"
        elif entry.get("downloadable") or status == "downloadable":
            availability[entry["name"]] = "download"
        else:
            availability[entry["name"]] = "missing"
    return availability


def hint_models(schema):
    """The names of the installed models that accept colour hints (``accepts_hints`` as the
    installer recorded it; an older installation records none)."""
    return [entry["name"] for entry in installed_models(schema) if entry.get("accepts_hints")]


def _hints_fields(schema):
    fields = [dict(field) for field in HINTS_FIELDS]
    models = hint_models(schema)
    fields[0]["help"] = fields[0]["help"] % (
        ", ".join(models) + (" does" if len(models) == 1 else " do") if models
        else "none of the installed models does")
    return fields


def _choice_label(value, note):
    return "%s (%s)" % (value, note) if note else value


def _defaults_text(schema, key):
    """The models' own values of ``key`` in words: "224 for mobile, 256 for eccv16"."""
    parts = []
    for entry in installed_models(schema):
        value = entry.get(key)
        if value is not None:
            parts.append("%s for %s" % (("%g" % value) if isinstance(value, float) else value,
                                        entry["name"]))
    return ", ".join(parts) or "the model's own"


def _field(setting, schema, availability):
    name = setting["name"]
    kind = "text" if setting["kind"] in _TEXT_KINDS else setting["kind"]
    if setting["kind"] == "path":
        kind = "file"
    modelled = setting.get("default") is None  # the default is the model's own value
    hint = ""
    if modelled and setting.get("default_text"):
        hint = "%s: %s" % ("empty" if kind in ("text", "file") else "0",
                           setting["default_text"])
    label, help_text = GIMP_WORDING.get(name, (setting["label"], setting["help"]))
    help_text = help_text % {"temperature": _defaults_text(schema, "default_temperature"),
                             "render_size": _defaults_text(schema, "default_input_size")}
    choices = [(value, value) for value in setting.get("choices") or ()]
    if name == "model":
        choices = [(value, _choice_label(value, AVAILABILITY_NOTES.get(
            availability.get(value, "ready"), ""))) for value in setting.get("choices") or ()]
        labels = setting.get("choice_labels") or {}
        if labels:  # a model's description is too long for a menu entry: it goes in the tooltip
            help_text += " " + "; ".join("%s: %s" % (value, labels.get(value, value))
                                         for value in setting.get("choices") or ())
    maximum = setting.get("maximum") if setting.get("maximum") is not None \
        else setting.get("slider_maximum")
    if name == "render_size" and maximum is not None:
        maximum = min(maximum, DIALOG_RENDER_SIZE_MAX)
    return {
        "name": name, "kind": kind, "label": label, "help": help_text, "hint": hint,
        "default": _default_stand_in(setting) if modelled else setting["default"],
        "minimum": 0 if modelled and kind in _NUMBER_KINDS else setting.get("minimum"),
        "maximum": maximum, "choices": choices,
    }


def _detail_field(schema):
    field = dict(DETAIL_FIELD)
    field["help"] = field["help"] % _defaults_text(schema, "default_input_size")
    return field


def dialog_fields(schema, availability=None, hints=True):
    """The dialog's controls in order, as dicts: ``name`` (the setting), ``kind`` ("choice",
    "text", "file", "float", "int", "bool" or "layer"), ``label``, ``help``, ``hint`` (what 0
    or an empty text means, or ""), ``default``, ``minimum``, ``maximum`` and ``choices``
    ((value, label) pairs; the model's labels say when its weights are not here, see
    :func:`model_availability`, computed now unless ``availability`` is given). ``hints=False``
    leaves out the hints controls (for an editor variant without them).
    """
    if availability is None:
        availability = model_availability(schema)
    hint_fields = dict((field["name"], field) for field in _hints_fields(schema))
    fields = []
    for name in DIALOG_SETTINGS:
        if name in hint_fields:
            if hints:
                fields.append(hint_fields[name])
        elif name == OUTPUT:
            fields.append(OUTPUT_FIELD)
        elif name == DETAIL:
            fields.append(_detail_field(schema))
        else:
            fields.append(_field(schema[name], schema, availability))
    return fields


#: Mnemonics of GIMP's dialog buttons (_Help, _Reset, _Cancel, _OK, _Save Settings, _Load
#: Saved Settings), which the settings' labels must not take (GTK then needs two Alt+letter
#: presses and GIMP warns each time the dialog opens).
RESERVED_MNEMONICS = frozenset("hrcosl")


def mnemonic_labels(labels, reserved=RESERVED_MNEMONICS):
    """``labels`` with "_" before a letter no other label (nor a button) uses: the first free
    initial of a word, else the first free letter; a label without a free letter stays bare."""
    used = set(reserved)
    marked = []
    for label in labels:
        starts = [i for i, char in enumerate(label)
                  if char.isalpha() and (i == 0 or label[i - 1] in " (")]
        rest = [i for i, char in enumerate(label) if char.isalpha() and i not in starts]
        for index in starts + rest:
            if label[index].lower() not in used:
                used.add(label[index].lower())
                label = label[:index] + "_" + label[index:]
                break
        marked.append(label)
    return marked


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
    if value is not None and not isinstance(value, (str, type(u""), int, float)):
        value = _file_path(value)
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


def _file_path(value):
    """A file chooser's value (a GFile, or None) as a path text ("" for none)."""
    get_path = getattr(value, "get_path", None)
    path = get_path() if get_path is not None else value
    return path or ""


def _detail_size(schema, detail, model):
    """The render size the "Detail" choice means for ``model`` (None: the model's own)."""
    factors = dict((value, factor) for value, _, factor in DETAIL_CHOICES)
    if detail not in factors:
        raise PluginError("Unknown detail %r; choose %s." % (
            detail, ", ".join(value for value, _, _ in DETAIL_CHOICES)))
    if factors[detail] == 1.0:
        return None
    sizes = dict((entry["name"], entry.get("default_input_size"))
                 for entry in installed_models(schema))
    size = sizes.get(model or schema.get("model", {}).get("default"))
    return int(round(float(size or 224) * factors[detail]))


def make_settings(schema, **values):
    """Turn dialog values (by setting name, plus ``output`` and ``detail``) into flow settings:
    ``{"output": ..., "worker": {setting: JSON value}, "hints_layer": handle or None,
    "hide_hints": bool}``; settings not given are left to the worker's defaults. A "Detail" other than standard sets the render size unless an exact
    render size is given."""
    output = values.pop(OUTPUT, OUTPUT_NEW_LAYER)
    detail = values.pop(DETAIL, DETAIL_STANDARD)
    hints_layer = values.pop(HINTS_LAYER, None)
    hide_hints = bool(values.pop(HIDE_HINTS, False))
    if output not in OUTPUT_CHOICES:
        raise PluginError("Unknown output %r; choose %s." % (output, " or ".join(OUTPUT_CHOICES)))
    worker = {}
    for name, value in values.items():
        setting = schema.get(name)
        if not isinstance(setting, dict):
            raise PluginError("Unknown setting %r." % (name,))
        worker[name] = worker_value(setting, value)
    if worker.get("render_size") is None:
        size = _detail_size(schema, detail, worker.get("model"))
        if size is not None:
            worker["render_size"] = size
    if hints_layer is not None:
        model = worker.get("model") or schema.get("model", {}).get("default")
        known = [entry["name"] for entry in installed_models(schema)
                 if "accepts_hints" in entry]
        if model in known and model not in hint_models(schema):
            raise PluginError(hints_refused(model, hint_models(schema)), kind="bad_hints")
    return {"output": output, "worker": worker, HINTS_LAYER: hints_layer,
            HIDE_HINTS: hide_hints and hints_layer is not None}


def explain_failure(error, settings):
    """The message for a :class:`WorkerError`, with advice in the dialog's terms: what to tick
    or choose, never a command-line flag; a failed download does not say to allow downloads."""
    message = error.message.rstrip()
    if error.kind != "model_missing":
        return message
    fields = getattr(error, "fields", None) or {}
    worker = settings.get("worker", {}) if isinstance(settings, dict) else {}
    model = fields.get("model") or worker.get("model") or "the model"
    allowed = fields.get("allow_download", worker.get("allow_download"))
    status = fields.get("model_status")
    if fields.get("weights_given", bool(worker.get("weights"))):
        return (message + "\n\nChoose another file in 'Weights file', or clear it to use the "
                "model's own weights.")
    if status == "downloadable" and not allowed:
        return ("The model '%s' is not on this computer yet. Tick 'Download weights if needed' "
                "to download it once (it is kept for next time), choose another 'Model', or "
                "choose a downloaded file in 'Weights file'.\n\n(%s)" % (model, message))
    if status == "downloadable" and allowed:
        return ("Downloading the model '%s' failed: %s\n\nCheck the internet connection and "
                "try again, or choose another 'Model' or a 'Weights file'." % (model, message))
    return message + "\n\n" + MODEL_MISSING_HINT


#: The preview's longest side in pixels (a small rendering: one quick worker run).
PREVIEW_SIZE = 256


def preview_geometry(rect, limit=PREVIEW_SIZE):
    """``(scale, x, y, width, height)``: ``rect`` = (x, y, w, h) scaled down (never up) so its
    longest side is at most ``limit``, in the scaled image's pixel coordinates."""
    x, y, width, height = rect
    scale = min(1.0, float(limit) / max(width, height, 1))
    return (scale, int(x * scale), int(y * scale), max(1, int(round(width * scale))),
            max(1, int(round(height * scale))))


def preview_hints(data, width, geometry):
    """The preview's hint image (8-bit RGBA ``bytes`` of the preview's size) made from the hint
    image ``data`` of the whole layer (``width`` pixels wide, :meth:`Host.hint_pixels`): every
    painted pixel inside the previewed part lands on the preview pixel it falls in, so that a
    dot smaller than a preview pixel still counts; None when no hint falls inside.
    ``geometry`` is :func:`preview_geometry`'s answer."""
    scale, left, top, out_width, out_height = geometry
    out = bytearray(out_width * out_height * 4)
    found = False
    for match in re.finditer(b"[^\x00]", data[3::4]):  # the painted pixels only
        index = match.start()
        x = int((index % width) * scale) - left
        y = int((index // width) * scale) - top
        if 0 <= x < out_width and 0 <= y < out_height:
            at = (y * out_width + x) * 4
            out[at:at + 4] = data[index * 4:index * 4 + 4]
            found = True
    return bytes(out) if found else None


def preview_settings(settings):
    """The worker settings of a preview: the dialog's, with the device left as chosen; the
    output does not matter for a rendering in the dialog."""
    return dict(settings["worker"])


def hints_refused(model, models):
    """Why a hints layer cannot be used with ``model``, in the dialog's words."""
    others = " (%s)" % ", ".join(models) if models else ""
    return ("The model '%s' does not accept colour hints: choose a model that does%s in "
            "'Model', or set 'Hints layer' to none." % (model, others))


#: The sample type of the hint image sent to the worker (8 bits say a colour well enough).
HINTS_DTYPE = "uint8"


def check_hints_layer(host, hints_layer, drawables):
    """Refuse a hints layer that cannot work, before anything happens: not a pixel layer, one
    of the layers to colorize, without transparency, or in a grayscale image (whose layers
    cannot hold colours)."""
    name = host.drawable_name(hints_layer)
    if host.drawable_kind(hints_layer) != KIND_LAYER:
        raise PluginError("The hints layer \"%s\" is not a pixel layer: paint the hints on a "
                          "normal transparent layer." % name, kind="bad_hints")
    if any(host.drawable_id(drawable) == host.drawable_id(hints_layer)
           for drawable in drawables):
        raise PluginError("\"%s\" is the hints layer and also selected for colorizing: select "
                          "only the photo's layer(s), or choose another 'Hints layer'." % name,
                          kind="bad_hints")
    if host.image_mode() == MODE_GRAY:
        raise PluginError("This is a grayscale image, so the hints layer \"%s\" cannot hold "
                          "colors: convert the image with Image > Mode > RGB, paint the hints "
                          "in color, then run Colorize (AI) again." % name, kind="bad_hints")
    if not host.has_alpha(hints_layer):
        raise PluginError("The hints layer \"%s\" has no transparency, so every pixel of it "
                          "would be a hint: paint the hints on a transparent layer (Layer > "
                          "New Layer, fill with Transparency)." % name, kind="bad_hints")


def read_hints(host, hints_layer, jobs):
    """The hint image of each job's drawable: ``(bytes, 4, HINTS_DTYPE)`` in that drawable's
    coordinates, or None where no hint pixel lies over it. Raises when no hint lies over any."""
    blocks = []
    for drawable, _ in jobs:
        data = host.hint_pixels(hints_layer, drawable)
        blocks.append((data, 4, HINTS_DTYPE) if data[3::4].strip(b"\0") else None)
    if not any(blocks):
        raise PluginError("The hints layer \"%s\" has no painted pixels over the layer(s) "
                          "being colorized: paint dots of color on it where you want those "
                          "colors (or set 'Hints layer' to none)."
                          % host.drawable_name(hints_layer), kind="bad_hints")
    return blocks


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
    hints_layer = settings.get(HINTS_LAYER)
    if hints_layer is not None:
        check_hints_layer(host, hints_layer, drawables)
    jobs = []
    for drawable in drawables:
        rect = host.selection_bounds(drawable)
        if rect is not None and rect[2] > 0 and rect[3] > 0:
            jobs.append((drawable, rect))
    if not jobs:
        raise PluginError("The selection does not touch the selected layer(s); nothing to "
                          "colorize.", kind="bad_input")

    hint_blocks = read_hints(host, hints_layer, jobs) if hints_layer is not None else \
        [None] * len(jobs)
    itemsize = SAMPLE_SIZES[host.sample_dtype]
    host.progress_start(PROCEDURE_LABEL + "…")
    try:
        results = []
        count = float(len(jobs))
        for index, (drawable, rect) in enumerate(jobs):
            width, height = host.drawable_size(drawable)
            pixels, channels = host.read_pixels(drawable)

            def report(fraction, index=index):
                host.progress_update(min(1.0, (index + WORKER_SHARE * fraction) / count))

            def stage(text, index=index):
                prefix = "Layer %d of %d: " % (index + 1, len(jobs)) if len(jobs) > 1 else ""
                host.progress_set_text("%s: %s%s…" % (PROCEDURE_LABEL, prefix, text))

            try:
                data, out_channels = client.colorize(
                    pixels, width, height, channels, host.sample_dtype, settings["worker"],
                    progress=report, stage=stage, hints=hint_blocks[index])
            except WorkerError as exc:
                raise PluginError(_with_layer(explain_failure(exc, settings), host, drawable,
                                              len(jobs)), kind=exc.kind)
            del pixels
            hint_blocks[index] = None
            results.append((drawable, rect,
                            crop_rows(data, width, out_channels, itemsize, rect), out_channels))
            del data

        host.progress_set_text("%s: %s…" % (PROCEDURE_LABEL, WRITING_BACK))
        host.undo_group_start()
        try:
            if host.image_mode() != MODE_RGB:
                host.convert_to_rgb()
            written = 0
            for drawable, rect, block, out_channels in results:
                target = drawable
                if settings["output"] == OUTPUT_NEW_LAYER:
                    target = host.add_layer_above(
                        drawable, host.drawable_name(drawable) + LAYER_SUFFIX)
                host.write_pixels(target, rect, block, out_channels)
                written += 1
                host.progress_update(WORKER_SHARE + (1.0 - WORKER_SHARE) * written / count)
            if hints_layer is not None and settings.get(HIDE_HINTS):
                host.set_visible(hints_layer, False)
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
