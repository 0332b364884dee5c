"""Tooling that builds the ``mobile`` model and the baselines: the backbone converter's accuracy
check (the converter itself is :mod:`chromatize.models.tflite_convert`), data loading, the
empirical bin prior, the training loop, weight averaging, the logit-adjustment scan, export, and
the recipe running the whole chain.

Layering (no import cycles): ``data`` and ``checkpoints`` at the bottom;
``prior`` and ``scoring`` (held-out scores through the public pipeline) on them; the commands
``averaging``, ``logit_adjustment``, ``export``, ``train``, ``baselines`` (the earlier designs
``chromatize eval`` compares against) and ``recipe`` on top.

Needs the ``train`` extra (``tflite``, ``flatbuffers``, ``minisom``). Every command takes the
folders it reads (training photos, backbone) as arguments; nothing refers to a development
checkout.
"""
