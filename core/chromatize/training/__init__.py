"""Tooling that builds the ``mobile`` model: the TFLite -> PyTorch backbone converter and its
accuracy check, data loading, the empirical bin prior, and the training loop.

Needs the ``train`` extra (``tflite``, ``flatbuffers``) and the read-only ``../shared`` material.
"""
