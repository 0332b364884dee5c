"""Weight averaging of checkpoints: within one run (stochastic weight averaging, Izmailov et al.
2018) or across runs that share an ancestor (model soups / WiSE-FT, Wortsman et al. 2022).

    python -m chromatize.training.averaging A.pt B.pt ... --out averaged.pt \
        --data ../shared/data/train

The held-out scores of single checkpoints swing by a point or more from one evaluation to the
next, and an equal-weight mean of weights often sits in a flatter, better-generalising spot. For
``mobile``, averaging a continued run with the model it started from gained about half a point
twice, while averaging the tail of one run gained nothing (see the model card). Batch-norm
statistics of an averaged network are not the mean of its members' statistics, so they are
re-estimated on training crops (:func:`torch.optim.swa_utils.update_bn`).

``train.py --average-from F`` does the same during training: from fraction F of the budget on, the
weights at every evaluation join a running average (:class:`torch.optim.swa_utils.AveragedModel`),
which is scored beside the current weights and can become ``best.pt``. This module's command
averages checkpoints after the fact (for runs that kept copies of ``last.pt``) and scores the
result the same way (:func:`chromatize.training.scoring.score_checkpoint`, on all held-out scene
photos of ``--data``).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import update_bn

from chromatize.models.mobile import MobileColorizer
from chromatize.training.checkpoints import atomic_save, load_checkpoint
from chromatize.training.data import CropConfig, RandomCrops, Split
from chromatize.training.scoring import SELECT_TEMPERATURE, score_checkpoint

#: Training crops used to re-estimate batch-norm statistics of an averaged model.
BN_BATCHES = 24


def lightness_batches(
    loader: Iterable[dict[str, torch.Tensor]], count: int
) -> Iterator[torch.Tensor]:
    """The L tensors of the next ``count`` batches of a training loader (or iterator)."""
    for batch in itertools.islice(loader, count):
        yield batch["l"]


def recompute_batch_norm(model: torch.nn.Module, lightness: Iterable[torch.Tensor]) -> None:
    """Re-estimate every batch-norm layer's running statistics on ``lightness`` batches (cumulative
    mean over them), leaving the model in eval mode."""
    update_bn(lightness, model)
    model.eval()


def average_states(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Equal-weight mean of model state dicts (floating tensors); others come from the last one."""
    if not states:
        raise ValueError("no checkpoints to average")
    keys = states[-1].keys()
    for s in states:
        if s.keys() != keys:
            raise ValueError("checkpoints to average do not have the same tensors")
    out: dict[str, torch.Tensor] = {}
    for k in keys:
        last = states[-1][k]
        if last.is_floating_point():
            out[k] = torch.stack([s[k].double() for s in states]).mean(0).to(last.dtype)
        else:
            out[k] = last.clone()
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkpoints", type=Path, nargs="+",
                   help="checkpoints (best.pt, last.pt or earlier averages)")
    p.add_argument("--out", type=Path, required=True, help="averaged checkpoint to write")
    p.add_argument("--data", type=Path, required=True,
                   help="the training photos the checkpoints were trained on (their split)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--bn-batches", type=int, default=BN_BATCHES)
    return p.parse_args(argv)


def averaged_model(
    checkpoints: Sequence[dict[str, Any]], data: Path, bn_batches: int = BN_BATCHES
) -> MobileColorizer:
    """The equal-weight average of ``checkpoints``' weights, batch norm re-estimated on
    ``bn_batches`` training crops of ``data`` (crop and batch size of the last one's run)."""
    run = checkpoints[-1].get("args", {})
    model = MobileColorizer()
    model.load_state_dict(average_states([c["model"] for c in checkpoints]))
    torch.manual_seed(0)
    crops = RandomCrops(Split.of_run(run).files(data)[0],
                        CropConfig(size=int(run.get("crop", 176))))
    loader = torch.utils.data.DataLoader(crops, batch_size=int(run.get("batch", 32)), shuffle=True)
    recompute_batch_norm(model, lightness_batches(loader, bn_batches))
    return model


def _members(paths: Sequence[Path], checkpoints: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the averaged checkpoint records about each member."""
    return [
        {"checkpoint": str(path), "step": int(c["state"]["step"]),
         "minutes": round(float(c["state"]["elapsed"]) / 60, 1),
         "rebalance_lambda": str(c.get("args", {}).get("rebalance_lambda", "")),
         "init": str(c.get("args", {}).get("init", ""))}
        for path, c in zip(paths, checkpoints, strict=True)
    ]


def _print_summary(metrics: dict[str, Any], steps: list[int]) -> None:
    t38 = metrics["per_temperature"][str(SELECT_TEMPERATURE)]
    print(f"average of {len(steps)} checkpoints (steps {steps}): score {metrics['score']:.2f}; "
          f"T=0.38 aucB {t38['auc_rebalanced']:.2f} aucR {t38['auc_raw']:.2f} "
          f"psnr {t38['psnr']:.2f} col {t38['colourfulness']:.1f}; gray aucB "
          f"{metrics['gray']['auc_rebalanced']:.2f} psnr {metrics['gray']['psnr']:.2f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.out.exists() and not args.overwrite:
        print(f"error: {args.out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    ckpts = [load_checkpoint(c) for c in args.checkpoints]
    last = ckpts[-1]
    model = averaged_model(ckpts, args.data, args.bn_batches)
    payload = {k: v for k, v in last.items() if k != "optimizer"}
    payload["model"] = model.state_dict()
    metrics = score_checkpoint(payload, args.data)
    steps = [int(c["state"]["step"]) for c in ckpts]
    metrics.update(step=steps[-1], averaged_steps=steps,
                   minutes=float(last["state"]["elapsed"]) / 60)
    _print_summary(metrics, steps)
    payload.update(metrics=metrics, averaged_from=_members(args.checkpoints, ckpts))
    atomic_save(payload, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
