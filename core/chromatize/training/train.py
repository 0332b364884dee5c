"""Train the ``mobile`` colorizer on CPU.

    python -m chromatize.training.train --out /work/runs/mobile --data ../shared/data/train \\
        --backbone ../shared/models/mobilenet_v2_1.0_224_quant.tflite [--budget-minutes 55] \\
        [--resume]

Schedule (all phases measured in wall-clock time, so it fits the machine; accumulated across
``--resume``): AdamW on the decoder with the ImageNet encoder frozen, cosine learning rate over
``--budget-minutes``; from ``--unfreeze-at`` (fraction of the budget) the encoder's last blocks
(``--unfreeze-from``) are fine-tuned at ``--encoder-lr``. bfloat16 autocast where the CPU has
native bfloat16 (AMX / AVX-512 BF16: ~2.5x faster); on AVX2-only CPUs float32. Batches are
prepared in DataLoader workers (random crops with scale jitter and flips, Lab, soft targets at 1/4
resolution via a lookup table of :func:`chromatize.bins.soft_encode_sparse`).

Data: ``--data`` (required) is the folder of training photos, one sub-folder per source; the
ImageNet encoder comes from ``--backbone`` (required unless ``--init`` or a resumable
``last.pt`` provides every weight). Three quarters of the photos are Caltech-101 object photos;
draws are weighted so that they make up ``--object-share`` of the crops and scene photography
(every other source) the rest.

Loss: soft cross-entropy with mild class rebalancing (``--rebalance-lambda``, weights capped at
``--max-weight``) from the empirical prior of the training split (``--prior``; computed with
:mod:`chromatize.training.prior` when the file does not exist). With ``--colour-loss`` the
colours the model would show are trained too: :func:`decoded_colour_loss` (a differentiable
1 - AuC of the T=0.38 annealed mean, rebalanced with ``--colour-loss-lambda``) is added to the
cross-entropy. Every ``--eval-minutes`` the held-out *scene* photos are colorized through the
public pipeline and scored (:func:`chromatize.training.scoring.evaluate`: loss, AuC raw and
class-rebalanced, PSNR, colourfulness at several decoding temperatures); ``last.pt`` is written
for resuming and ``best.pt`` keeps the checkpoint with the best
:func:`~chromatize.training.scoring.selection_score` (rebalanced-AuC gain over gray at T=0.38
within the PSNR and colourfulness limits of the model's quality targets). With
``--average-from F`` the weights at every evaluation from fraction F of the budget on also join a
running average (:mod:`chromatize.training.averaging`), which is scored the same way and may
become ``best.pt``.

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, WeightedRandomSampler

from chromatize.bins import decode, evidence_log_prior, rebalance_weights, soft_cross_entropy
from chromatize.device import cpu_has_native_bf16
from chromatize.evaluation import AUC_MAX_THRESHOLD
from chromatize.models.mobile import (
    SKIP_BLOCKS,
    MobileColorizer,
    MobileHintColorizer,
    build_mobile,
    is_hint_state,
    lightness_to_backbone_input,
)
from chromatize.models.tflite_convert import encoder_state_dict
from chromatize.training.averaging import BN_BATCHES, lightness_batches, recompute_batch_norm
from chromatize.training.checkpoints import atomic_save, load_checkpoint
from chromatize.training.data import (
    DEFAULT_SCENE_VAL_FRACTION,
    DEFAULT_VAL_FRACTION,
    CropConfig,
    HintSimulation,
    RandomCrops,
    Split,
    sampling_weights,
    worker_init,
)
from chromatize.training.prior import compute_prior, load_prior, save_prior
from chromatize.training.scoring import (
    SELECT_TEMPERATURE,
    evaluate,
    hint_psnr,
    hint_response,
    load_held_out,
)

log = logging.getLogger("chromatize.train")

#: A hint model's checkpoints are chosen by the automatic score plus this many points per dB that
#: 10 hints add to PSNR on the held-out photos (both of the model issue's levers in one number).
HINT_SCORE_WEIGHT = 1.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, logs)")
    p.add_argument("--data", type=Path, required=True,
                   help="folder of training photos, one sub-folder per source")
    p.add_argument("--backbone", type=Path, default=None,
                   help="ImageNet MobileNetV2 .tflite file (required unless --init or --resume "
                        "from an existing last.pt provides every weight)")
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
    p.add_argument("--init", type=Path, default=None,
                   help="start from these model weights: a training checkpoint (.pt) or exported "
                        "weights (.safetensors, e.g. the shipped ones)")
    p.add_argument("--hints", action="store_true",
                   help="train mobile v2 (MobileHintColorizer) with simulated colour hints; an "
                        "--init without hint inputs (v1) starts its hint encoder at zero")
    p.add_argument("--hint-free-share", type=float, default=0.25,
                   help="with --hints: share of crops given no hints (keeps automatic colours)")
    p.add_argument("--hint-val-limit", type=int, default=150,
                   help="with --hints: held-out photos scored with 0, 1, 10 and 100 hints")
    p.add_argument("--hint-lr", type=float, default=1e-3,
                   help="with --hints: learning rate of the new hint encoder")
    p.add_argument("--seed", type=int, default=0)
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _parser()
    args = p.parse_args(argv)
    resumable = args.resume and (args.out / "last.pt").exists()
    if args.backbone is None and args.init is None and not resumable:
        p.error("--backbone is required to start from the ImageNet encoder (or pass --init, or "
                "--resume a run that has a last.pt)")
    return args


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


def lr_factor(fraction: float, step: int, warmup: int) -> float:
    warm = min(1.0, (step + 1) / max(warmup, 1))
    return warm * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(fraction, 1.0))))


def _setup_logging(out: Path) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        handlers=[logging.FileHandler(out / "train.log"), logging.StreamHandler(sys.stdout)],
    )


def _prior(args: argparse.Namespace, split: Split, train_files: list[Path]) -> torch.Tensor:
    """The bin prior of the training split (computed and saved when its file does not exist)."""
    prior_path = args.prior or args.out / "prior.json"
    if not prior_path.exists():
        log.info("computing the bin prior of %d photos -> %s", len(train_files), prior_path)
        save_prior(prior_path, compute_prior(train_files),
                   {"images": len(train_files), "val_fraction": split.val_fraction,
                    "scene_val_fraction": split.scene_val_fraction})
    return load_prior(prior_path)


def _init_state(path: Path) -> dict[str, torch.Tensor]:
    """Model weights from a training checkpoint or an exported ``.safetensors`` file (float32)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return {k: v.float() if v.is_floating_point() else v for k, v in load_file(path).items()}
    return torch.load(path, map_location="cpu")["model"]


