"""Export a training checkpoint as the shipped ``mobile`` weights (fp16 safetensors).

    python -m chromatize.training.export --checkpoint RUN/best.pt \\
        --out core/chromatize/shipped/mobile.safetensors [--temperature T] [--overwrite] \\
        [--choose-temperature-on ../shared/data/train]

Floating-point tensors are stored as float16 (loading casts them back into the float32 model);
integer buffers (batch-norm counters) are kept. The safetensors metadata (all strings) records
what the weights came from: ``default_temperature`` (``--temperature``, else re-chosen on the whole
held-out split with ``--choose-temperature-on``, else the one training chose on its subset),
the empirical bin prior of the training split (``prior_counts``, JSON list of 313 counts), the
rebalancing settings (and ``colour_loss``, when training used the decoded-colour loss), the
training step/minutes, the held-out metrics, and the checkpoint training started from
(``continued_from``) or the members of a weight average (``averaged_from``). With
``--logit-adjustment ALPHA`` the prior correction of :mod:`chromatize.training.logit_adjustment`
is folded into the head's bias first (recorded as ``logit_adjustment``), so the temperature and
metrics are those of the adjusted model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from chromatize.atomic import replacing
from chromatize.models.mobile import build_mobile
from chromatize.training.logit_adjustment import DEFAULT_LAMBDA, adjust_state
from chromatize.training.tflite_convert import BACKBONE_SHA256

#: Temperatures tried by ``--choose-temperature`` on the whole held-out split.
TEMPERATURE_GRID = (0.3, 0.38, 0.46, 0.55, 0.65, 0.8, 1.0)


def choose_temperature(checkpoint: dict, data: Path) -> dict:
    """Score the checkpoint on all held-out scene photos of its training split over
    :data:`TEMPERATURE_GRID`."""
    from chromatize.training.train import evaluate, held_out_of

    model = build_mobile()
    model.load_state_dict(checkpoint["model"])
    images, weights = held_out_of(checkpoint, data)
    return evaluate(model, images, weights, TEMPERATURE_GRID)


def export(
    checkpoint: Path,
    out: Path,
    temperature: float | None,
    overwrite: bool,
    choose_on: Path | None = None,
    logit_adjustment: float = 0.0,
    logit_adjustment_lambda: float = DEFAULT_LAMBDA,
) -> dict:
    if out.exists() and not overwrite:
        raise SystemExit(f"{out} exists; pass --overwrite to replace it")
    if logit_adjustment and choose_on is None:
        raise SystemExit("--logit-adjustment needs --choose-temperature-on: the checkpoint's "
                         "metrics and temperature were measured without the adjustment")
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if logit_adjustment:
        ckpt["model"] = adjust_state(ckpt["model"], ckpt["prior"], logit_adjustment,
                                     logit_adjustment_lambda)
    model = build_mobile()
    model.load_state_dict(ckpt["model"], strict=True)  # proves the checkpoint fits the architecture
    state = {
        k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous()
        for k, v in model.state_dict().items()
    }
    metrics = ckpt.get("metrics", {})
    if choose_on is not None:
        metrics = choose_temperature(ckpt, choose_on)
        print(json.dumps({"temperature": metrics["temperature"], "gray": metrics["gray"],
                          "per_temperature": metrics["per_temperature"]}, indent=1))
    chosen = temperature if temperature is not None else metrics.get("temperature", 0.38)
    args = ckpt.get("args", {})
    meta = {
        "format": "chromatize-mobile-1",
        "architecture": "chromatize.models.mobile:build_mobile",
        "default_temperature": f"{float(chosen):g}",
        "prior_counts": json.dumps([int(c) for c in ckpt["prior"].tolist()]),
        "rebalance_lambda": str(args.get("rebalance_lambda", "")),
        "rebalance_max_weight": str(args.get("max_weight", "")),
        "training_step": str(ckpt["state"]["step"]),
        "training_minutes": f"{ckpt['state']['elapsed'] / 60:.1f}",
        "held_out_metrics": json.dumps(
            {k: metrics[k] for k in ("loss", "weighted_loss", "gray", "truth_colourfulness",
                                      "per_temperature") if k in metrics}
        ),
        "backbone": f"mobilenet_v2_1.0_224_quant.tflite sha256={BACKBONE_SHA256} (Apache-2.0)",
    }
    if args.get("init") not in (None, "None"):
        meta["continued_from"] = str(args["init"])
    if float(args.get("colour_loss", 0.0)):
        # rebalance_lambda null: the loss used the cross-entropy's (capped) class weights
        lam = args.get("colour_loss_lambda")
        meta["colour_loss"] = json.dumps({
            "weight": float(args["colour_loss"]),
            "rebalance_lambda": None if lam in (None, "None") else float(lam),
        })
    if logit_adjustment:
        meta["logit_adjustment"] = json.dumps(
            {"alpha": float(logit_adjustment), "lambda": float(logit_adjustment_lambda)})
    if ckpt.get("averaged_from"):
        # Weight average of several checkpoints (chromatize.training.averaging): its members.
        meta["averaged_from"] = json.dumps(ckpt["averaged_from"])
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out, ".safetensors.tmp") as tmp:
        save_file(state, tmp, metadata=meta)
        check = build_mobile()  # the file must load into the model before it takes the name
        check.load_state_dict(load_file(tmp), strict=True)
    return meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--choose-temperature-on", type=Path, default=None, metavar="TRAIN_DIR",
                   help="re-choose the temperature on the whole held-out split of this folder")
    p.add_argument("--logit-adjustment", type=float, default=0.0, metavar="ALPHA",
                   help="fold ALPHA * log(rebalancing weights) into the head's bias "
                        "(chromatize.training.logit_adjustment chooses ALPHA)")
    p.add_argument("--logit-adjustment-lambda", type=float, default=DEFAULT_LAMBDA)
    args = p.parse_args(argv)
    meta = export(args.checkpoint, args.out, args.temperature, args.overwrite,
                  args.choose_temperature_on, args.logit_adjustment,
                  args.logit_adjustment_lambda)
    size = args.out.stat().st_size / 1e6
    print(f"wrote {args.out} ({size:.1f} MB), default temperature {meta['default_temperature']}, "
          f"step {meta['training_step']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
