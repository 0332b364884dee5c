"""Scenarios run INSIDE GIMP 3 (python-fu-eval) by tests/test_gimp_plugin.py; not a test module.

Executed with ``exec`` by GIMP's own Python (3.13 in the Debian chroot, no chromatize, no
numpy needed). It reads ``plan.json`` from the work folder (``CHROMATIZE_GIMP_WORK`` global set
by the caller), runs every scenario through the real PDB procedure
``plug-in-chromatize-colorize`` and writes ``results.json`` plus raw "R'G'B'A float" dumps of
the layers (``<scenario>-<n>.f32``) for the host-side test to check with numpy.
"""

import json
import os
import traceback

from gi.repository import Gegl, Gimp, Gio

PROC = "plug-in-chromatize-colorize"
WORK = CHROMATIZE_GIMP_WORK  # noqa: F821  (defined by the -b code before exec)
with open(os.path.join(WORK, "plan.json")) as _handle:
    PLAN = json.load(_handle)
CONFIG_PATH = PLAN["worker_config"]
#: Only these scenarios (all when the plan names none): for quick runs while developing.
ONLY = set(PLAN.get("only") or ())
results = {}


def load(name):
    return Gimp.file_load(Gimp.RunMode.NONINTERACTIVE,
                          Gio.File.new_for_path(os.path.join(WORK, name)))


def layer_state(layer):
    """A layer's pixels (raw "R'G'B'A float" bytes, hashed), offsets and visibility."""
    import hashlib

    width, height = layer.get_width(), layer.get_height()
    data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, width, height), 1.0,
                                  "R'G'B'A float", Gegl.AbyssPolicy.CLAMP)
    ok, x, y = layer.get_offsets()
    return {"sha256": hashlib.sha256(bytes(data)).hexdigest(), "offsets": [x, y],
            "size": [width, height], "visible": bool(layer.get_visible()),
            "name": layer.get_name()}


def dump(scenario, index, layer):
    width, height = layer.get_width(), layer.get_height()
    data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, width, height), 1.0,
                                  "R'G'B'A float", Gegl.AbyssPolicy.CLAMP)
    path = os.path.join(WORK, f"{scenario}-{index}.f32")
    with open(path, "wb") as handle:
        handle.write(bytes(data))
    ok, x, y = layer.get_offsets()
    return {"file": path, "width": width, "height": height, "offsets": [x, y],
            "name": layer.get_name(), "has_alpha": layer.has_alpha()}


def describe(scenario, image):
    layers = image.get_layers()
    return {"base_type": image.get_base_type().value_nick,
            "precision": image.get_precision().value_nick,
            "layers": [dump(scenario, i, layer) for i, layer in enumerate(layers)]}


def run(image, drawables, **options):
    proc = Gimp.get_pdb().lookup_procedure(PROC)
    if proc is None:
        raise RuntimeError("the plug-in did not register " + PROC)
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", drawables)
    config.set_property("model", options.pop("model", "eccv16"))
    weights = options.pop("weights", PLAN["weights"])
    config.set_property("weights", Gio.File.new_for_path(weights) if weights else None)
    config.set_property("render-size", options.pop("render-size", 32))
    config.set_property("device", "cpu")
    for key, value in options.items():
        config.set_property(key, value)
    result = proc.run(config)
    status = result.index(0)
    error = Gimp.get_pdb().get_last_error() if status != Gimp.PDBStatusType.SUCCESS else ""
    return {"status": status.value_nick, "error": error}


def run_mobile(image, drawables, **options):
    """:func:`run` with ``mobile`` (accepts hints; seeded random weights of this checkout)."""
    return run(image, drawables, model="mobile", weights=PLAN["mobile_weights"], **options)


def scenario(function):
    name = function.__name__
    if ONLY and name not in ONLY:
        return function
    try:
        results[name] = function(name)
    except Exception:
        results[name] = {"exception": traceback.format_exc()}
    return function


def with_worker_command(command, body):
    with open(CONFIG_PATH) as handle:
        original = handle.read()
    config = json.loads(original)
    config["command"] = command
    config["startup_timeout_seconds"] = 20
    with open(CONFIG_PATH, "w") as handle:
        json.dump(config, handle)
    try:
        return body()
    finally:
        with open(CONFIG_PATH, "w") as handle:
            handle.write(original)