def _initial_model(args: argparse.Namespace) -> MobileColorizer:
    """The network to start from: ``--init``'s weights, else the ImageNet encoder of
    ``--backbone`` (a resumed run then loads ``last.pt`` over either). With ``--hints`` the
    network is v2; weights without a hint encoder leave it at its zero start."""
    model = build_mobile(hints=args.hints)
    if args.init is not None:
        state = _init_state(args.init)
        missing = model.load_state_dict(state, strict=not args.hints or is_hint_state(state))
        if args.hints and not is_hint_state(state):
            log.info("--init has no hint encoder: %d hint tensors start fresh",
                     len(missing.missing_keys))
    elif args.backbone is not None:
        model.encoder.load_state_dict(encoder_state_dict(args.backbone))
    model.encoder.requires_grad_(False)
    return model


def _loader(args: argparse.Namespace, train_files: list[Path]) -> DataLoader:
    hints = HintSimulation(free_share=args.hint_free_share) if args.hints else None
    dataset = RandomCrops(train_files, CropConfig(size=args.crop), hints)
    share = args.object_share if args.object_share >= 0 else None
    draw = sampling_weights(train_files, args.data, share)
    return DataLoader(
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


def _log_eval(m: dict[str, Any], step: int, averaged: int, seconds: float) -> None:
    bt = m["per_temperature"][str(m["temperature"])]
    t38 = m["per_temperature"][str(SELECT_TEMPERATURE)]
    log.info(
        "eval step %d%s: loss %.4f wloss %.4f | T=%.2f aucR %.2f aucB %.2f psnr %.2f col %.1f"
        " | T=0.38 aucR %.2f aucB %.2f psnr %.2f col %.1f | gray aucR %.2f aucB %.2f psnr "
        "%.2f | truth col %.1f | score %.2f (%.0f s)",
        step, f" (average of {averaged})" if averaged else "", m["loss"],
        m["weighted_loss"], m["temperature"], bt["auc_raw"], bt["auc_rebalanced"], bt["psnr"],
        bt["colourfulness"], t38["auc_raw"], t38["auc_rebalanced"], t38["psnr"],
        t38["colourfulness"], m["gray"]["auc_raw"], m["gray"]["auc_rebalanced"],
        m["gray"]["psnr"], m["truth_colourfulness"], m["score"], seconds,
    )


class _Window:
    """Throughput and loss over the steps since the last progress line."""

    def __init__(self) -> None:
        self.reset(time.perf_counter())

    def reset(self, now: float) -> None:
        self.start, self.images, self.loss, self.steps, self.data_wait = now, 0, 0.0, 0, 0.0

    def add(self, images: int, loss: float) -> None:
        self.images += images
        self.loss += loss
        self.steps += 1

    def report(self, state: dict[str, Any], lr: float, now: float) -> None:
        span = now - self.start
        log.info("step %d  %.1f min  loss %.4f  %.1f img/s  data wait %.0f%%  lr %.2e",
                 state["step"], state["elapsed"] / 60, self.loss / self.steps,
                 self.images / span, 100 * self.data_wait / span, lr)
        self.reset(now)


class TrainingRun:
    """One training run: the model, its optimiser and schedule state, the held-out photos, the
    running weight average, and the checkpoints in ``--out``."""

    def __init__(self, args: argparse.Namespace, autocast: bool) -> None:
        self.args, self.autocast = args, autocast
        split = Split(args.val_fraction, args.scene_val_fraction)
        train_files, val_files = split.files(args.data)
        self.prior = _prior(args, split, train_files)
        self.class_weights = rebalance_weights(self.prior, args.rebalance_lambda,
                                               max_weight=args.max_weight)
        log.info("prior: %d photos' bins, %d empty; class weights %.3f..%.3f", len(train_files),
                 int((self.prior == 0).sum()), self.class_weights.min(), self.class_weights.max())
        self.colour_weights = self.class_weights
        if args.colour_loss_lambda is not None:
            self.colour_weights = rebalance_weights(self.prior, args.colour_loss_lambda)
            log.info("decoded-colour loss weights %.3f..%.3f", self.colour_weights.min(),
                     self.colour_weights.max())
        self.model = _initial_model(args)
        if isinstance(self.model, MobileHintColorizer):
            # what the temperature anneals relative to: the prior these weights learn against
            self.model.decode_log_prior.copy_(evidence_log_prior(
                self.prior, args.rebalance_lambda, max_weight=args.max_weight))
        self.opt = torch.optim.AdamW(list(self.model.decoder.parameters()), lr=args.lr,
                                     weight_decay=args.weight_decay)
        self.opt.param_groups[0]["base_lr"] = args.lr
        if args.hints:
            self.opt.add_param_group({"params": list(self.model.hint_encoder.parameters()),
                                      "lr": args.hint_lr, "base_lr": args.hint_lr})
        self.state: dict[str, Any] = {"step": 0, "elapsed": 0.0, "best_score": -math.inf,
                                      "unfrozen": False, "history": []}
        self.last_path, self.best_path = args.out / "last.pt", args.out / "best.pt"
        self.average: AveragedModel | None = None
        if args.resume and self.last_path.exists():
            self._resume()
        self.held_out = load_held_out(split.validation_sample(args.data, args.val_limit))
        log.info("%d training photos, %d held out (%d scene photos scored)", len(train_files),
                 len(val_files), len(self.held_out))
        self.batches: Iterator[dict[str, torch.Tensor]] = iter(_loader(args, train_files))
        self.budget = args.budget_minutes * 60

    def _resume(self) -> None:
        ckpt = load_checkpoint(self.last_path)
        self.model.load_state_dict(ckpt["model"])
        if ckpt["state"]["unfrozen"]:
            self.unfreeze()
        self.opt.load_state_dict(ckpt["optimizer"])
        self.state.update(ckpt["state"])
        if ckpt.get("average") is not None:
            self.average = AveragedModel(self.model, use_buffers=False)
            self.average.load_state_dict(ckpt["average"])
        log.info("resumed at step %d (%.1f min)", self.state["step"], self.state["elapsed"] / 60)

    def unfreeze(self) -> None:
        """Fine-tune the encoder from block ``--unfreeze-from`` on, at ``--encoder-lr``."""
        args, enc = self.args, self.model.encoder
        tuned = [p for b in enc.blocks[args.unfreeze_from:] for p in b.parameters()]
        tuned += list(enc.head.parameters())
        for p in tuned:
            p.requires_grad_(True)
        self.opt.add_param_group({"params": tuned, "lr": args.encoder_lr,
                                  "base_lr": args.encoder_lr, "weight_decay": 0.0})
        self.state["unfrozen"] = True
        log.info("unfroze encoder blocks %d.. (%d tensors)", args.unfreeze_from, len(tuned))

    def described(self, weights: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Weights with what export and evaluation need to know about them."""
        return {"model": weights, "state": self.state, "prior": self.prior,
                "class_weights": self.class_weights,
                "args": {k: str(v) for k, v in vars(self.args).items()}}

    def keep_if_best(self, metrics: dict[str, Any], weights: dict[str, torch.Tensor]) -> None:
        if metrics["score"] <= self.state["best_score"]:
            return
        self.state["best_score"] = metrics["score"]
        atomic_save({**self.described(weights), "metrics": metrics}, self.best_path)
        log.info("new best (score %.2f at T=%g; default T=%g%s) -> %s", metrics["score"],
                 SELECT_TEMPERATURE, metrics["temperature"],
                 f"; average of {metrics['averaged']}" if metrics.get("averaged") else "",
                 self.best_path)

    def scored(self, net: torch.nn.Module, averaged: int = 0) -> dict[str, Any]:
        """Score ``net`` on the held-out photos, append the result to ``metrics.jsonl``."""
        t0 = time.perf_counter()
        m = evaluate(net, self.held_out, self.class_weights)
        m.update(step=self.state["step"], minutes=self.state["elapsed"] / 60, averaged=averaged)
        self.state["history"].append({k: m[k] for k in ("step", "minutes", "loss",
                                                        "weighted_loss", "score", "temperature",
                                                        "averaged")})
        if self.args.hints:
            hint_photos = self.held_out[: self.args.hint_val_limit]
            m["hint_psnr"] = hint_psnr(net, hint_photos)
            m["hint_response"] = hint_response(net, hint_photos)
            m["automatic_score"] = m["score"]
            m["score"] += HINT_SCORE_WEIGHT * (m["hint_psnr"]["10"] - m["hint_psnr"]["0"])
            log.info("hint PSNR (T=%g, %d photos): %s; the network moves %.2f ab with 10 hints",
                     SELECT_TEMPERATURE, len(hint_photos),
                     "  ".join(f"{n} hints {v:.2f}" for n, v in m["hint_psnr"].items()),
                     m["hint_response"])
            if self.state["step"] > 0 and m["hint_response"] < 0.01:
                log.warning("the network ignores hints (10 hints move its prediction by %.3g ab; "
                            "the PSNR with hints rises only from the pinned hint pixels): the "
                            "hint encoder may have died; lower --hint-lr", m["hint_response"])
        with open(self.args.out / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(m) + "\n")
        _log_eval(m, self.state["step"], averaged, time.perf_counter() - t0)
        return m

    def run_eval(self) -> None:
        """Score the weights (and the running average), keep the best, write ``last.pt``."""
        self.keep_if_best(self.scored(self.model), self.model.state_dict())
        start = self.args.average_from
        if start is not None and self.state["elapsed"] >= start * self.budget:
            self._join_average()
        average = self.average.state_dict() if self.average is not None else None
        atomic_save({**self.described(self.model.state_dict()), "optimizer": self.opt.state_dict(),
                     "average": average}, self.last_path)

    def _join_average(self) -> None:
        """Add the current weights to the running average; score it from two members on."""
        if self.average is None:  # a copy of the architecture; members join by update_parameters
            self.average = AveragedModel(self.model, use_buffers=False)
        self.average.update_parameters(self.model)
        members = int(self.average.n_averaged)
        if members >= 2:
            averaged = self.average.module
            recompute_batch_norm(averaged, lightness_batches(self.batches, BN_BATCHES))
            self.keep_if_best(self.scored(averaged, members), averaged.state_dict())

    def step(self, batch: dict[str, torch.Tensor]) -> float:
        """One optimiser step on ``batch``; returns its loss."""
        args, state = self.args, self.state
        fraction = state["elapsed"] / self.budget
        if not state["unfrozen"] and fraction >= args.unfreeze_at:
            self.unfreeze()
        factor = lr_factor(fraction, state["step"], args.warmup_steps)
        for g in self.opt.param_groups:
            g["lr"] = g["base_lr"] * factor
        trainable_from = args.unfreeze_from if state["unfrozen"] else None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            feats = encode(self.model, batch["l"], trainable_from)
            guidance = (self.model.hint_encoder(batch["l"], batch["hints"].float())
                        if self.args.hints else None)
            logits = self.model.decoder(feats, guidance)
        idx = batch["idx"].long()
        loss = soft_cross_entropy(logits, idx, batch["w"].float(), self.class_weights)
        if args.colour_loss:
            loss = loss + args.colour_loss * decoded_colour_loss(
                logits, batch["ab"], idx, self.colour_weights)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        state["step"] += 1
        return float(loss.detach())

    def train(self) -> None:
        """Train until the budget is used up, scoring every ``--eval-minutes`` and at the end."""
        state = self.state
        self.model.train()
        next_eval = state["elapsed"] + self.args.eval_minutes * 60
        window = _Window()
        last_tick = time.perf_counter()
        log.info("training: budget %.0f min, %.1f min done", self.args.budget_minutes,
                 state["elapsed"] / 60)
        while state["elapsed"] < self.budget:
            t_wait = time.perf_counter()
            batch = next(self.batches)
            window.data_wait += time.perf_counter() - t_wait
            window.add(self.args.batch, self.step(batch))
            now = time.perf_counter()
            state["elapsed"] += now - last_tick
            last_tick = now
            if state["step"] % 50 == 0:
                window.report(state, self.opt.param_groups[0]["lr"], now)
            if state["elapsed"] >= next_eval:
                self.run_eval()
                next_eval = state["elapsed"] + self.args.eval_minutes * 60
                last_tick = time.perf_counter()  # evaluation time does not count against the budget
                window.reset(last_tick)
        self.run_eval()
        log.info("done: %d steps, %.1f min of training", state["step"], state["elapsed"] / 60)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    _setup_logging(args.out)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    autocast = args.bf16 == "on" or (args.bf16 == "auto" and cpu_has_native_bf16())
    log.info("args: %s", vars(args))
    log.info("bfloat16 autocast: %s (CPU capability %s)", "on" if autocast else "off",
             torch.backends.cpu.get_cpu_capability())
    TrainingRun(args, autocast).train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
