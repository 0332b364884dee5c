"""Prove the TFLite -> PyTorch conversion: ImageNet top-1 of the converted float classifier.

    python -m chromatize.training.check_backbone --shared ../shared [--limit N]

``--shared`` is the folder holding ``models/`` (the backbone) and ``data/``. Images:
``data/train/imagenet_sample`` (``<synset>_<name>.*``); class index = 0-based line number
of the synset in ``data/imagenet_sample_synsets.txt``; network output index = class index + 1
(index 0 is "background"). Pre-processing (:mod:`chromatize.semantic`): shorter side resized to
224 (bilinear), centre crop 224, (u8 - 128) / 128.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from chromatize.models.tflite_convert import BACKBONE_FILE, load_classifier
from chromatize.semantic import centre_crop, classifier_input, read_synsets


def top1_accuracy(shared: Path, limit: int | None = None, batch: int = 32) -> tuple[float, int]:
    """(top-1 accuracy, number of images) of the converted backbone on the ImageNet sample."""
    index = read_synsets(shared / "data" / "imagenet_sample_synsets.txt")
    files = sorted((shared / "data" / "train" / "imagenet_sample").iterdir())
    files = [f for f in files if f.name.split("_")[0] in index][:limit]
    model = load_classifier(shared / "models" / BACKBONE_FILE)
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(files), batch):
            chunk = files[start : start + batch]
            x = classifier_input(np.stack([centre_crop(Image.open(f)) for f in chunk]))
            pred = model(x).argmax(1) - 1
            truth = torch.tensor([index[f.name.split("_")[0]] for f in chunk])
            correct += int((pred == truth).sum())
    return correct / max(len(files), 1), len(files)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shared", type=Path, required=True,
                   help="folder with models/ (the backbone) and data/ (the ImageNet sample)")
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    acc, n = top1_accuracy(args.shared, args.limit)
    print(f"top-1 {acc * 100:.1f}% on {n} images ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
