"""Training data: photo lists, a deterministic held-out split, random-crop samples with soft-encoded
1/4-resolution targets (prepared in DataLoader workers). The held-out photos are loaded for
scoring by :mod:`chromatize.training.scoring`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from chromatize.bins import soft_encode_sparse
from chromatize.color import rgb_to_lab
from chromatize.models.contract import HINT_AB_SCALE, HINT_CHANNELS

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
#: Output stride of the colorizer: targets live at 1/4 of the input resolution.
TARGET_STRIDE = 4
#: Training crops need only be multiples of 16 (SAME padding handles the odd stride-32 size).
CROP_MULTIPLE = 16


def list_images(root: str | Path) -> list[Path]:
    """All photos under ``root`` (recursively), sorted for reproducibility."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no .jpg/.png photos under {root}")
    return files


#: Training sources that are object photos (mostly one centred object on a plain or studio
#: background) rather than scene photography; every other top-level folder counts as scenes.
OBJECT_SOURCES = frozenset({"caltech101"})
#: Held-out fractions: 3 % of the object photos, 10 % of the (much fewer) scene photos, so that
#: checkpoints and defaults can be chosen on a scene split of a few hundred photos.
DEFAULT_VAL_FRACTION = 0.03
DEFAULT_SCENE_VAL_FRACTION = 0.10


def source_of(path: Path, root: Path) -> str:
    """The top-level folder of ``path`` under ``root`` (its data source); "" for loose files."""
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else ""


def is_scene(path: Path, root: Path) -> bool:
    return source_of(path, root) not in OBJECT_SOURCES


def is_held_out(path: Path, root: Path, fraction: float) -> bool:
    """Deterministic split by a hash of the path relative to ``root`` (stable across machines).

    The rule is monotonic in ``fraction``: a photo held out at 3 % is also held out at 10 %.
    """
    rel = path.relative_to(root).as_posix().encode()
    return int.from_bytes(hashlib.sha1(rel).digest()[:4], "big") < fraction * 2**32


