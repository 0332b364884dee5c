"""Train the ``mobile`` colorizer on CPU.

    python -m chromatize.training.train --out /work/runs/mobile [--budget-minutes 55] [--resume]

Schedule (all phases measured in wall-clock time, so it fits the machine; accumulated across
``--resume``): AdamW on the decoder with the ImageNet encoder frozen, cosine learning rate over
``--budget-minutes``; from ``--unfreeze-at`` (fraction of the budget) the encoder's last blocks
(``--unfreeze-from``) are fine-tuned at ``--encoder-lr``. bfloat16 autocast where the CPU has
native bfloat16 (AMX / AVX-512 BF16: ~2.5x faster); on AVX2-only CPUs float32. Batches are
prepared in DataLoader workers (random crops with scale jitter and flips, Lab, soft targets at 1/4
resolution via a lookup table of :func:`chromatize.bins.soft_encode_sparse`).

Data: three quarters of ``--data`` are Caltech-101 object photos; draws are weighted so that they
make up ``--object-share`` of the crops and scene photography (every other source) the rest.

Loss: soft cross-entropy with mild class rebalancing (``--rebalance-lambda``, weights capped at
``--max-weight``) from the empirical prior of the training split (``--prior``; computed with
:mod:`chromatize.training.prior` when the file does not exist). With ``--colour-loss`` the
colours the model would show are trained too: :func:`decoded_colour_loss` (a differentiable
1 - AuC of the T=0.38 annealed mean, rebalanced with ``--colour-loss-lambda``) is added to the
cross-entropy. Every ``--eval-minutes`` the
held-out *scene* photos are scored (loss, AuC raw and class-rebalanced, PSNR, colourfulness at
several decoding temperatures); ``last.pt`` is written for resuming and ``best.pt`` keeps the
checkpoint with the best :func:`selection_score` (rebalanced-AuC gain over gray at T=0.38 within
the PSNR and colourfulness limits of the model's quality targets). With ``--average-from F`` the
weights at every evaluation from fraction F of the budget on also join a running average
(:mod:`chromatize.training.averaging`), which is scored the same way and may become ``best.pt``.

Run it with ``OMP_WAIT_POLICY=PASSIVE`` on a shared machine: with the default (spinning) policy two
torch threads slow down several-fold as soon as another process takes a core.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, WeightedRandomSampler

from chromatize.atomic import replacing
from chromatize.bins import decode, rebalance_weights, soft_cross_entropy
from chromatize.color import lab_to_rgb
from chromatize.device import cpu_has_native_bf16
from chromatize.evaluation import AUC_MAX_THRESHOLD, MetricTotals, colourfulness
from chromatize.models.mobile import SKIP_BLOCKS, MobileColorizer, lightness_to_backbone_input
from chromatize.training.averaging import (
    BN_BATCHES,
    lightness_batches,
    recompute_batch_norm,
)
from chromatize.training.data import (
    DEFAULT_SCENE_VAL_FRACTION,
    DEFAULT_VAL_FRACTION,
    CropConfig,
    HeldOutImage,
    RandomCrops,
    Split,
    load_held_out,
    sampling_weights,
    worker_init,
)
from chromatize.training.prior import compute_prior, load_prior, save_prior
from chromatize.training.tflite_convert import BACKBONE_FILE, encoder_state_dict

SHARED = Path(__file__).resolve().parents[3].parent / "shared"
TEMPERATURES = (0.3, 0.38, 0.46, 0.55, 0.65, 0.8, 1.0)
MIN_COLOURFULNESS_RATIO = 0.5
#: Checkpoints are chosen by the quality targets of the model's issue, measured on the held-out
#: scene photos at this temperature: class-rebalanced AuC gain over gray, as long as PSNR stays
#: within MAX_PSNR_DROP dB of gray and colourfulness at MIN_COLOURFULNESS_RATIO of the originals'.
SELECT_TEMPERATURE = 0.38
MAX_PSNR_DROP = 1.5
log = logging.getLogger("chromatize.train")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, logs)")
    p.add_argument("--data", type=Path, default=SHARED / "data" / "train")
    p.add_argument("--backbone", type=Path, default=SHARED / "models" / BACKBONE_FILE)
    p.add_argument("--prior", type=Path, default=None, help="default: OUT/prior.json")
    p.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                   help="held-out fraction of the object photos (Caltech-101)")
    p.add_argument("--scene-val-fraction", type=float, default=DEFAULT_SCENE_VAL_FRACTION,
                   help="held-out fraction of the scene photos (every other source)")
    p.add_argument("--val-limit", type=int, default=400,
                   help="held-out scene photos scored per eval")
    p.add_argument("--object-share", type=float, default=0.4,
                   help="share of training draws from the object photos (Caltech-101 is 3/4 of "
                        "the data); negative: draw every photo equally often")
    p.add_argument("--budget-minutes", type=float, default=55.0)
    p.add_argument("--eval-minutes", type=float, default=5.0)
    p.add_argument("--crop", type=int, default=176)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--rebalance-lambda", type=float, default=0.8)
    p.add_argument("--max-weight", type=float, default=3.0)
    p.add_argument("--unfreeze-at", type=float, default=0.75, help="fraction of the budget")
    p.add_argument("--unfreeze-from", type=int, default=14, help="first encoder block to tune")
    p.add_argument("--encoder-lr", type=float, default=1e-4)
    p.add_argument("--colour-loss", type=float, default=0.0,
                   help="weight of the decoded-colour loss (1 - AuC of the T=0.38 annealed mean) "
                        "added to the cross-entropy")
    p.add_argument("--colour-loss-lambda", type=float, default=None,
                   help="class rebalancing of the decoded-colour loss (default: --rebalance-lambda;"
                        " the rebalanced AuC weighs every colour bin equally, i.e. lambda 0)")
    p.add_argument("--average-from", type=float, default=None,
                   help="fraction of the budget from which the weights at every evaluation join a "
                        "running average that is scored (and may become best.pt) too")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                   help="bfloat16 autocast for training steps; auto: only where oneDNN has native "
                        "bfloat16 (AVX-512 BF16 / AMX), since emulating it is ~10x slower")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--init", type=Path, default=None, help="start from these model weights")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def atomic_save(obj: Any, path: Path) -> None:
    with replacing(path) as tmp:
        torch.save(obj, tmp)


def encode(
    model: MobileColorizer, lightness: torch.Tensor, trainable_from: int | None
) -> list[torch.Tensor]:
    """Encoder features; gradients only flow through blocks >= ``trainable_from`` (None: none)."""
    enc = model.encoder
    x = lightness_to_backbone_input(lightness)
    feats: list[torch.Tensor] = []
    skips = SKIP_BLOCKS
    first = len(enc.blocks) + 1 if trainable_from is None else trainable_from
    with torch.no_grad():
        x = enc.stem(x)
        for i, block in enumerate(enc.blocks[:first]):
            x = block(x)
            if i in skips:
                feats.append(x)
    for i in range(first, len(enc.blocks)):
        x = enc.blocks[i](x)
        if i in skips:
            feats.append(x)
    if trainable_from is None:
        with torch.no_grad():
            feats.append(enc.head(x))
    else:
        feats.append(enc.head(x))
    return feats


def selection_score(
    model: dict[str, float], gray: dict[str, float], truth_colourfulness: float
) -> float:
    """Class-rebalanced AuC gain over gray (points), less 10 points per dB of PSNR lost beyond
    :data:`MAX_PSNR_DROP` and 1 point per 1 % of the originals' colourfulness missing below
    :data:`MIN_COLOURFULNESS_RATIO`: the model issue's targets as one number to maximise."""
    gain = model["auc_rebalanced"] - gray["auc_rebalanced"]
    psnr_excess = max(0.0, gray["psnr"] - model["psnr"] - MAX_PSNR_DROP)
    colour_ratio = model["colourfulness"] / max(truth_colourfulness, 1e-6)
    colour_short = max(0.0, MIN_COLOURFULNESS_RATIO - colour_ratio)
    return gain - 10.0 * psnr_excess - 100.0 * colour_short


