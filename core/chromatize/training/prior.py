"""Empirical prior of the 313 ab bins over the training photos (used for class rebalancing).

    python -m chromatize.training.prior --data ../shared/data/train --out RUN/prior.json

Counts the nearest bin of every ab value at the targets' 1/4 resolution (4x4 area averages), over
the training split only (the held-out split is excluded with the same hash rule as training).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from chromatize.atomic import replacing
from chromatize.bins import NUM_BINS, bin_histogram
from chromatize.training.data import (
    DEFAULT_SCENE_VAL_FRACTION,
    DEFAULT_VAL_FRACTION,
    TARGET_STRIDE,
    Split,
    load_rgb,
    rgb_to_lab_tensor,
)


def compute_prior(files: list[Path]) -> torch.Tensor:
    """Counts (313,) float64 of nearest bins over ``files`` at 1/4 resolution."""
    counts = torch.zeros(NUM_BINS, dtype=torch.float64)
    for f in files:
        lab = rgb_to_lab_tensor(np.asarray(load_rgb(f)))
        ab4 = F.avg_pool2d(lab[None, 1:], TARGET_STRIDE)
        counts += bin_histogram(ab4)
    return counts


def save_prior(path: Path, counts: torch.Tensor, meta: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**meta, "counts": [int(c) for c in counts.tolist()]}
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(data))


def load_prior(path: str | Path) -> torch.Tensor:
    counts = json.loads(Path(path).read_text())["counts"]
    if len(counts) != NUM_BINS:
        raise ValueError(f"{path}: expected {NUM_BINS} counts, got {len(counts)}")
    return torch.tensor(counts, dtype=torch.float64)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder of training photos")
    p.add_argument("--out", type=Path, required=True, help="JSON file to write")
    p.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                   help="held-out fraction of the object photos (Caltech-101)")
    p.add_argument("--scene-val-fraction", type=float, default=DEFAULT_SCENE_VAL_FRACTION,
                   help="held-out fraction of the scene photos (every other source)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    split = Split(args.val_fraction, args.scene_val_fraction)
    train, val = split.files(args.data)
    counts = compute_prior(train)
    save_prior(
        args.out,
        counts,
        {"images": len(train), "held_out": len(val), "val_fraction": split.val_fraction,
         "scene_val_fraction": split.scene_val_fraction, "stride": TARGET_STRIDE},
    )
    empty = int((counts == 0).sum())
    print(f"prior of {len(train)} photos ({int(counts.sum())} target pixels, {empty} empty bins) "
          f"-> {args.out} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
