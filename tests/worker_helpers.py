"""Helpers shared by the worker, GIMP-shim and real-GIMP tests (not a test module)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SOURCE = REPO_ROOT / "gimp_plugin" / "chromatize_gimp" / "plugin"
#: Environment for worker subprocesses: one torch thread (the machine is shared).
WORKER_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
WORKER_COMMAND = [sys.executable, "-m", "chromatize.worker"]


def random_eccv16_weights(directory: Path) -> Path:
    """A randomly initialised (seeded) eccv16 state dict saved to ``directory``, made once."""
    path = directory / "eccv16_random.pth"
    if not path.is_file():
        import torch

        from chromatize.models.eccv16 import build_eccv16

        torch.manual_seed(0)
        state = build_eccv16().state_dict()
        partial = path.with_suffix(".part")
        torch.save(state, partial)
        os.replace(partial, path)
    return path


def random_mobile_weights(directory: Path) -> Path:
    """A randomly initialised (seeded) ``mobile`` state dict (the registry's class as it is in
    this checkout, so it accepts hints) saved to ``directory``, made once. Hints are obeyed at
    their own pixels whatever the weights (``finish`` writes them), which is what tests of the
    hint plumbing assert."""
    path = directory / "mobile_random.pth"
    if not path.is_file():
        import torch

        from chromatize.registry import get_spec

        torch.manual_seed(0)
        state = get_spec("mobile").model_type()().state_dict()
        partial = path.with_suffix(".part")
        torch.save(state, partial)
        os.replace(partial, path)
    return path


def gray_test_image(height: int = 24, width: int = 32) -> np.ndarray:
    """A float32 gray image in [0.1, 0.9] with structure in both directions."""
    y, x = np.mgrid[0:height, 0:width]
    return (0.1 + 0.8 * ((x * 7 + y * 5) % 64) / 63.0).astype(np.float32)


def lab(rgb: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(np.asarray(rgb, dtype=np.float64)[..., :3])


def lightness_of_gray(gray: np.ndarray) -> np.ndarray:
    return lab(np.repeat(np.asarray(gray, dtype=np.float64)[..., None], 3, axis=2))[..., 0]


def mean_chroma(rgb: np.ndarray) -> float:
    values = lab(rgb)
    return float(np.hypot(values[..., 1], values[..., 2]).mean())
