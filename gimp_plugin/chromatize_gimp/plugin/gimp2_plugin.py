#!/usr/bin/env python2
# -*- coding: utf-8 -*-
"""chromatize: Colors > Colorize (AI)... for GIMP 2.10 (Python-Fu / gimpfu, Python 2.7).

Installed by ``chromatize gimp install --gimp-version 2.10`` as
``plug-ins/chromatize-colorize/chromatize-colorize.py`` with its helper modules and
``chromatize-worker.json``. The colorization runs in ``python -m chromatize.worker`` started
with the Python 3 environment recorded in that file; this side needs only the standard library.
gimpfu builds the dialog and remembers the last values by itself.
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
DEVICE_LABELS = ["Automatic (GPU if available)", "CPU", "NVIDIA CUDA", "Apple MPS"]
OUTPUT_LABELS = ["New layer above", "In place"]


def model_names():
    """Model names for the option menu: the installer's list, then any built-in ones missing."""
    try:
        config = chromatize_client.load_config(_HERE)
    except chromatize_client.WorkerError:
        config = {}
    names = []
    for entry in config.get("models") or []:
        if isinstance(entry, dict) and entry.get("name"):
            names.append(str(entry["name"]))
    for name in chromatize_flow.MODEL_CHOICES:
        if name not in names:
            names.append(name)
    return names


MODELS = model_names()


def colorize(image, drawable, model, weights, temperature, saturation, render_size, device,
             output, allow_download):
    """The registered function; option arguments arrive as indices into their lists."""
    try:
        settings = chromatize_flow.make_settings(
            model=MODELS[int(model)],
            weights=weights,
            temperature=temperature,
            saturation=saturation,
            render_size=render_size,
            device=chromatize_flow.DEVICE_CHOICES[int(device)],
            output=chromatize_flow.OUTPUT_CHOICES[int(output)],
            allow_download=bool(allow_download),
        )
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
        (PF_OPTION, "model", "Model", 0, MODELS),
        (PF_STRING, "weights", "Weights file (empty: the model's own)", ""),
        (PF_SPINNER, "temperature", "Temperature (0: model default)", 0.0, (0.0, 2.0, 0.01)),
        (PF_SPINNER, "saturation", "Saturation", 1.0, (0.0, 2.0, 0.05)),
        (PF_SPINNER, "render_size", "Render size (0: model default)", 0, (0, 4096, 16)),
        (PF_OPTION, "device", "Device", 0, DEVICE_LABELS),
        (PF_OPTION, "output", "Output", 0, OUTPUT_LABELS),
        (PF_TOGGLE, "allow_download", "Download missing model weights", False),
    ],
    [],
    colorize,
    menu="<Image>/Colors",
)

main()
