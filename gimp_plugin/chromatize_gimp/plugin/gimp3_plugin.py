#!/usr/bin/env python3
# -*- coding: utf-8 -*-
"""chromatize: Colors > Colorize (AI)… for GIMP 3.

Installed by ``chromatize gimp install`` as ``plug-ins/chromatize-colorize/chromatize-colorize.py``
together with its helper modules and ``chromatize-worker.json``. GIMP's Python needs neither
torch nor numpy: the pixels are colorized by ``python -m chromatize.worker`` running in the
Python environment recorded in that file, and the dialog's controls (defaults, labels, tooltips,
ranges, choices) are chromatize's settings as that file describes them.
"""

import os
import sys
import threading
import traceback

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("GdkPixbuf", "2.0")
from gi.repository import Gegl, Gimp, GimpUi, Gio, GLib, GObject  # noqa: E402

import chromatize_client  # noqa: E402
import chromatize_flow  # noqa: E402
from chromatize_shim import PluginError  # noqa: E402
from chromatize_shim_gimp3 import Gimp3Host  # noqa: E402

PROCEDURE_NAME = "plug-in-chromatize-colorize"
HELP_DOMAIN = "org.chromatize.gimp"
HELP_FOLDER = "help"
_FLAGS = GObject.ParamFlags.READWRITE


def _installed_schema():
    """The settings schema from the installer's config (raises if the plug-in is not
    installed by ``chromatize gimp install``)."""
    return chromatize_flow.settings_schema(chromatize_client.load_config(_HERE))


def _argument(name):
    """GIMP's name of a setting's procedure argument (GIMP wants dashes)."""
    return name.replace("_", "-")


def _choice(entries):
    choice = Gimp.Choice.new()
    for index, (nick, label) in enumerate(entries):
        choice.add(nick, index, label, "")
    return choice


def _add_argument(procedure, field, label):
    """One procedure argument (and dialog control) from one of the flow's dialog fields;
    ``label`` carries its mnemonic."""
    name, kind, default = _argument(field["name"]), field["kind"], field["default"]
    help_text = field["help"]
    if kind == "choice":
        procedure.add_choice_argument(name, label, help_text, _choice(field["choices"]),
                                      default, _FLAGS)
    elif kind == "file":
        # A file chooser button (GIMP shows none for action ANY). GIMP checks that an OPEN
        # file exists where GIMP runs; under Flatpak the chooser goes through the document
        # portal, whose paths the host (where the worker runs) sees too.
        procedure.add_file_argument(name, label, help_text, Gimp.FileChooserAction.OPEN, True,
                                    None, _FLAGS)
    elif kind == "text":
        # A path string, not a GFile: the worker may run outside GIMP's sandbox (Flatpak),
        # where GIMP could not check the file, and GIMP refuses OPEN files it cannot see.
        procedure.add_string_argument(name, label, help_text, default, _FLAGS)
    elif kind == "float":
        procedure.add_double_argument(name, label, help_text, float(field["minimum"]),
                                      float(field["maximum"]), float(default), _FLAGS)
    elif kind == "int":
        procedure.add_int_argument(name, label, help_text, int(field["minimum"]),
                                   int(field["maximum"]), int(default), _FLAGS)
    elif kind == "bool":
        procedure.add_boolean_argument(name, label, help_text, bool(default), _FLAGS)
    elif kind == "layer":  # none allowed: no hints
        procedure.add_layer_argument(name, label, help_text, True, _FLAGS)
    else:
        raise PluginError("The installed settings describe an unknown kind of control %r; "
                          "run `chromatize gimp install` again." % (kind,))


def _add_arguments(procedure):
    """The dialog's controls from the installed schema; none when it is missing (then
    :func:`run` reports that the plug-in must be installed with ``chromatize gimp install``)."""
    try:
        fields = chromatize_flow.dialog_fields(_installed_schema())
    except (PluginError, chromatize_client.WorkerError):
        return
    labels = chromatize_flow.mnemonic_labels([field["label"] for field in fields])
    for field, label in zip(fields, labels):
        _add_argument(procedure, field, label)


def _error(procedure, status, message):
    return procedure.new_return_values(status, GLib.Error(message))


def _settings(config, schema):
    values = {}
    for field in chromatize_flow.dialog_fields(schema):
        values[field["name"]] = config.get_property(_argument(field["name"]))
    return chromatize_flow.make_settings(schema, **values)


