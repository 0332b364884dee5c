"""The shipped ``mobile`` model's whole training chain as one command.

    python -m chromatize.training.recipe --runs RUNS \\
        [--data ../shared/data/train] [--out mobile.safetensors] [--dry-run] [--overwrite]

Runs, in order, the steps ``shipped/MODEL_CARD.md`` lists: v1's six training runs (each starting
from the one before or from a weight average), two weight averages, the logit-adjustment scan and
v1's export (the scan's chosen alpha, its documented rule, is what that export folds in); then v2's
training run with simulated colour hints from those v1 weights, and its export to ``--out``. Each
step is its own ``python -m chromatize.training.…`` process. Every step writes under ``RUNS`` (one
folder per run, named as in the model card); a finished step is skipped and an interrupted training
run is resumed from its ``last.pt``, so the command can simply be run again after a crash or in the
next session. ``--data`` (the training photos) goes to every step that reads photos; the first run
starts from the ImageNet encoder in ``--backbone``. The runs after the first reuse its bin prior.

About 6.8 hours of 2-core CPU time (the training budgets add up to 400 minutes). The budgets are
wall-clock minutes, so another machine trains a different number of steps: the chain is
reproduced, not the exact weights. ``--time-scale`` multiplies every budget and evaluation
interval (the tests run the whole chain in seconds with it); ``--train-arg`` passes an extra
option to every training run (e.g. ``--train-arg=--workers=2``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chromatize.training.checkpoints import load_checkpoint

#: Options every training run from the fourth on shares.
COMMON = ("--rebalance-lambda", "0.75", "--max-weight", "4", "--unfreeze-at", "1.0",
          "--object-share", "0.4")
#: The chain in order: ("train", run folder, options) or ("average", output, members); ``{runs}``
#: is the runs folder. Run folders are named as in the model card.
CHAIN: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("train", "mobile2", ("--budget-minutes", "90", "--eval-minutes", "6", "--lr", "1.5e-3",
                          "--rebalance-lambda", "0.85", "--max-weight", "3", "--unfreeze-at",
                          "0.8", "--object-share", "0.4")),
    ("train", "mobile3", ("--init", "{runs}/mobile2/best.pt", "--budget-minutes", "75",
                          "--eval-minutes", "6", "--lr", "1e-3", "--warmup-steps", "50",
                          "--rebalance-lambda", "0.7", "--max-weight", "5", "--unfreeze-at", "1.0",
                          "--object-share", "0.4")),
    ("average", "{runs}/mobile3/soup.pt", ("{runs}/mobile2/best.pt", "{runs}/mobile3/last.pt")),
    ("train", "mobile5", ("--init", "{runs}/mobile3/soup.pt", "--budget-minutes", "80",
                          "--eval-minutes", "8", "--lr", "6e-4", "--warmup-steps", "100",
                          "--rebalance-lambda", "0.75", "--max-weight", "4", "--unfreeze-at", "0",
                          "--unfreeze-from", "6", "--encoder-lr", "1e-4", "--average-from", "0.5",
                          "--object-share", "0.4")),
    ("average", "{runs}/mobile5/wise.pt", ("{runs}/mobile3/soup.pt", "{runs}/mobile5/best.pt")),
    ("train", "mobile8", ("--init", "{runs}/mobile5/wise.pt", "--budget-minutes", "40",
                          "--eval-minutes", "8", "--lr", "3e-4", "--warmup-steps", "50", *COMMON,
                          "--colour-loss", "4", "--colour-loss-lambda", "0.25", "--seed", "8")),
    ("train", "mobile9", ("--init", "{runs}/mobile8/best.pt", "--budget-minutes", "25",
                          "--eval-minutes", "8.2", "--lr", "2e-4", "--warmup-steps", "30", *COMMON,
                          "--colour-loss", "8", "--colour-loss-lambda", "0.1", "--seed", "9")),
    ("train", "mobile10", ("--init", "{runs}/mobile9/best.pt", "--budget-minutes", "15",
                           "--eval-minutes", "7.4", "--lr", "1.5e-4", "--warmup-steps", "30",
                           *COMMON, "--colour-loss", "8", "--colour-loss-lambda", "0.05",
                           "--seed", "10")),
)
#: v1's last run, whose best checkpoint is scanned for the logit adjustment and exported as v1.
V1_RUN = "mobile10"
#: v2 (hint inputs): one run from the exported v1 weights with simulated hints on the data as it
#: is now; its best checkpoint is exported as the shipped weights.
V2_RUN = ("mobile11", ("--hints", "--budget-minutes", "75", "--eval-minutes", "12",
                       "--val-limit", "200", "--hint-val-limit", "60", "--lr", "3e-4",
                       "--warmup-steps", "100", "--hint-lr", "2e-3", "--rebalance-lambda", "0.9",
                       "--max-weight", "2.5", "--colour-loss", "4", "--colour-loss-lambda", "0.7",
                       "--unfreeze-at", "0.5", "--unfreeze-from", "10", "--encoder-lr", "5e-5",
                       "--object-share", "0.2", "--batch", "32", "--seed", "11"))
TRAINING_RUNS = (*(name for kind, name, _ in CHAIN if kind == "train"), V2_RUN[0])
SHIPPED_RUN = V2_RUN[0]
#: Where the chain writes v1 (the v2 run's starting point).
V1_WEIGHTS = "{runs}/mobile10/v1.safetensors"
SCAN_ALPHAS = ("0", "0.025", "0.05", "0.075", "0.1", "0.125", "0.15")
#: The first run computes the bin prior of the training split; the others reuse it.
PRIOR = "{runs}/mobile2/prior.json"
TIMED = ("--budget-minutes", "--eval-minutes")


@dataclass(frozen=True)
class Step:
    """One command of the chain: ``python -m chromatize.training.<module> *args``, finished once
    ``product`` is complete. The export's ``--logit-adjustment`` is read from ``alpha_from`` (the
    scan's JSON) when the step runs."""

    module: str
    args: tuple[str, ...]
    product: Path
    needs: tuple[Path, ...] = ()
    alpha_from: Path | None = None

    @property
    def command(self) -> list[str]:
        args = list(self.args)
        if self.alpha_from is not None:  # known once the scan has run ("ALPHA" in a dry run)
            alpha = (f"{json.loads(self.alpha_from.read_text())['alpha']:g}"
                     if self.alpha_from.exists() else "ALPHA")
            args += ["--logit-adjustment", alpha]
        return [sys.executable, "-m", f"chromatize.training.{self.module}", *args]


