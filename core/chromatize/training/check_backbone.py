"""Prove the TFLite -> PyTorch conversion: ImageNet top-1 of the converted float classifier.

    python -m chromatize.training.check_backbone --shared ../shared [--limit N]

``--shared`` is the folder holding ``models/`` (the backbone) and ``data/``. Images:
``data/train/imagenet_sample`` (``<synset>_<name>.*``); class index = 0-based line number
of the synset in ``data/imagenet_sample_synsets.txt``; network output index = class index + 1
(index 0 is "background"). Pre-processing: shorter side resized to 224 (bilinear), centre crop
224, (u8 - 128) / 128.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from chromatize.training.tflite_convert import BACKBONE_FILE, load_classifier


def centre_crop(img: Image.Image, size: int = 224) -> np.ndarray:
    img = img.convert("RGB")
    w, h = img.size
    s = size / min(w, h)
    img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)))


def top1_accuracy(shared: Path, limit: int | None = None, batch: int = 32) -> tuple[float, int]:
    """(top-1 accuracy, number of images) of the converted backbone on the ImageNet sample."""
    synsets = (shared / "data" / "imagenet_sample_synsets.txt").read_text().split()
    index = {s.split("_")[0]: i for i, s in enumerate(synsets)}
    files = sorted((shared / "data" / "train" / "imagenet_sample").iterdir())
    files = [f for f in files if f.name.split("_")[0] in index][:limit]
    model = load_classifier(shared / "models" / BACKBONE_FILE)
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(files), batch):
            chunk = files[start : start + batch]
            x = np.stack([centre_crop(Image.open(f)) for f in chunk]).astype(np.float32)
            x = torch.from_numpy((x - 128.0) / 128.0).permute(0, 3, 1, 2)
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