class Preview(object):
    """A small colorized rendering of the first layer (its selected part) in the dialog, with
    the hints layer's hints, redone (after a short pause) whenever a setting changes. Each rendering is one worker run
    on a copy at most ``chromatize_flow.PREVIEW_SIZE`` pixels wide, in a thread; the dialog
    stays responsive and closing it kills a rendering still running."""

    DELAY_MS = 700

    def __init__(self, config, schema, worker_config, drawable):
        from gi.repository import Gtk

        self.config, self.schema, self.worker_config = config, schema, worker_config
        self.drawable = drawable
        self.image = Gtk.Image()
        self.label = Gtk.Label(label="Preview: starting…")
        self.label.set_line_wrap(True)
        self.label.set_max_width_chars(50)
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=4)
        box.pack_start(self.image, False, False, 0)
        box.pack_start(self.label, False, False, 0)
        self.widget = Gtk.Frame(label="Preview")
        self.widget.set_border_width(6)
        self.widget.add(box)
        self.client = None
        self.busy = False
        self.dirty = False
        self.closed = False
        self._timer = None
        self._handler = config.connect("notify", self._changed)
        self._source = self._read_source()
        self._hints = (None, None)  # (hints layer id, its hint image over the layer)

    def _read_source(self):
        rect = Gimp3Host(None).selection_bounds(self.drawable) or (
            0, 0, self.drawable.get_width(), self.drawable.get_height())
        scale, x, y, width, height = chromatize_flow.preview_geometry(rect)
        self._geometry = (scale, x, y, width, height)
        rgb = "R'G'B'A u8" if self.drawable.has_alpha() else "R'G'B' u8"
        data = self.drawable.get_buffer().get(Gegl.Rectangle.new(x, y, width, height), scale,
                                              rgb, Gegl.AbyssPolicy.CLAMP)
        return bytes(data), width, height, 4 if self.drawable.has_alpha() else 3

    def _read_hints(self, hints_layer):
        """The hints layer at the preview's scale over the preview's part of the layer, as
        ``(bytes, 4, "uint8")``, or None (no hints layer, or nothing painted there)."""
        if hints_layer is None or not hints_layer.has_alpha() or \
                hints_layer.get_id() == self.drawable.get_id():
            return None  # the flow says why when OK is pressed
        if self._hints[0] != hints_layer.get_id():  # read once per chosen layer
            self._hints = (hints_layer.get_id(),
                           Gimp3Host(None).hint_pixels(hints_layer, self.drawable))
        data = chromatize_flow.preview_hints(self._hints[1], self.drawable.get_width(),
                                             self._geometry)
        return None if data is None else (data, 4, chromatize_flow.HINTS_DTYPE)

    def start(self):
        self._schedule(10)

    def _changed(self, *args):
        if args and getattr(args[-1], "name", "") == "run-mode":
            return
        self._schedule(self.DELAY_MS)

    def _schedule(self, delay):
        if self._timer is not None:
            GLib.source_remove(self._timer)
        self._timer = GLib.timeout_add(delay, self._render)

    def _render(self):
        self._timer = None
        if self.closed:
            return False
        if self.busy:
            self.dirty = True
            return False
        try:
            chosen = _settings(self.config, self.schema)
            settings = chromatize_flow.preview_settings(chosen)
            hints = self._read_hints(chosen.get(chromatize_flow.HINTS_LAYER))
        except PluginError as exc:
            self.label.set_text("Preview: " + str(exc))
            return False
        self.busy, self.dirty = True, False
        self.label.set_text("Preview: colorizing…")
        self.client = chromatize_client.client_from_config(self.worker_config)
        thread = threading.Thread(target=self._work, args=(self.client, settings, hints))
        thread.daemon = True
        thread.start()
        return False

    def _work(self, client, settings, hints=None):
        data, width, height, channels = self._source
        try:
            result, out_channels = client.colorize(data, width, height, channels, "uint8",
                                                   settings, hints=hints)
            GLib.idle_add(self._show, result, width, height, out_channels, None)
        except chromatize_client.WorkerError as exc:
            GLib.idle_add(self._show, None, width, height, 0,
                          chromatize_flow.explain_failure(exc, {"worker": settings}))

    def _show(self, result, width, height, channels, failure):
        from gi.repository import GdkPixbuf

        self.busy = False
        if self.closed:
            return False
        if failure:
            self.label.set_text("Preview failed: " + failure)
        else:
            pixbuf = GdkPixbuf.Pixbuf.new_from_bytes(
                GLib.Bytes.new(result), GdkPixbuf.Colorspace.RGB, channels == 4, 8, width,
                height, width * channels)
            self.image.set_from_pixbuf(pixbuf)
            self.label.set_text("Preview of the colors with these settings")
        if self.dirty:
            self._schedule(10)
        return False

    def close(self):
        """Stop: no more renderings, and a running one's worker is killed."""
        self.closed = True
        if self._timer is not None:
            GLib.source_remove(self._timer)
            self._timer = None
        self.config.disconnect(self._handler)
        process = self.client.process if self.client is not None else None
        if process is not None and process.poll() is None:
            try:
                process.kill()
            except OSError:
                pass


def _value_array(strings):
    values = Gimp.ValueArray.new(len(strings))
    for text in strings:
        value = GObject.Value(GObject.TYPE_STRING)
        value.set_string(text)
        values.append(value)
    return values