@scenario
def registration(name):
    proc = Gimp.get_pdb().lookup_procedure(PROC)
    config = proc.create_config()
    defaults = {key: config.get_property(key) for key in (
        "model", "weights", "temperature", "saturation", "detail", "render-size", "device",
        "output", "allow-download", "hints-layer", "hide-hints")}
    defaults["weights"] = defaults["weights"].get_path() if defaults["weights"] else None
    help_id = proc.get_help_id() if hasattr(proc, "get_help_id") else None
    return {"label": proc.get_menu_label(), "menu_paths": list(proc.get_menu_paths()),
            "image_types": proc.get_image_types(),
            "arguments": [spec.name for spec in proc.get_arguments()], "defaults": defaults,
            "help_id": help_id,
            "nicks": {spec.name: spec.get_nick() for spec in proc.get_arguments()}}


@scenario
def gray_new_layer(name):
    image = load("gray.png")
    before = describe(name + "-before", image)
    outcome = run(image, image.get_layers())
    return {"before": before, "run": outcome, "after": describe(name, image)}


@scenario
def rgb_in_place(name):
    image = load("rgb.png")
    outcome = run(image, image.get_layers(), output="in-place")
    return {"run": outcome, "after": describe(name, image)}


@scenario
def gray16_new_layer(name):
    image = load("gray16.png")
    before = describe(name + "-before", image)
    outcome = run(image, image.get_layers())
    return {"before": before, "run": outcome, "after": describe(name, image)}


@scenario
def offset_alpha_layer(name):
    image = load("rgb.png")
    layer = Gimp.Layer.new(image, "patch", 20, 16, Gimp.ImageType.RGBA_IMAGE, 100.0,
                           Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    layer.set_offsets(10, 8)
    with open(os.path.join(WORK, "patch-ya.f32"), "rb") as handle:
        layer.get_buffer().set(Gegl.Rectangle.new(0, 0, 20, 16), "Y'A float", handle.read())
    before = describe(name + "-before", image)
    outcome = run(image, [layer])
    return {"before": before, "run": outcome, "after": describe(name, image)}


@scenario
def hard_selection_in_place(name):
    image = load("gray.png")
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 8, 8, 24, 16)
    outcome = run(image, image.get_layers(), output="in-place")
    return {"run": outcome, "after": describe(name, image)}


@scenario
def soft_selection_in_place(name):
    image = load("gray.png")
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 8, 8, 32, 24)
    Gimp.Selection.feather(image, 12.0)
    outcome = run(image, image.get_layers(), output="in-place")
    return {"run": outcome, "after": describe(name, image)}


@scenario
def two_layers_new_layers(name):
    image = load("gray.png")
    base = image.get_layers()[0]
    second = base.copy()
    second.set_name("second")
    image.insert_layer(second, None, 0)
    second.set_offsets(4, 2)
    outcome = run(image, [base, second])
    return {"run": outcome, "after": describe(name, image)}


@scenario
def indexed_new_layer(name):
    image = load("indexed.png")
    base_type = image.get_base_type().value_nick
    outcome = run(image, image.get_layers())
    return {"loaded_as": base_type, "run": outcome, "after": describe(name, image)}


@scenario
def group_refused(name):
    image = load("rgb.png")
    group = Gimp.GroupLayer.new(image, "folder")
    image.insert_layer(group, None, 0)
    outcome = run(image, [group])
    return {"run": outcome, "after": describe(name, image)}


@scenario
def channel_refused(name):
    image = load("rgb.png")
    channel = Gimp.Channel.new(image, "alpha-ish", image.get_width(), image.get_height(), 50.0,
                               Gegl.Color.new("red"))
    image.insert_channel(channel, None, 0)
    outcome = run(image, [channel])
    return {"run": outcome, "after": describe(name, image)}


@scenario
def layer_mask_refused(name):
    image = load("rgb.png")
    layer = image.get_layers()[0]
    layer.add_alpha()
    mask = layer.create_mask(Gimp.AddMaskType.WHITE)
    layer.add_mask(mask)
    outcome = run(image, [mask])
    return {"run": outcome, "after": describe(name, image)}


@scenario
def model_missing_leaves_image(name):
    image = load("gray.png")
    # The weights argument is a file GIMP checks exists; one that is not a weights file gets
    # as far as the worker, which refuses it.
    broken = os.path.join(WORK, "broken-weights.pth")
    with open(broken, "wb") as handle:
        handle.write(b"not a weights file")
    outcome = run(image, image.get_layers(), weights=broken)
    return {"run": outcome, "after": describe(name, image)}