def decoded_colour_loss(
    logits: torch.Tensor,
    true_ab: torch.Tensor,
    target_idx: torch.Tensor,
    class_weights: torch.Tensor,
    temperature: float = SELECT_TEMPERATURE,
) -> torch.Tensor:
    """A differentiable 1 - AuC of the colours the model would show: the ab distance between the
    annealed mean of ``logits`` at ``temperature`` and ``true_ab`` (N, 2, H, W), cut off at the
    AuC's last threshold and divided by it, each pixel weighted by ``class_weights`` of its true
    nearest bin (``target_idx[:, 0]``); the rebalanced AuC weighs every bin equally.

    Cross-entropy alone rewards a distribution, not the colour decoded from it: at T=0.38 a
    confident wrong mode costs little loss but a large colour error. This term lets the model
    hedge (a flatter distribution, a paler mean) exactly where its guesses are unreliable.
    """
    ab = decode(logits, "annealed_mean", temperature)
    distance = ((ab - true_ab.float()).square().sum(dim=1) + 1e-4).sqrt()
    per_pixel = distance.clamp(max=AUC_MAX_THRESHOLD) / AUC_MAX_THRESHOLD
    return (per_pixel * class_weights.to(per_pixel.device)[target_idx[:, 0]]).mean()


def evaluate(
    model: MobileColorizer,
    images: list[HeldOutImage],
    class_weights: torch.Tensor,
    temperatures: tuple[float, ...] = TEMPERATURES,
) -> dict[str, Any]:
    """Held-out loss and metrics at every temperature in ``temperatures``.

    ``temperature`` (the default decoding temperature this model would ship with) maximises AuC
    raw + AuC rebalanced among the temperatures keeping at least half the originals'
    colourfulness; ``score`` is :func:`selection_score` at :data:`SELECT_TEMPERATURE`.

    Runs in float32, as inference does: with bfloat16 autocast every new image shape costs oneDNN
    a new kernel set (7x slower over photos of mixed sizes)."""
    model.eval()
    totals = {t: MetricTotals() for t in temperatures}
    gray = MetricTotals()
    truth = MetricTotals()
    loss = wloss = 0.0
    with torch.inference_mode():
        for im in images:
            logits = model(im.lightness[None]).float()
            idx, w = im.idx[None].long(), im.w[None].float()
            loss += float(soft_cross_entropy(logits, idx, w))
            wloss += float(soft_cross_entropy(logits, idx, w, class_weights))
            zeros = torch.zeros_like(im.ab)
            gray_rgb = lab_to_rgb(torch.cat([im.lightness, zeros])).permute(1, 2, 0).numpy()
            classes = im.classes
            gray.add(gray_rgb, zeros, im.rgb, im.ab, classes)
            truth.colourfulness.append(colourfulness(im.rgb))
            for t in temperatures:
                ab = decode(logits, "annealed_mean", t)
                ab = F.interpolate(ab, size=im.ab.shape[-2:], mode="bilinear", align_corners=False)
                rgb = lab_to_rgb(torch.cat([im.lightness, ab[0]])).permute(1, 2, 0).numpy()
                totals[t].add(rgb, ab[0], im.rgb, im.ab, classes)
    model.train()
    n = max(len(images), 1)
    truth_colour = truth.summary()["colourfulness"]
    per_t = {str(t): m.summary() for t, m in totals.items()}
    floor = MIN_COLOURFULNESS_RATIO * truth_colour
    ok = [t for t in temperatures if per_t[str(t)]["colourfulness"] >= floor]
    pool = ok or list(temperatures)
    best_t = max(pool, key=lambda t: per_t[str(t)]["auc_raw"] + per_t[str(t)]["auc_rebalanced"])
    gray_summary = gray.summary()
    return {
        "loss": loss / n,
        "weighted_loss": wloss / n,
        "gray": gray_summary,
        "truth_colourfulness": truth_colour,
        "per_temperature": per_t,
        "temperature": best_t,
        "score": selection_score(per_t[str(SELECT_TEMPERATURE)], gray_summary, truth_colour),
    }