def _scaled(args: Sequence[str], factor: float) -> list[str]:
    out = list(args)
    for i, a in enumerate(out[:-1]):
        if a in TIMED:
            out[i + 1] = f"{float(out[i + 1]) * factor:g}"
    return out


def training_done(run: Path) -> bool:
    """Whether a training run in ``run`` used up its budget (its last.pt says so)."""
    last = run / "last.pt"
    if not last.exists():
        return False
    ckpt = load_checkpoint(last)
    return ckpt["state"]["elapsed"] >= float(ckpt["args"]["budget_minutes"]) * 60


def _training_step(runs: Path, name: str, options: Sequence[str], data: Path, backbone: Path,
                   time_scale: float, train_args: Sequence[str]) -> Step:
    """The chain's training run ``name``: the first starts from ``backbone`` and computes the
    prior, the others start from their ``--init`` and reuse that prior."""
    opts = [o.format(runs=runs) for o in options]
    needs = [Path(opts[opts.index("--init") + 1])] if "--init" in opts else []
    start: list[str] = ["--backbone", str(backbone)]
    if name != TRAINING_RUNS[0]:
        start = ["--prior", PRIOR.format(runs=runs)]
        needs.append(Path(start[1]))
    return Step("train", ("--out", str(runs / name), "--data", str(data), *start,
                          *_scaled(opts, time_scale), *train_args, "--resume"),
                runs / name / "last.pt", tuple(needs))


