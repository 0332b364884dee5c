#!/usr/bin/env python3
# -*- coding: utf-8 -*-
"""chromatize: Colors > Colorize (AI)… for GIMP 3.

Installed by ``chromatize gimp install`` as ``plug-ins/chromatize-colorize/chromatize-colorize.py``
together with its helper modules and ``chromatize-worker.json``. GIMP's Python needs neither
torch nor numpy: the pixels are colorized by ``python -m chromatize.worker`` running in the
Python environment recorded in that file.
"""

import os
import sys
import traceback

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GimpUi, GLib, GObject  # noqa: E402

import chromatize_client  # noqa: E402
import chromatize_flow  # noqa: E402
from chromatize_shim import PluginError  # noqa: E402
from chromatize_shim_gimp3 import Gimp3Host  # noqa: E402

PROCEDURE_NAME = "plug-in-chromatize-colorize"
_DEVICE_LABELS = {"auto": "Automatic (GPU if available)", "cpu": "CPU", "cuda": "NVIDIA CUDA",
                  "mps": "Apple MPS"}
_OUTPUT_LABELS = {chromatize_flow.OUTPUT_NEW_LAYER: "New layer above",
                  chromatize_flow.OUTPUT_IN_PLACE: "In place"}


def _model_entries():
    """(name, description) of the models, from the installer's config when there is one."""
    try:
        config = chromatize_client.load_config(_HERE)
    except chromatize_client.WorkerError:
        config = {}
    entries = []
    for entry in config.get("models") or []:
        if isinstance(entry, dict) and entry.get("name"):
            entries.append((str(entry["name"]), str(entry.get("description") or entry["name"])))
    names = [name for name, _ in entries]
    for name in chromatize_flow.MODEL_CHOICES:
        if name not in names:
            entries.append((name, name))
    return entries


def _choice(entries):
    choice = Gimp.Choice.new()
    for index, (nick, label) in enumerate(entries):
        choice.add(nick, index, label, "")
    return choice


def _error(procedure, status, message):
    return procedure.new_return_values(status, GLib.Error(message))


def run(procedure, run_mode, image, drawables, config, data):
    if run_mode == Gimp.RunMode.INTERACTIVE:
        GimpUi.init(PROCEDURE_NAME)
        dialog = GimpUi.ProcedureDialog.new(procedure, config, "Colorize (AI)")
        dialog.fill(None)
        accepted = dialog.run()
        dialog.destroy()
        if not accepted:
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())

    try:
        settings = chromatize_flow.make_settings(
            model=config.get_property("model"),
            weights=config.get_property("weights") or "",
            temperature=config.get_property("temperature"),
            saturation=config.get_property("saturation"),
            render_size=config.get_property("render-size"),
            device=config.get_property("device"),
            output=config.get_property("output"),
            allow_download=config.get_property("allow-download"),
        )
        client = chromatize_client.client_from_config(chromatize_client.load_config(_HERE))
        chromatize_flow.colorize_drawables(Gimp3Host(image), list(drawables), settings, client)
    except (PluginError, chromatize_client.WorkerError) as exc:
        return _error(procedure, Gimp.PDBStatusType.EXECUTION_ERROR, "Colorize (AI): " + str(exc))
    except Exception as exc:  # an uncaught exception would reach GIMP without any message
        traceback.print_exc()
        return _error(procedure, Gimp.PDBStatusType.EXECUTION_ERROR,
                      "Colorize (AI) failed unexpectedly: %s: %s" % (type(exc).__name__, exc))
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


class ChromatizeColorize(Gimp.PlugIn):
    def do_query_procedures(self):
        return [PROCEDURE_NAME]

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        Gegl.init(None)
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        procedure.set_image_types("*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE
                                       | Gimp.ProcedureSensitivityMask.DRAWABLES)
        procedure.set_menu_label("Colorize (_AI)…")
        procedure.add_menu_path("<Image>/Colors")
        procedure.set_documentation(
            "Colorize black-and-white photos with a neural network (chromatize)",
            "Predicts plausible colors for the selected layers and writes them into a new layer "
            "above each (or in place). Lightness, alpha and precision are kept; the selection "
            "limits and blends the change; grayscale and indexed images are converted to RGB "
            "in the same undo step. The computation runs in chromatize's own Python "
            "(`chromatize gimp install` records it).",
            name)
        procedure.set_attribution("chromatize developers", "chromatize developers (BSD-3-Clause)",
                                  "2026")
        flags = GObject.ParamFlags.READWRITE
        models = _model_entries()
        procedure.add_choice_argument("model", "_Model", "Colorization model", _choice(models),
                                      models[0][0], flags)
        # A path string, not a GFile: the worker may run outside GIMP's sandbox (Flatpak), where
        # GIMP could not check the file, and GIMP refuses OPEN files it cannot see.
        procedure.add_string_argument("weights", "_Weights file",
                                      "Optional path of a weights file for the model, as the "
                                      "worker's Python sees it (empty: the model's own)", "",
                                      flags)
        procedure.add_double_argument("temperature", "_Temperature",
                                      "Annealed-mean temperature; lower = more vivid, 0 = the "
                                      "model's default", 0.0, 2.0, 0.0, flags)
        procedure.add_double_argument("saturation", "_Saturation",
                                      "Scale of the predicted colors (0 = gray, 1 = as "
                                      "predicted)", 0.0, 2.0, 1.0, flags)
        procedure.add_int_argument("render-size", "_Render size",
                                   "Size (pixels) the network sees; 0 = the model's default",
                                   0, 4096, 0, flags)
        procedure.add_choice_argument(
            "device", "_Device", "Where to compute",
            _choice([(d, _DEVICE_LABELS[d]) for d in chromatize_flow.DEVICE_CHOICES]), "auto",
            flags)
        procedure.add_choice_argument(
            "output", "_Output", "Where the colors go",
            _choice([(o, _OUTPUT_LABELS[o]) for o in chromatize_flow.OUTPUT_CHOICES]),
            chromatize_flow.OUTPUT_NEW_LAYER, flags)
        procedure.add_boolean_argument("allow-download", "Download _missing model weights",
                                       "Allow downloading the model's weights if they are not "
                                       "on this computer yet", False, flags)
        return procedure


Gimp.main(ChromatizeColorize.__gtype__, sys.argv)
