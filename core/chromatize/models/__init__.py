"""Network architectures. Every colorizer network maps L (N, 1, H, W) in [0, 100] to bin logits
(N, 313, H/4, W/4) and carries ``logit_scale`` (see :func:`chromatize.bins.probabilities`)."""
