#!/usr/bin/env python2
# -*- coding: utf-8 -*-
"""chromatize: Colors > Colorize (AI)... for GIMP 2.10 (Python-Fu / gimpfu, Python 2.7).

Installed by ``chromatize gimp install --gimp-version 2.10`` as
``plug-ins/chromatize-colorize/chromatize-colorize.py`` with its helper modules and
``chromatize-worker.json``. The colorization runs in ``python -m chromatize.worker`` started
with the Python 3 environment recorded in that file; this side needs only the standard library.
The dialog's controls (defaults, labels, ranges, choices) are chromatize's settings as that file
describes them; gimpfu builds the dialog and remembers the last values by itself.
"""

from __future__ import absolute_import, division, print_function

import os
import sys
import traceback

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import chromatize_client  # noqa: E402
import chromatize_flow  # noqa: E402
from chromatize_shim import PluginError  # noqa: E402
from gimpfu import (  # noqa: E402
    PF_DRAWABLE,
    PF_FILENAME,
    PF_IMAGE,
    PF_OPTION,
    PF_SPINNER,
    PF_STRING,
    PF_TOGGLE,
    gimp,
    main,
    register,
)

PROCEDURE_NAME = "python-fu-chromatize-colorize"
_CONTROLS = {"choice": PF_OPTION, "text": PF_STRING, "file": PF_FILENAME, "float": PF_SPINNER,
             "int": PF_SPINNER, "bool": PF_TOGGLE}


def _installed():
    """(schema, dialog fields, None) from the installer's config, or (None, [], the error)
    when the plug-in was not installed by ``chromatize gimp install``."""
    try:
        schema = chromatize_flow.settings_schema(chromatize_client.load_config(_HERE))
    except (PluginError, chromatize_client.WorkerError) as exc:
        return None, [], exc
    # no hints layer in GIMP 2.10's variant (see chromatize_flow.HINTS_FIELDS)
    return schema, chromatize_flow.dialog_fields(schema, hints=False), None


SCHEMA, FIELDS, NOT_INSTALLED = _installed()


def _param(field):
    """gimpfu's parameter tuple for one of the flow's dialog fields."""
    kind, name = field["kind"], field["name"]
    label = field["label"] + (" (%s)" % field["hint"] if field["hint"] else "")
    if kind == "choice":
        values = [value for value, _ in field["choices"]]
        return (PF_OPTION, name, label, values.index(field["default"]),
                [text for _, text in field["choices"]])
    if kind == "float":
        return (PF_SPINNER, name, label, float(field["default"]),
                (float(field["minimum"]), float(field["maximum"]), 0.01))
    if kind == "int":
        step = 16 if field["maximum"] >= 256 else 1
        return (PF_SPINNER, name, label, int(field["default"]),
                (int(field["minimum"]), int(field["maximum"]), step))
    return (_CONTROLS[kind], name, label, field["default"])


def _value(field, raw):
    """A setting's value from what gimpfu passes (option arguments arrive as indices)."""
    if field["kind"] == "choice":
        return field["choices"][int(raw)][0]
    return raw


def colorize(image, drawable, *values):
    """The registered function: the dialog's values arrive in FIELDS' order."""
    # GIMP ends a plug-in with SIGKILL to its process group when it has its own: the worker too.
    chromatize_client.own_process_group()
    try:
        if NOT_INSTALLED is not None:
            raise NOT_INSTALLED
        settings = chromatize_flow.make_settings(SCHEMA, **dict(
            (field["name"], _value(field, raw)) for field, raw in zip(FIELDS, values)))
        client = chromatize_client.client_from_config(chromatize_client.load_config(_HERE))
        from chromatize_shim_gimpfu import GimpfuHost

        chromatize_flow.colorize_drawables(GimpfuHost(image), [drawable], settings, client)
    except (PluginError, chromatize_client.WorkerError) as exc:
        gimp.message("Colorize (AI): " + str(exc))
    except Exception as exc:  # show something useful instead of a bare traceback dialog
        traceback.print_exc()
        gimp.message("Colorize (AI) failed unexpectedly: %s: %s" % (type(exc).__name__, exc))


register(
    PROCEDURE_NAME,
    "Colorize black-and-white photos with a neural network (chromatize)",
    "Predicts plausible colors for the active layer and writes them into a new layer above it "
    "(or in place). Lightness and alpha are kept; the selection limits and blends the change; "
    "grayscale and indexed images are converted to RGB in the same undo step. The computation "
    "runs in chromatize's own Python (`chromatize gimp install --gimp-version 2.10` records it). "
    "GIMP 2.10 passes pixels to Python-Fu in 8 bits per channel.",
    "chromatize developers",
    "chromatize developers (BSD-3-Clause)",
    "2026",
    "Colorize (AI)...",
    "RGB*, GRAY*, INDEXED*",
    [
        (PF_IMAGE, "image", "Input image", None),
        (PF_DRAWABLE, "drawable", "Layer to colorize", None),
    ] + [_param(field) for field in FIELDS],
    [],
    colorize,
    menu="<Image>/Colors",
)

main()
