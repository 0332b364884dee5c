"""Export a training checkpoint as the shipped ``mobile`` weights (fp16 safetensors).

    python -m chromatize.training.export --checkpoint RUN/best.pt \\
        --out core/chromatize/shipped/mobile.safetensors [--temperature T] [--overwrite] \\
        [--choose-temperature-on ../shared/data/train] [--logit-adjustment ALPHA]

Floating-point tensors are stored as float16 (loading casts them back into the float32 model);
integer buffers (batch-norm counters) are kept. The safetensors metadata (all strings) records
what the weights came from: ``default_temperature`` (``--temperature``, else re-chosen on the whole
held-out split with ``--choose-temperature-on`` (scored through the pipeline,
:func:`chromatize.training.scoring.score_checkpoint`), else the one training chose on its subset),
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
from typing import Any

import torch

from chromatize.models.mobile import build_mobile, is_hint_state
from chromatize.models.tflite_convert import BACKBONE_SHA256
from chromatize.training.checkpoints import fp16_state, load_checkpoint, model_of, write_weights
from chromatize.training.logit_adjustment import DEFAULT_LAMBDA, adjust_state
from chromatize.training.scoring import score_checkpoint


def _training_meta(ckpt: dict[str, Any]) -> dict[str, str]:
    """The training split's prior and the run's rebalancing, step and minutes."""
    args = ckpt.get("args", {})
    return {
        "prior_counts": json.dumps([int(c) for c in ckpt["prior"].tolist()]),
        "rebalance_lambda": str(args.get("rebalance_lambda", "")),
        "rebalance_max_weight": str(args.get("max_weight", "")),
        "training_step": str(ckpt["state"]["step"]),
        "training_minutes": f"{ckpt['state']['elapsed'] / 60:.1f}",
    }


def _lineage_meta(ckpt: dict[str, Any]) -> dict[str, str]:
    """Where the weights came from: the run's starting point and its decoded-colour loss."""
    args = ckpt.get("args", {})
    meta = {}
    if args.get("init") not in (None, "None"):
        meta["continued_from"] = str(args["init"])
    if float(args.get("colour_loss", 0.0)):
        # rebalance_lambda null: the loss used the cross-entropy's (capped) class weights
        lam = args.get("colour_loss_lambda")
        meta["colour_loss"] = json.dumps({
            "weight": float(args["colour_loss"]),
            "rebalance_lambda": None if lam in (None, "None") else float(lam),
        })
    return meta


def metadata(
    ckpt: dict[str, Any],
    metrics: dict[str, Any],
    temperature: float,
    logit_adjustment: float = 0.0,
    logit_adjustment_lambda: float = DEFAULT_LAMBDA,
) -> dict[str, str]:
    """The safetensors metadata (all strings) of the exported weights."""
    v2 = is_hint_state(ckpt["model"])
    meta = {
        "format": "chromatize-mobile-2" if v2 else "chromatize-mobile-1",
        "architecture": "chromatize.models.mobile:"
                        + ("MobileHintColorizer" if v2 else "MobileColorizer"),
        "default_temperature": f"{float(temperature):g}",
        **_training_meta(ckpt),
        "held_out_metrics": json.dumps(
            {k: metrics[k] for k in ("loss", "weighted_loss", "gray", "truth_colourfulness",
                                      "per_temperature") if k in metrics}
        ),
        "backbone": f"mobilenet_v2_1.0_224_quant.tflite sha256={BACKBONE_SHA256} (Apache-2.0)",
        **_lineage_meta(ckpt),
    }
    if logit_adjustment:
        meta["logit_adjustment"] = json.dumps(
            {"alpha": float(logit_adjustment), "lambda": float(logit_adjustment_lambda)})
    if ckpt.get("averaged_from"):
        # Weight average of several checkpoints (chromatize.training.averaging): its members.
        meta["averaged_from"] = json.dumps(ckpt["averaged_from"])
    return meta


def _write(state: dict[str, torch.Tensor], meta: dict[str, str], out: Path) -> None:
    write_weights(state, meta, out, build_mobile(hints=is_hint_state(state)))


def export(
    checkpoint: Path,
    out: Path,
    temperature: float | None,
    overwrite: bool,
    choose_on: Path | None = None,
    logit_adjustment: float = 0.0,
    logit_adjustment_lambda: float = DEFAULT_LAMBDA,
) -> dict[str, str]:
    """Write ``checkpoint``'s weights to ``out``; returns the metadata written (see the module
    docstring). ``choose_on``: re-choose the temperature on all held-out scene photos of this
    training folder (required with ``logit_adjustment``)."""
    if out.exists() and not overwrite:
        raise SystemExit(f"{out} exists; pass --overwrite to replace it")
    if logit_adjustment and choose_on is None:
        raise SystemExit("--logit-adjustment needs --choose-temperature-on: the checkpoint's "
                         "metrics and temperature were measured without the adjustment")
    ckpt = load_checkpoint(checkpoint)
    if logit_adjustment:
        ckpt["model"] = adjust_state(ckpt["model"], ckpt["prior"], logit_adjustment,
                                     logit_adjustment_lambda)
    model = model_of(ckpt)  # proves the checkpoint fits the architecture
    metrics = ckpt.get("metrics", {})
    if choose_on is not None:
        metrics = score_checkpoint(ckpt, choose_on)
        print(json.dumps({"temperature": metrics["temperature"], "gray": metrics["gray"],
                          "per_temperature": metrics["per_temperature"]}, indent=1))
    chosen = temperature if temperature is not None else metrics.get("temperature", 0.38)
    meta = metadata(ckpt, metrics, chosen, logit_adjustment, logit_adjustment_lambda)
    _write(fp16_state(model), meta, out)
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