def held_out_of(checkpoint: dict[str, Any], data: Path) -> tuple[list[HeldOutImage], torch.Tensor]:
    """The held-out scene photos of ``data`` under the split a checkpoint was trained with, and
    the cross-entropy's class weights it was trained with: what :func:`evaluate` needs to score
    it after the fact."""
    args = checkpoint["args"]
    weights = rebalance_weights(checkpoint["prior"], float(args["rebalance_lambda"]),
                                max_weight=float(args["max_weight"]))
    return load_held_out(Split.of_run(args).validation_files(data)), weights


def lr_factor(fraction: float, step: int, warmup: int) -> float:
    warm = min(1.0, (step + 1) / max(warmup, 1))
    return warm * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(fraction, 1.0))))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        handlers=[logging.FileHandler(args.out / "train.log"), logging.StreamHandler(sys.stdout)],
    )
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    autocast = args.bf16 == "on" or (args.bf16 == "auto" and cpu_has_native_bf16())
    log.info("args: %s", vars(args))
    log.info("bfloat16 autocast: %s (CPU capability %s)", "on" if autocast else "off",
             torch.backends.cpu.get_cpu_capability())

    split = Split(args.val_fraction, args.scene_val_fraction)
    train_files, val_files = split.files(args.data)
    prior_path = args.prior or args.out / "prior.json"
    if not prior_path.exists():
        log.info("computing the bin prior of %d photos -> %s", len(train_files), prior_path)
        save_prior(prior_path, compute_prior(train_files),
                   {"images": len(train_files), "val_fraction": split.val_fraction,
                    "scene_val_fraction": split.scene_val_fraction})
    prior = load_prior(prior_path)
    class_weights = rebalance_weights(prior, args.rebalance_lambda, max_weight=args.max_weight)
    log.info("prior: %d photos' bins, %d empty; class weights %.3f..%.3f",
             len(train_files), int((prior == 0).sum()), class_weights.min(), class_weights.max())
    colour_weights = class_weights
    if args.colour_loss_lambda is not None:
        colour_weights = rebalance_weights(prior, args.colour_loss_lambda)
        log.info("decoded-colour loss weights %.3f..%.3f", colour_weights.min(),
                 colour_weights.max())

    model = MobileColorizer()
    model.encoder.load_state_dict(encoder_state_dict(args.backbone))
    if args.init is not None:
        model.load_state_dict(torch.load(args.init, map_location="cpu")["model"])
    model.encoder.requires_grad_(False)
    decoder_params = list(model.decoder.parameters())
    opt = torch.optim.AdamW(decoder_params, lr=args.lr, weight_decay=args.weight_decay)
    state = {"step": 0, "elapsed": 0.0, "best_score": -math.inf, "unfrozen": False, "history": []}

    def unfreeze() -> None:
        tuned = [p for b in model.encoder.blocks[args.unfreeze_from:] for p in b.parameters()]
        tuned += list(model.encoder.head.parameters())
        for p in tuned:
            p.requires_grad_(True)
        opt.add_param_group({"params": tuned, "lr": args.encoder_lr, "base_lr": args.encoder_lr,
                             "weight_decay": 0.0})
        state["unfrozen"] = True
        log.info("unfroze encoder blocks %d.. (%d tensors)", args.unfreeze_from, len(tuned))

    opt.param_groups[0]["base_lr"] = args.lr
    last_path, best_path = args.out / "last.pt", args.out / "best.pt"
    average: AveragedModel | None = None
    if args.resume and last_path.exists():
        ckpt = torch.load(last_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        if ckpt["state"]["unfrozen"]:
            unfreeze()
        opt.load_state_dict(ckpt["optimizer"])
        state.update(ckpt["state"])
        if ckpt.get("average") is not None:
            average = AveragedModel(model, use_buffers=False)
            average.load_state_dict(ckpt["average"])
        log.info("resumed at step %d (%.1f min)", state["step"], state["elapsed"] / 60)

    held_out = load_held_out(split.validation_files(args.data)[: args.val_limit])
    log.info("%d training photos, %d held out (%d scene photos scored)", len(train_files),
             len(val_files), len(held_out))
    dataset = RandomCrops(train_files, CropConfig(size=args.crop))
    share = args.object_share if args.object_share >= 0 else None
    draw = sampling_weights(train_files, args.data, share)
    loader = DataLoader(
        dataset,
        batch_size=args.batch,
        # 4 M draws (~30 h at this machine's speed) are generated up front: 32 MB of indices.
        sampler=WeightedRandomSampler(draw, num_samples=4_000_000, replacement=True),
        num_workers=args.workers,
        worker_init_fn=worker_init,
        persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers > 0 else None,
        drop_last=True,
    )

    budget = args.budget_minutes * 60

    it = iter(loader)

    def described(weights: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Weights with what export and evaluation need to know about them."""
        return {"model": weights, "state": state, "prior": prior, "class_weights": class_weights,
                "args": {k: str(v) for k, v in vars(args).items()}}

    def keep_if_best(metrics: dict[str, Any], weights: dict[str, torch.Tensor]) -> None:
        if metrics["score"] <= state["best_score"]:
            return
        state["best_score"] = metrics["score"]
        atomic_save({**described(weights), "metrics": metrics}, best_path)
        log.info("new best (score %.2f at T=%g; default T=%g%s) -> %s", metrics["score"],
                 SELECT_TEMPERATURE, metrics["temperature"],
                 f"; average of {metrics['averaged']}" if metrics.get("averaged") else "",
                 best_path)

    def scored(net: MobileColorizer, averaged: int = 0) -> dict[str, Any]:
        t0 = time.perf_counter()
        m = evaluate(net, held_out, class_weights)
        m.update(step=state["step"], minutes=state["elapsed"] / 60, averaged=averaged)
        state["history"].append({k: m[k] for k in ("step", "minutes", "loss", "weighted_loss",
                                                    "score", "temperature", "averaged")})
        with open(args.out / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(m) + "\n")
        bt = m["per_temperature"][str(m["temperature"])]
        t38 = m["per_temperature"]["0.38"]
        log.info(
            "eval step %d%s: loss %.4f wloss %.4f | T=%.2f aucR %.2f aucB %.2f psnr %.2f col %.1f"
            " | T=0.38 aucR %.2f aucB %.2f psnr %.2f col %.1f | gray aucR %.2f aucB %.2f psnr "
            "%.2f | truth col %.1f | score %.2f (%.0f s)",
            state["step"], f" (average of {averaged})" if averaged else "", m["loss"],
            m["weighted_loss"], m["temperature"], bt["auc_raw"], bt["auc_rebalanced"], bt["psnr"],
            bt["colourfulness"], t38["auc_raw"], t38["auc_rebalanced"], t38["psnr"],
            t38["colourfulness"], m["gray"]["auc_raw"], m["gray"]["auc_rebalanced"],
            m["gray"]["psnr"], m["truth_colourfulness"], m["score"], time.perf_counter() - t0,
        )
        return m

    def run_eval() -> None:
        nonlocal average
        keep_if_best(scored(model), model.state_dict())
        if args.average_from is not None and state["elapsed"] >= args.average_from * budget:
            if average is None:  # a copy of the architecture; members join by update_parameters
                average = AveragedModel(model, use_buffers=False)
            average.update_parameters(model)
            members = int(average.n_averaged)
            if members >= 2:
                averaged = average.module
                recompute_batch_norm(averaged, lightness_batches(it, BN_BATCHES))
                keep_if_best(scored(averaged, members), averaged.state_dict())
        atomic_save({**described(model.state_dict()), "optimizer": opt.state_dict(),
                     "average": average.state_dict() if average is not None else None}, last_path)

    model.train()
    next_eval = state["elapsed"] + args.eval_minutes * 60
    window_t, window_imgs, window_loss, window_n = time.perf_counter(), 0, 0.0, 0
    data_wait = 0.0
    last_tick = time.perf_counter()
    log.info("training: budget %.0f min, %.1f min done", args.budget_minutes, state["elapsed"] / 60)
    while state["elapsed"] < budget:
        t_wait = time.perf_counter()
        batch = next(it)
        data_wait += time.perf_counter() - t_wait
        fraction = state["elapsed"] / budget
        if not state["unfrozen"] and fraction >= args.unfreeze_at:
            unfreeze()
        factor = lr_factor(fraction, state["step"], args.warmup_steps)
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * factor
        trainable_from = args.unfreeze_from if state["unfrozen"] else None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            feats = encode(model, batch["l"], trainable_from)
            logits = model.decoder(feats)
        idx = batch["idx"].long()
        loss = soft_cross_entropy(logits, idx, batch["w"].float(), class_weights)
        if args.colour_loss:
            loss = loss + args.colour_loss * decoded_colour_loss(
                logits, batch["ab"], idx, colour_weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["step"] += 1
        now = time.perf_counter()
        state["elapsed"] += now - last_tick
        last_tick = now
        window_imgs += args.batch
        window_loss += float(loss.detach())
        window_n += 1
        if state["step"] % 50 == 0:
            span = now - window_t
            log.info("step %d  %.1f min  loss %.4f  %.1f img/s  data wait %.0f%%  lr %.2e",
                     state["step"], state["elapsed"] / 60, window_loss / window_n,
                     window_imgs / span, 100 * data_wait / span, opt.param_groups[0]["lr"])
            window_t, window_imgs, window_loss, window_n, data_wait = now, 0, 0.0, 0, 0.0
        if state["elapsed"] >= next_eval:
            run_eval()
            next_eval = state["elapsed"] + args.eval_minutes * 60
            last_tick = time.perf_counter()  # evaluation time does not count against the budget
            window_t, window_imgs, window_loss, window_n, data_wait = last_tick, 0, 0.0, 0, 0.0
    run_eval()
    log.info("done: %d steps, %.1f min of training", state["step"], state["elapsed"] / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
