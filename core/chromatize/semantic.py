"""The semantic-interpretability test of Zhang et al. (ECCV 2016): does an ImageNet classifier
recognise colorized photos as well as the originals?

The classifier is the ImageNet MobileNetV2 1.0/224 that ``mobile`` starts from, read from its
TFLite file (:mod:`chromatize.models.tflite_convert`; needs the ``train`` extra). A photo's true
class comes from its file name, ``<synset>_<anything>`` (as in ``data/train/imagenet_sample``),
looked up in a synset list whose line order is the class index (``imagenet_sample_synsets.txt``);
the network's output index is class index + 1 (index 0 = background). Pre-processing as the
converter's accuracy check: shorter side resized to 224 (bilinear), centre crop 224,
(u8 - 128) / 128.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from chromatize.errors import ChromatizeError

CLASSIFIER_SIZE = 224


def centre_crop(img: Image.Image, size: int = CLASSIFIER_SIZE) -> np.ndarray:
    """uint8 (size, size, 3): shorter side resized to ``size`` (bilinear), centre crop."""
    img = img.convert("RGB")
    w, h = img.size
    s = size / min(w, h)
    img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)))


def classifier_input(crops: np.ndarray) -> torch.Tensor:
    """uint8 (N, S, S, 3) -> the network's input (N, 3, S, S) float32."""
    x = torch.from_numpy(np.asarray(crops, np.float32))
    return ((x - 128.0) / 128.0).permute(0, 3, 1, 2).contiguous()


def read_synsets(path: str | os.PathLike[str]) -> dict[str, int]:
    """synset id (``n01440764``) -> class index, from a list whose line order is the index."""
    try:
        names = Path(path).read_text().split()
    except OSError as exc:
        raise ChromatizeError(f"cannot read the synset list {path}: {exc}") from None
    index = {name.split("_")[0]: i for i, name in enumerate(names)}
    if not index:
        raise ChromatizeError(f"the synset list {path} is empty")
    return index


class ImageNetClassifier:
    """Top-1 ImageNet classes of sRGB photos, and the true class of a photo from its name."""

    def __init__(self, tflite: str | os.PathLike[str], synsets: str | os.PathLike[str]) -> None:
        from chromatize.models.tflite_convert import load_classifier

        self.classes = read_synsets(synsets)
        self.network = load_classifier(tflite)

    def true_class(self, path: str | os.PathLike[str]) -> int | None:
        """The class a photo's file name gives, or None if it names no listed synset."""
        return self.classes.get(Path(path).name.split("_")[0])

    def top1(self, rgb: np.ndarray) -> int:
        """The predicted class index of one sRGB photo: float (H, W, 3) in [0, 1] or uint8."""
        pixels = np.asarray(rgb)
        if pixels.dtype != np.uint8:
            pixels = (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=2)
        crop = centre_crop(Image.fromarray(pixels[..., :3]))
        with torch.inference_mode():
            logits = self.network(classifier_input(crop[None]))
        return int(logits.argmax(1)[0]) - 1
