"""Forward-pass time of the networks at 256x256, batch 1: ``mobile`` against ``eccv16``.

Issue target: one 256x256 forward of the embedded ``mobile`` model in at most 150 ms on the 2-core
CPU. Both networks run interleaved in the same process (same threads, same load), so the ratio
mobile/eccv16 is meaningful even on a busy machine; the absolute figure is what the target is
about. Weights do not change the cost: ``mobile`` uses the shipped weights, ``eccv16`` a seeded
random initialisation.

Usage (from the repository root):

    python benchmarks/bench_model_forward.py [--threads 2] [--repeat 30] [--size 256]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from chromatize.device import cpu_has_native_bf16
from chromatize.models.eccv16 import build_eccv16
from chromatize.weights import load_model

TARGET_MS = 150.0


def _time_forward(model: torch.nn.Module, x: torch.Tensor, bf16: bool) -> float:
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        start = time.perf_counter()
        model(x)
        return (time.perf_counter() - start) * 1000.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--bf16", action="store_true",
                        help="also time bfloat16 autocast where the CPU only emulates it")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {"mobile": load_model("mobile"), "eccv16": build_eccv16().eval()}
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    x = torch.rand(1, 1, args.size, args.size) * 100.0
    rows = []
    native = cpu_has_native_bf16()
    for bf16 in (False, True) if native or args.bf16 else (False,):
        times: dict[str, list[float]] = {name: [] for name in models}
        for model in models.values():  # warm-up (allocator, oneDNN kernels)
            for _ in range(3):
                _time_forward(model, x, bf16)
        for _ in range(args.repeat):  # interleaved, so both see the same conditions
            for name, model in models.items():
                times[name].append(_time_forward(model, x, bf16))
        med = {name: statistics.median(t) for name, t in times.items()}
        rows.append(("bfloat16 autocast" if bf16 else "float32", med))
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or 'cpu'}, "
          f"input 1x1x{args.size}x{args.size}, median of {args.repeat}; native bfloat16: "
          f"{'yes' if native else 'no (bfloat16 row skipped; --bf16 times the emulation)'}")
    print(f"parameters: mobile {params['mobile'] / 1e6:.2f} M, "
          f"eccv16 {params['eccv16'] / 1e6:.2f} M")
    print("| precision | mobile ms | eccv16 ms | mobile / eccv16 | mobile within 150 ms |")
    print("|---|---|---|---|---|")
    for label, med in rows:
        ok = "yes" if med["mobile"] <= TARGET_MS else "NO"
        print(f"| {label} | {med['mobile']:.1f} | {med['eccv16']:.1f} | "
              f"{med['mobile'] / med['eccv16']:.3f} | {ok} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