def steps(runs: Path, data: Path, backbone: Path, out: Path, time_scale: float = 1.0,
          train_args: Sequence[str] = (), overwrite: bool = False) -> list[Step]:
    """The chain, in order, with its paths filled in."""
    chain: list[Step] = []
    for kind, name, options in CHAIN:
        if kind == "average":
            product, members = name.format(runs=runs), [m.format(runs=runs) for m in options]
            chain.append(Step("averaging", (*members, "--out", product, "--data", str(data)),
                              Path(product), tuple(map(Path, members))))
        else:
            chain.append(_training_step(runs, name, options, data, backbone, time_scale,
                                        train_args))
    best = runs / V1_RUN / "best.pt"
    scan = runs / V1_RUN / "scan.json"
    v1 = Path(V1_WEIGHTS.format(runs=runs))
    chain.append(Step("logit_adjustment", ("--checkpoint", str(best), "--data", str(data),
                                           "--alphas", *SCAN_ALPHAS, "--json", str(scan)),
                      scan, (best,)))
    chain.append(Step("export", ("--checkpoint", str(best), "--out", str(v1),
                                 "--choose-temperature-on", str(data)),
                      v1, (best, scan), alpha_from=scan))
    name, options = V2_RUN
    chain.append(_training_step(runs, name, ("--init", str(v1), *options), data, backbone,
                                time_scale, train_args))
    best = runs / name / "best.pt"
    chain.append(Step("export", ("--checkpoint", str(best), "--out", str(out),
                                 "--choose-temperature-on", str(data),
                                 *(["--overwrite"] if overwrite else [])),
                      out, (best,)))
    return chain


def _done(step: Step, out: Path) -> bool:
    if step.module == "train":
        return training_done(step.product.parent)
    if step.product == out:
        return False  # main refuses an existing --out up front unless --overwrite
    return step.product.exists()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=Path, required=True, help="folder for the runs' checkpoints")
    p.add_argument("--data", type=Path, required=True,
                   help="folder of training photos, one sub-folder per source")
    p.add_argument("--backbone", type=Path, required=True,
                   help="ImageNet MobileNetV2 .tflite file the first run starts from")
    p.add_argument("--out", type=Path, default=Path("mobile.safetensors"),
                   help="the exported weights (default ./mobile.safetensors)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="multiply every training budget and evaluation interval")
    p.add_argument("--train-arg", action="append", default=[], metavar="OPTION",
                   help="extra option for every training run (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = p.parse_args(argv)
    if args.time_scale <= 0:
        p.error("--time-scale must be positive")
    if not args.data.is_dir():
        p.error(f"training photos not found: {args.data} (pass --data)")
    if not args.backbone.is_file():
        p.error(f"backbone not found: {args.backbone} (pass --backbone)")
    if not args.dry_run and args.out.exists() and not args.overwrite:
        p.error(f"{args.out} exists; pass --overwrite to replace it, or another --out")
    return args


def _run(step: Step, head: str, out: Path) -> int:
    """Run one step unless it is done; returns its exit code."""
    if _done(step, out):
        print(f"{head}: done ({step.product})", flush=True)
        return 0
    missing = [str(f) for f in step.needs if not f.exists()]
    if missing:
        print(f"error: {head} needs {', '.join(missing)}, which an earlier step should have "
              "written; delete that step's folder under --runs and run again", file=sys.stderr)
        return 1
    command = step.command  # reads the scan's alpha once, after the scan has run
    print(head + ": " + shlex.join(command), flush=True)
    code = subprocess.call(command)
    if code:
        print(f"error: {head} failed (exit code {code}); run the same command again to "
              "resume", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    chain = steps(args.runs.resolve(), args.data.resolve(), args.backbone.resolve(),
                  args.out.resolve(), args.time_scale,
                  [a for opt in args.train_arg for a in shlex.split(opt)], args.overwrite)
    for n, step in enumerate(chain, 1):
        head = f"[{n}/{len(chain)}] {step.module}"
        if args.dry_run:
            print(head + ": " + shlex.join(step.command), flush=True)
            continue
        code = _run(step, head, args.out.resolve())
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