def _grey_out_hints(dialog, schema):
    """The hints controls are greyed out while the chosen model does not accept hints (when
    the installation says which do)."""
    if schema is None or not any("accepts_hints" in entry
                                 for entry in chromatize_flow.installed_models(schema)):
        return
    models = chromatize_flow.hint_models(schema)
    try:
        for field in (chromatize_flow.HINTS_LAYER, chromatize_flow.HIDE_HINTS):
            # a new array each time: the dialog takes ownership of it
            dialog.set_sensitive_if_in(_argument(field), None, "model", _value_array(models),
                                       True)
    except Exception:  # greying out is a nicety; the flow refuses hints for such models
        traceback.print_exc()


def _show_dialog(procedure, config, failure, preview_source=None, schema=None):
    """Run the dialog (with the last failure's message on top); True when OK was pressed. The
    values stay in ``config``, so after a failure the user finds their choices again.
    ``preview_source`` = (schema, worker config, drawable) adds the live preview; with
    ``schema`` the hints controls follow the chosen model."""
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "Colorize (AI)")
    if failure:
        from gi.repository import Gtk

        label = Gtk.Label(label=failure)
        label.set_line_wrap(True)
        label.set_max_width_chars(60)
        label.set_xalign(0.0)
        label.set_selectable(True)
        frame = Gtk.Frame(label="The last try failed")
        frame.add(label)
        frame.set_border_width(6)
        label.set_margin_start(6)
        label.set_margin_end(6)
        label.set_margin_bottom(6)
        frame.show_all()
        box = dialog.get_content_area()
        box.pack_start(frame, False, False, 0)
        box.reorder_child(frame, 0)
    dialog.fill(None)
    _grey_out_hints(dialog, schema)
    preview = None
    if preview_source is not None:
        try:
            preview = Preview(config, *preview_source)
        except Exception:  # a preview must never keep the dialog from opening
            traceback.print_exc()
        else:
            box = dialog.get_content_area()
            box.pack_start(preview.widget, False, False, 0)
            preview.widget.show_all()
            preview.start()
    try:
        accepted = dialog.run()
    finally:
        if preview is not None:
            preview.close()
    dialog.destroy()
    return accepted


def _colorize(image, drawables, config, schema, worker_config):
    settings = _settings(config, schema)
    client = chromatize_client.client_from_config(worker_config)
    chromatize_flow.colorize_drawables(Gimp3Host(image), list(drawables), settings, client)


def run(procedure, run_mode, image, drawables, config, data):
    # GIMP's Cancel kills the plug-in's process group when it has its own: with the worker.
    chromatize_client.own_process_group()
    try:
        worker_config = chromatize_client.load_config(_HERE)
        schema = chromatize_flow.settings_schema(worker_config)
        if run_mode == Gimp.RunMode.INTERACTIVE:
            GimpUi.init(PROCEDURE_NAME)
            failure = None
            preview_source = None
            if drawables and drawables[0].is_layer() and not drawables[0].is_group():
                preview_source = (schema, worker_config, drawables[0])
            while True:  # after a failure the dialog comes back with the user's values
                if not _show_dialog(procedure, config, failure, preview_source, schema):
                    return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
                try:
                    _colorize(image, drawables, config, schema, worker_config)
                    break
                except (PluginError, chromatize_client.WorkerError) as exc:
                    if getattr(exc, "kind", "") in ("bad_input", "not_installed"):
                        raise  # nothing to change in the dialog would help
                    failure = str(exc)
        else:
            _colorize(image, drawables, config, schema, worker_config)
    except (PluginError, chromatize_client.WorkerError) as exc:
        return _error(procedure, Gimp.PDBStatusType.EXECUTION_ERROR, "Colorize (AI): " + str(exc))
    except Exception as exc:  # an uncaught exception would reach GIMP without any message
        traceback.print_exc()
        return _error(procedure, Gimp.PDBStatusType.EXECUTION_ERROR,
                      "Colorize (AI) failed unexpectedly: %s: %s" % (type(exc).__name__, exc))
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


class ChromatizeColorize(Gimp.PlugIn):
    def do_query_procedures(self):
        help_dir = os.path.join(_HERE, HELP_FOLDER)
        # help/<locale>/gimp-help.xml maps the procedure's help id to help/en/index.html
        if os.path.isfile(os.path.join(help_dir, "en", "gimp-help.xml")):
            self.set_help_domain(HELP_DOMAIN, Gio.File.new_for_path(help_dir))
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
            "in the same undo step. Optional colour hints: a 'Hints layer' whose painted "
            "(non-transparent) pixels give the colors there; it is never changed. The "
            "computation runs in chromatize's own Python (`chromatize gimp install` records "
            "it).",
            name)  # GIMP prefixes the plug-in's help domain (set_help_domain)
        procedure.set_attribution("chromatize developers", "chromatize developers (BSD-3-Clause)",
                                  "2026")
        _add_arguments(procedure)
        return procedure


Gimp.main(ChromatizeColorize.__gtype__, sys.argv)
