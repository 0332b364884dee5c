"""Tooling that builds the ``mobile`` model: the TFLite -> PyTorch backbone converter and its
accuracy check, data loading, the empirical bin prior, the training loop, weight averaging, the
logit-adjustment scan, export, and the recipe running the whole chain.

Layering (no import cycles): ``data``, ``tflite_convert`` and ``checkpoints`` at the bottom;
``prior`` and ``scoring`` (held-out scores through the public pipeline) on them; the commands
``averaging``, ``logit_adjustment``, ``export``, ``train`` and ``recipe`` on top.

Needs the ``train`` extra (``tflite``, ``flatbuffers``). Every command takes the folders it reads
(training photos, backbone) as arguments; nothing refers to a development checkout.
"""
