"""Train one of ``chromatize eval``'s baselines (the earlier colorizer designs) on CPU.

    python -m chromatize.training.baselines fusion --data ../shared/data/train \\
        --backbone ../shared/models/mobilenet_v2_1.0_224_quant.tflite [--budget-minutes 20]
    python -m chromatize.training.baselines densenet --data ../shared/data/train
    python -m chromatize.training.baselines som --data ../shared/data/train

Same photos, held-out split (:class:`chromatize.training.data.Split`), crops and source weighting
as ``mobile``; everything inside ``--budget-minutes`` of wall-clock time, evaluations included.
Choices are made on ``--val-photos`` photos of the validation split
(:meth:`~chromatize.training.data.Split.validation_sample`), scored through the public pipeline
by :func:`chromatize.evaluation.evaluate_photos` with :func:`selection_score` (the mean of raw and
class-rebalanced AuC, the measure ``mobile``'s temperature is chosen by):

- ``fusion`` and ``densenet`` regress ab (tanh) with mean squared error against the 4x4-averaged
  true ab, AdamW with a cosine schedule; scored at 1/2, 3/4 and the end of the budget, the best
  kept. ``fusion`` needs ``--backbone`` (its frozen ImageNet embedding network).
- ``som``: a self-organising map (minisom) quantises the ab of pixels from 1,000 training photos;
  a patch MLP learns to classify each pixel's L patch into a SOM cell (cross-entropy). Patch sizes
  3/5/11 are tried at 100 cells, then 9/25/400 cells at the best patch, each for
  ``--trial-share`` of the budget; the best of the seven continues for the rest of the budget,
  and is scored showing its most probable cell's colour (the design's rule) and the
  probability-weighted mean colour; the better decoding is kept.

The weights (float16 safetensors, sizes and scores in its metadata) go to ``--out``, by default
the model's file in the weights cache, where ``chromatize eval --model NAME`` finds them. An
existing file is kept unless ``--overwrite``. Needs the ``train`` extra (tflite, minisom).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler

from chromatize.device import cpu_has_native_bf16
from chromatize.errors import ChromatizeError
from chromatize.evaluation import evaluate_photos
from chromatize.models.baselines import AB_RANGE
from chromatize.models.densenet import DenseNetRegressor
from chromatize.models.fusion import FusionRegressor
from chromatize.models.som_patch import SOMPatchClassifier
from chromatize.training.checkpoints import fp16_state, write_weights
from chromatize.training.data import (
    CropConfig,
    RandomCrops,
    Split,
    load_rgb,
    rgb_to_lab_tensor,
    sampling_weights,
    worker_init,
)

log = logging.getLogger("chromatize.baselines")

BASELINES = ("fusion", "densenet", "som")
#: SOM sizes and patch sizes the ``som`` training chooses between (cells = side²).
SOM_SIDES = (3, 5, 10, 20)
PATCH_SIZES = (3, 5, 11)
#: Where the SOM search starts: patch sizes are tried at this many cells.
FIRST_SOM_SIDE = 10
#: Pixels drawn per photo, photos drawn, for fitting the SOM.
SOM_PIXELS_PER_PHOTO = 200
SOM_PHOTOS = 1000
SOM_ITERATIONS = 40_000


def selection_score(summary: dict[str, float]) -> float:
    """Mean of raw and class-rebalanced AuC (%): what the baselines' choices maximise."""
    return 0.5 * (summary["auc_raw"] + summary["auc_rebalanced"])


# ---------------------------------------------------------------------------- shared machinery


@dataclass
class Budget:
    """Wall-clock budget of the whole run, from the moment it is made."""

    seconds: float
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float:
        return max(0.0, self.seconds - self.elapsed)


def batches(args: argparse.Namespace, train_files: list[Path]) -> Iterator[dict[str, torch.Tensor]]:
    """Endless random-crop batches drawn as ``mobile``'s training draws them."""
    draw = sampling_weights(train_files, args.data, args.object_share)
    loader = DataLoader(
        RandomCrops(train_files, CropConfig(size=args.crop)),
        batch_size=args.batch,
        sampler=WeightedRandomSampler(draw, num_samples=10_000_000, replacement=True,
                                      generator=torch.Generator().manual_seed(args.seed)),
        num_workers=args.workers,
        worker_init_fn=worker_init,
        persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers > 0 else None,
        drop_last=True,
    )
    yield from loader