@scenario
def worker_missing_leaves_image(name):
    image = load("gray.png")
    outcome = with_worker_command(["/nonexistent/python3", "-m", "chromatize.worker"],
                                  lambda: run(image, image.get_layers()))
    return {"run": outcome, "after": describe(name, image)}


@scenario
def worker_crash_leaves_image(name):
    image = load("gray.png")
    outcome = with_worker_command(["/bin/sh", "-c", "kill -9 $$"],
                                  lambda: run(image, image.get_layers(), output="in-place"))
    return {"run": outcome, "after": describe(name, image)}


#: The dots painted on the hints layer: image (x, y), side, sRGB colour.
HINT_DOTS = PLAN.get("hint_dots") or []
HINTS_OFFSETS = (12, 10)
HINTS_SIZE = (30, 24)


def add_hints_layer(image):
    """A transparent RGBA layer "hints" at HINTS_OFFSETS, on top, with HINT_DOTS painted."""
    width, height = HINTS_SIZE
    layer = Gimp.Layer.new(image, "hints", width, height, Gimp.ImageType.RGBA_IMAGE, 100.0,
                           Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    layer.set_offsets(*HINTS_OFFSETS)
    import struct

    pixels = [0.0] * (width * height * 4)
    for x, y, side, rgb in HINT_DOTS:
        for yy in range(y - side // 2, y - side // 2 + side):
            for xx in range(x - side // 2, x - side // 2 + side):
                lx, ly = xx - HINTS_OFFSETS[0], yy - HINTS_OFFSETS[1]
                at = (ly * width + lx) * 4
                pixels[at:at + 4] = [rgb[0], rgb[1], rgb[2], 1.0]
    layer.get_buffer().set(Gegl.Rectangle.new(0, 0, width, height), "R'G'B'A float",
                           struct.pack(f"<{len(pixels)}f", *pixels))
    return layer


def photo_layer(image):
    return [layer for layer in image.get_layers() if layer.get_name() != "hints"][0]


@scenario
def mobile_in_place(name):
    image = load("smooth-rgb.png")
    outcome = run_mobile(image, image.get_layers(), output="in-place")
    return {"run": outcome, "after": describe(name, image)}


@scenario
def hints_in_place(name):
    image = load("smooth-rgb.png")
    hints = add_hints_layer(image)
    before = layer_state(hints)
    outcome = run_mobile(image, [photo_layer(image)], output="in-place", **{"hints-layer": hints})
    return {"run": outcome, "hints_before": before, "hints_after": layer_state(hints),
            "after": describe(name, image)}


@scenario
def hints_hidden_new_layer(name):
    image = load("smooth-rgb.png")
    hints = add_hints_layer(image)
    before = layer_state(hints)
    outcome = run_mobile(image, [photo_layer(image)], **{"hints-layer": hints, "hide-hints": True})
    return {"run": outcome, "hints_before": before, "hints_after": layer_state(hints),
            "after": describe(name, image)}


@scenario
def hints_refused_for_eccv16(name):
    image = load("smooth-rgb.png")
    hints = add_hints_layer(image)
    before = layer_state(hints)
    outcome = run(image, [photo_layer(image)], output="in-place", **{"hints-layer": hints})
    return {"run": outcome, "hints_before": before, "hints_after": layer_state(hints),
            "after": describe(name, image)}


@scenario
def hints_layer_also_selected_refused(name):
    image = load("smooth-rgb.png")
    hints = add_hints_layer(image)
    outcome = run_mobile(image, image.get_layers(), **{"hints-layer": hints})
    return {"run": outcome, "after": describe(name, image)}


@scenario
def hints_read_for_the_preview(name):
    """The hints layer as the flow and the dialog's preview read it (the host's method)."""
    import sys

    sys.path.insert(0, os.path.dirname(CONFIG_PATH))
    from chromatize_shim_gimp3 import Gimp3Host

    image = load("smooth-rgb.png")
    hints = add_hints_layer(image)
    host = Gimp3Host(image)
    return {"full": list(host.hint_pixels(hints, photo_layer(image)))}


with open(os.path.join(WORK, "results.json"), "w") as _handle:
    json.dump(results, _handle, indent=1)