@dataclass(frozen=True)
class Split:
    """Which photos are held out: a hash fraction of the object photos and of the scene photos."""

    val_fraction: float = DEFAULT_VAL_FRACTION
    scene_val_fraction: float = DEFAULT_SCENE_VAL_FRACTION

    @classmethod
    def of_run(cls, run_args: Mapping[str, Any]) -> Split:
        """The split a training run used, from the ``args`` its checkpoints store (runs from
        before the scene fraction existed held scenes out at ``val_fraction`` too)."""
        val = float(run_args.get("val_fraction", DEFAULT_VAL_FRACTION))
        return cls(val, float(run_args.get("scene_val_fraction", val)))

    def held_out(self, path: Path, root: Path) -> bool:
        frac = self.scene_val_fraction if is_scene(path, root) else self.val_fraction
        return is_held_out(path, root, frac)

    def files(self, root: str | Path) -> tuple[list[Path], list[Path]]:
        """(training files, held-out files) under ``root``."""
        root = Path(root)
        train: list[Path] = []
        val: list[Path] = []
        for f in list_images(root):
            (val if self.held_out(f, root) else train).append(f)
        return train, val

    def validation_files(self, root: str | Path) -> list[Path]:
        """The held-out scene photos under ``root``: the set that chooses checkpoints and the
        default temperature."""
        root = Path(root)
        return [f for f in self.files(root)[1] if is_scene(f, root)]

    def validation_sample(self, root: str | Path, limit: int | None) -> list[Path]:
        """``limit`` of :meth:`validation_files`, evenly spaced through the sorted list so that
        every source keeps its share (the first ``limit`` would be the alphabetically first
        sources only); all of them when ``limit`` is None or not smaller."""
        files = self.validation_files(root)
        if limit is None or limit >= len(files):
            return files
        if limit <= 0:
            return []
        return [files[(i * len(files)) // limit] for i in range(limit)]


def sampling_weights(
    files: list[Path], root: str | Path, object_share: float | None
) -> list[float]:
    """Per-photo sampling weights giving the object photos ``object_share`` of the draws (the
    rest shared evenly by the scene photos); ``None`` draws every photo equally often."""
    root = Path(root)
    scene = [is_scene(f, root) for f in files]
    n_scene = sum(scene)
    n_object = len(files) - n_scene
    if object_share is None or n_scene == 0 or n_object == 0:
        return [1.0] * len(files)
    if not 0.0 <= object_share <= 1.0:
        raise ValueError(f"object share must be in [0, 1], got {object_share}")
    w_scene, w_object = (1.0 - object_share) / n_scene, object_share / n_object
    return [w_scene if s else w_object for s in scene]


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def rgb_to_lab_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) or (N, H, W, 3) sRGB -> Lab float32 with channels at axis -3."""
    t = torch.from_numpy(np.array(rgb, dtype=np.float32)).div_(255.0)
    return rgb_to_lab(t.movedim(-1, -3))


class SoftEncodeTable:
    """:func:`chromatize.bins.soft_encode_sparse` tabulated at the centres of the unit ab cells
    (-127.5 .. 127.5; the centres never fall on a bin boundary, so there are no ties).

    Looking targets up by cell is ~100x faster than encoding each pixel, and the displacement (at
    most 0.71 ab units) is small against the bin spacing (10) and the encoding's sigma (5).
    """

    LO, HI = -128, 127

    def __init__(self) -> None:
        grid = torch.arange(self.LO, self.HI + 1, dtype=torch.float32) + 0.5
        a, b = torch.meshgrid(grid, grid, indexing="ij")
        idx, w = soft_encode_sparse(torch.stack([a, b])[None])  # (1, k, 256, 256)
        self.idx = idx[0].permute(1, 2, 0).to(torch.int16).contiguous()  # (256, 256, k)
        self.w = w[0].permute(1, 2, 0).to(torch.float16).contiguous()

    def __call__(self, ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ab (N, 2, H, W) -> (indices int16, weights float16), each (N, k, H, W)."""
        q = ab.floor().clamp(self.LO, self.HI).long() - self.LO
        ia, ib = q[:, 0], q[:, 1]
        return (
            self.idx[ia, ib].permute(0, 3, 1, 2).contiguous(),
            self.w[ia, ib].permute(0, 3, 1, 2).contiguous(),
        )


_TABLE: SoftEncodeTable | None = None


def soft_targets(ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ab (N, 2, H, W) at input resolution -> targets at 1/4 resolution.

    The ab ground truth is area-averaged over 4x4 blocks first (what one output pixel covers).
    Returns the sparse soft targets (indices int16, weights float16), each (N, 5, H/4, W/4), and
    that averaged ab (N, 2, H/4, W/4) float16 (the target of the decoded-colour loss).
    """
    global _TABLE
    if _TABLE is None:
        _TABLE = SoftEncodeTable()
    pooled = F.avg_pool2d(ab, TARGET_STRIDE)
    return (*_TABLE(pooled), pooled.to(torch.float16))


@dataclass(frozen=True)
class HintSimulation:
    """Simulated colour hints for training, as Zhang et al. 2017 (colorization-pytorch) draw them.

    A sample has no hints with probability ``free_share`` (so the model keeps its automatic
    colours); otherwise the number of hints is geometric with success probability ``p`` (at least
    one, mean 1/p, at most ``max_count``), each a square patch of 1..``max_size`` pixels whose
    hint colour is the patch's mean true ab, centred uniformly at random or (half the time) by a
    normal distribution around the crop's centre with a quarter of its side as deviation.
    """

    free_share: float = 0.25
    p: float = 1.0 / 8.0
    max_count: int = 128
    max_size: int = 9

    def count(self, rng: random.Random) -> int:
        if rng.random() < self.free_share:
            return 0
        n = 1
        while n < self.max_count and rng.random() >= self.p:
            n += 1
        return n

    def __call__(self, ab: torch.Tensor, rng: random.Random) -> torch.Tensor:
        """ab (2, S, S) of a crop -> the model contract's hint tensor (3, S, S) float16."""
        _, h, w = ab.shape
        out = torch.zeros(HINT_CHANNELS, h, w)
        normal = rng.random() < 0.5
        for _ in range(self.count(rng)):
            size = rng.randint(1, self.max_size)
            if normal:
                cy = int(min(max(rng.gauss(h / 2, h / 4), 0), h - 1))
                cx = int(min(max(rng.gauss(w / 2, w / 4), 0), w - 1))
            else:
                cy, cx = rng.randrange(h), rng.randrange(w)
            y0, x0 = max(cy - size // 2, 0), max(cx - size // 2, 0)
            y1, x1 = min(y0 + size, h), min(x0 + size, w)
            mean = ab[:, y0:y1, x0:x1].mean(dim=(1, 2))
            out[:2, y0:y1, x0:x1] = (mean / HINT_AB_SCALE)[:, None, None]
            out[2, y0:y1, x0:x1] = 1.0
        return out.to(torch.float16)


@dataclass(frozen=True)
class CropConfig:
    size: int = 176
    min_scale: float = 0.8
    max_scale: float = 1.25
    flip: bool = True


class RandomCrops(Dataset):
    """Random square crops with scale jitter and horizontal flips.

    Item: dict with ``l`` (1, S, S) float32 L in [0, 100], ``idx`` (5, S/4, S/4) int16 and
    ``w`` (5, S/4, S/4) float16 (soft targets), ``ab`` (2, S/4, S/4) float16 (4x4-averaged ab)
    and, with ``hints``, ``hints`` (3, S, S) float16 (simulated hints, the model contract's
    encoding).
    """

    def __init__(self, files: list[Path], config: CropConfig = CropConfig(),
                 hints: HintSimulation | None = None) -> None:
        if config.size % CROP_MULTIPLE:
            raise ValueError(f"crop size must be a multiple of {CROP_MULTIPLE}")
        self.files = files
        self.config = config
        self.hints = hints

    def __len__(self) -> int:
        return len(self.files)

    def crop(self, img: Image.Image, rng: random.Random) -> np.ndarray:
        c = self.config
        w, h = img.size
        side = min(c.size / rng.uniform(c.min_scale, c.max_scale), w, h)
        x0 = rng.uniform(0, w - side)
        y0 = rng.uniform(0, h - side)
        out = img.resize((c.size, c.size), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side))
        if c.flip and rng.random() < 0.5:
            out = out.transpose(Image.FLIP_LEFT_RIGHT)
        return np.asarray(out)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = random.Random(torch.randint(0, 2**62, ()).item())
        lab = rgb_to_lab_tensor(self.crop(load_rgb(self.files[i]), rng))
        idx, w, ab = soft_targets(lab[None, 1:])
        item = {"l": lab[:1], "idx": idx[0], "w": w[0], "ab": ab[0]}
        if self.hints is not None:
            item["hints"] = self.hints(lab[1:], rng)
        return item


def worker_init(_: int) -> None:
    """DataLoader worker: one thread each, so workers do not fight the training step for cores."""
    torch.set_num_threads(1)