def score(model: nn.Module, files: list[Path]) -> dict[str, float]:
    """``model``'s held-out metrics on ``files`` through the public pipeline (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        report = evaluate_photos(files, model=model, source="validation sample")
    finally:
        model.train(was_training)
    return report.model


def train_for(
    model: nn.Module,
    seconds: float,
    data: Iterator[dict[str, torch.Tensor]],
    loss_of: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor],
    args: argparse.Namespace,
    checkpoints: tuple[float, ...] = (),
    on_checkpoint: Callable[[float], None] | None = None,
) -> int:
    """AdamW with a cosine schedule over ``seconds`` of wall time; ``on_checkpoint(fraction)`` at
    each fraction of ``checkpoints`` (time spent there is not counted). Returns the steps made."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    autocast = args.bf16 == "on" or (args.bf16 == "auto" and cpu_has_native_bf16())
    pending = sorted(checkpoints)
    model.train()
    spent, steps, last_log, losses = 0.0, 0, 0.0, []
    while spent < seconds:
        t0 = time.perf_counter()
        fraction = spent / seconds
        factor = min(1.0, (steps + 1) / 50) * 0.5 * (1.0 + math.cos(math.pi * fraction))
        for group in opt.param_groups:
            group["lr"] = args.lr * factor
        batch = next(data)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = loss_of(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        losses.append(float(loss.detach()))
        spent += time.perf_counter() - t0
        if spent - last_log > 60:
            log.info("step %d, %.0f s of %.0f, loss %.4f", steps, spent, seconds,
                     sum(losses) / len(losses))
            last_log, losses = spent, []
        while pending and spent / seconds >= pending[0]:
            if on_checkpoint is not None:
                on_checkpoint(pending.pop(0))
            else:
                pending.pop(0)
    for fraction in pending:  # the budget ran out first
        if on_checkpoint is not None:
            on_checkpoint(fraction)
    model.eval()
    return steps


def save_weights(model: nn.Module, out: Path, meta: dict[str, Any]) -> None:
    """Float16 safetensors at ``out``, written atomically and checked to load back."""
    shaped = getattr(type(model), "for_state_dict", None)
    state = fp16_state(model)
    fresh = shaped(state) if callable(shaped) else type(model)()
    write_weights(state, {k: str(v) for k, v in meta.items()}, out, fresh)


# ---------------------------------------------------------------------------- regressions


def regression_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean squared error of ab (in units of :data:`AB_RANGE`) against the 4x4-averaged truth."""
    predicted = model(batch["l"])
    return F.mse_loss(predicted.float() / AB_RANGE, batch["ab"].float() / AB_RANGE)


def build_regression(name: str, args: argparse.Namespace) -> nn.Module:
    if name == "densenet":
        return DenseNetRegressor()
    if args.backbone is None:
        raise ChromatizeError("the fusion baseline needs --backbone (the ImageNet MobileNetV2 "
                              ".tflite, e.g. ../shared/models/mobilenet_v2_1.0_224_quant.tflite)")
    from chromatize.models.tflite_convert import load_classifier

    model = FusionRegressor()
    model.embedding.load_state_dict(load_classifier(args.backbone).state_dict())
    model.embedding.requires_grad_(False)
    return model


def train_regression(name: str, args: argparse.Namespace, train_files: list[Path],
                     val_files: list[Path], budget: Budget) -> tuple[nn.Module, dict[str, Any]]:
    model = build_regression(name, args)
    data = batches(args, train_files)
    best: dict[str, Any] = {"score": -math.inf}
    # the evaluations' own time comes out of the budget too: estimate it, train for the rest
    eval_seconds = 3 * args.seconds_per_eval_photo * len(val_files)

    def keep_if_best(fraction: float) -> None:
        metrics = score(model, val_files)
        value = selection_score(metrics)
        log.info("%s at %.2f of the budget: score %.2f (AuC %.2f / %.2f, PSNR %.2f)", name,
                 fraction, value, metrics["auc_raw"], metrics["auc_rebalanced"], metrics["psnr"])
        if value > best["score"]:
            best.update(score=value, fraction=fraction, metrics=metrics,
                        state=copy.deepcopy(model.state_dict()))

    steps = train_for(model, max(budget.left() - eval_seconds, 1.0), data, regression_loss, args,
                      (0.5, 0.75, 1.0), keep_if_best)
    model.load_state_dict(best["state"])
    return model.eval(), {"steps": steps, "chosen_at_fraction": best["fraction"],
                          "validation": best["metrics"]}


# ---------------------------------------------------------------------------- SOM + patch MLP


def som_samples(train_files: list[Path], seed: int, photos: int = SOM_PHOTOS,
                per_photo: int = SOM_PIXELS_PER_PHOTO) -> np.ndarray:
    """(n, 2) ab of random pixels (4x4-averaged, as the targets) of random training photos."""
    rng = random.Random(seed)
    chosen = rng.sample(train_files, min(photos, len(train_files)))
    out = []
    for f in chosen:
        lab = rgb_to_lab_tensor(np.asarray(load_rgb(f)))
        h, w = (lab.shape[-2] // 4) * 4, (lab.shape[-1] // 4) * 4
        ab = F.avg_pool2d(lab[None, 1:, :h, :w], 4)[0].reshape(2, -1).T.numpy()
        picks = [rng.randrange(len(ab)) for _ in range(min(per_photo, len(ab)))]
        out.append(ab[picks])
    return np.concatenate(out).astype(np.float32)


def fit_som(samples: np.ndarray, side: int, seed: int) -> torch.Tensor:
    """The ``side`` x ``side`` SOM's cell colours (side², 2) in ab units."""
    try:
        from minisom import MiniSom
    except ImportError as exc:
        raise ChromatizeError("the som baseline needs minisom: pip install 'chromatize[train]'"
                              ) from exc
    som = MiniSom(side, side, 2, sigma=max(side / 4.0, 1.0), learning_rate=0.5,
                  random_seed=seed)
    scaled = samples / AB_RANGE
    som.pca_weights_init(scaled)
    som.train_random(scaled, SOM_ITERATIONS)
    return torch.from_numpy(som.get_weights().reshape(-1, 2) * AB_RANGE).float()


def nearest_cells(ab: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """ab (N, 2, h, w) -> index (N, h, w) of the nearest SOM cell."""
    flat = ab.float().permute(0, 2, 3, 1).reshape(-1, 2)
    index = torch.cdist(flat, cells).argmin(1)
    return index.reshape(ab.shape[0], *ab.shape[-2:])


def som_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    target = nearest_cells(batch["ab"], model.cell_ab)
    return F.cross_entropy(model.cell_logits(batch["l"]).float(), target)


def train_som(args: argparse.Namespace, train_files: list[Path], val_files: list[Path],
              budget: Budget) -> tuple[nn.Module, dict[str, Any]]:
    samples = som_samples(train_files, args.seed)
    log.info("SOM: %d ab samples from %d photos", len(samples), min(SOM_PHOTOS, len(train_files)))
    colours: dict[int, torch.Tensor] = {}
    data = batches(args, train_files)
    trial_seconds = args.trial_share * budget.seconds
    trials: list[dict[str, Any]] = []

    def trial(side: int, patch: int) -> dict[str, Any]:
        if side not in colours:
            colours[side] = fit_som(samples, side, args.seed)
        model = SOMPatchClassifier(cells=side * side, patch=patch)
        model.cell_ab.copy_(colours[side])
        train_for(model, trial_seconds, data, som_loss, args)
        metrics = score(model, val_files)
        result = {"cells": side * side, "patch": patch, "score": selection_score(metrics),
                  "validation": metrics, "model": model}
        log.info("SOM %d cells, %dx%d patches: score %.2f (AuC %.2f / %.2f, PSNR %.2f)",
                 side * side, patch, patch, result["score"], metrics["auc_raw"],
                 metrics["auc_rebalanced"], metrics["psnr"])
        trials.append(result)
        return result

    by_patch = max((trial(FIRST_SOM_SIDE, p) for p in PATCH_SIZES), key=lambda r: r["score"])
    others = [trial(s, by_patch["patch"]) for s in SOM_SIDES if s != FIRST_SOM_SIDE]
    chosen = max([by_patch, *others], key=lambda r: r["score"])
    model = chosen["model"]
    trial_state = copy.deepcopy(model.state_dict())
    eval_seconds = args.seconds_per_eval_photo * len(val_files)
    steps = train_for(model, max(budget.left() - 2 * eval_seconds, 1.0), data, som_loss, args)
    final = score(model, val_files)
    if selection_score(final) < chosen["score"]:  # keep the trial's weights if more training hurt
        log.info("longer training scored lower (%.2f); keeping the trial's weights",
                 selection_score(final))
        model.load_state_dict(trial_state)
        final = chosen["validation"]
    model.mean_decode.fill_(1.0)
    mean = score(model, val_files)
    log.info("SOM decoded by the mean colour: score %.2f (most probable cell: %.2f)",
             selection_score(mean), selection_score(final))
    if selection_score(mean) > selection_score(final):
        final = mean
    else:
        model.mean_decode.fill_(0.0)
    return model.eval(), {
        "cells": chosen["cells"], "patch": chosen["patch"], "steps_after_choice": steps,
        "decoding": "mean" if float(model.mean_decode) > 0.5 else "most probable cell",
        "trials": [{k: v for k, v in t.items() if k not in ("model", "validation")}
                   for t in trials],
        "validation": final,
    }


# ---------------------------------------------------------------------------- command


def default_out(name: str) -> Path:
    from chromatize.registry import get_spec
    from chromatize.weights import cached_path

    return cached_path(get_spec(name))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m chromatize.training.baselines",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=BASELINES, help="which baseline to train")
    p.add_argument("--data", type=Path, required=True, help="folder of training photos")
    p.add_argument("--backbone", type=Path, default=None,
                   help="the ImageNet MobileNetV2 .tflite (fusion's embedding network)")
    p.add_argument("--out", type=Path, default=None,
                   help="weights file to write (default: the model's file in the weights cache)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--budget-minutes", type=float, default=20.0)
    p.add_argument("--val-photos", type=int, default=100,
                   help="validation photos scoring every choice")
    p.add_argument("--trial-share", type=float, default=0.08,
                   help="som: share of the budget each of the seven SOM/patch trials gets")
    p.add_argument("--object-share", type=float, default=0.2,
                   help="share of object (Caltech) photos among the crops, as mobile v2")
    p.add_argument("--crop", type=int, default=176)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bf16", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--seconds-per-eval-photo", type=float, default=0.4,
                   help="estimate of one validation photo's scoring time (kept for evaluations)")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    out = args.out or default_out(args.name)
    if out.exists() and not args.overwrite:
        print(f"{out} already exists; not replacing it (pass --overwrite)", file=sys.stderr)
        return 1
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    budget = Budget(args.budget_minutes * 60.0)
    split = Split()
    train_files, _ = split.files(args.data)
    val_files = split.validation_sample(args.data, args.val_photos)
    if not val_files:
        raise ChromatizeError(f"no validation photos under {args.data}: the split holds none out")
    log.info("%s: %d training photos, %d validation photos, %.0f min", args.name,
             len(train_files), len(val_files), args.budget_minutes)
    if args.name == "som":
        model, facts = train_som(args, train_files, val_files, budget)
    else:
        model, facts = train_regression(args.name, args, train_files, val_files, budget)
    params = sum(p.numel() for p in model.parameters())
    meta = {"baseline": args.name, "parameters": params, "minutes": round(budget.elapsed / 60, 1),
            "facts": json.dumps(facts, default=float),
            "args": json.dumps({k: str(v) for k, v in vars(args).items()})}
    save_weights(model, out, meta)
    print(json.dumps({"out": str(out), "parameters": params, **facts}, default=float, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
