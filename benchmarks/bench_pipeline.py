"""End-to-end time and peak memory of the chromatize pipeline against the original demo's.

Both variants colorize the same JPEG photos with the ECCV16 architecture (random weights, seeded:
the cost does not depend on the weights) and write a JPEG. Each (size, variant) runs in its own
child process, launched by this script, so that its peak RSS (VmHWM) is its own.

- ``chromatize``: :class:`chromatize.pipeline.Colorizer` (L only at full resolution, model at
  ~256x256 with the aspect ratio kept, guided upsampling, chroma-reducing gamut mapping, strips).
- ``reference``: written the way richzhang/colorization's ``demo_release.py`` does it:
  scikit-image ``rgb2lab`` of the full image and of a 256x256 PIL-bicubic resize (float64), the
  official forward pass (softmax -> ab), ``F.interpolate(..., mode="bilinear")`` to full size,
  ``lab2rgb`` (float64) of the concatenation.

Stages: decode (JPEG -> uint8 array), colour (input -> L / Lab), model (resize to the render size,
network, decoding), upsample (ab to full size), recombine (L + ab -> 8-bit RGB), encode (JPEG q=95).

Usage (from the repository root; the results in benchmarks/RESULTS.md were made like this):

    nice -n 10 /work/venv/bin/python benchmarks/bench_pipeline.py --sizes 1 6 24 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("decode", "colour", "model", "upsample", "recombine", "encode")
VARIANTS = ("chromatize", "reference")
REPO = Path(__file__).resolve().parents[1]
KODAK = REPO.parent / "shared" / "data" / "val" / "kodak24" / "kodim23.png"


# ---------------------------------------------------------------------------------------------
# Child side: one variant on one image, stage times and peak RSS as one JSON line on stdout
# ---------------------------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    VmHWM (Linux) belongs to this program's own address space; ``ru_maxrss`` would also count the
    parent's resident size at fork time, since Linux keeps it across exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _build_model():
    import torch

    from chromatize.models.eccv16 import build_eccv16

    torch.manual_seed(0)
    return build_eccv16().eval()


def _decode(path: Path):
    import numpy as np
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # the benchmark's own big files
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _encode(rgb, out: Path) -> None:
    from PIL import Image

    Image.fromarray(rgb).save(out, quality=95)


def run_chromatize(image_path: Path, out_path: Path) -> dict[str, float]:
    from chromatize.pipeline import Colorizer

    colorizer = Colorizer(_build_model(), device="cpu")
    times: dict[str, float] = {}
    baseline = _peak_rss_mb()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    rgb = _decode(image_path)
    t1 = time.perf_counter()
    out = colorizer.colorize(rgb)
    t2 = time.perf_counter()
    _encode(out, out_path)
    t3 = time.perf_counter()
    stages = colorizer.last_timings
    times["decode"] = t1 - t0
    times["colour"] = stages["lightness"]
    times["model"] = stages["model"]
    times["upsample"] = stages["upsample"]
    # recombination plus the pipeline's own bookkeeping (validation, allocation)
    times["recombine"] = (t2 - t1) - stages["lightness"] - stages["model"] - stages["upsample"]
    times["encode"] = t3 - t2
    times["total"] = t3 - t0
    times["cpu_s"] = time.process_time() - cpu0  # all threads of the process
    times["baseline_rss_mb"] = baseline
    return times


def run_reference(image_path: Path, out_path: Path) -> dict[str, float]:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from skimage import color

    model = _build_model()
    times: dict[str, float] = {}
    baseline = _peak_rss_mb()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    img = _decode(image_path)
    t1 = time.perf_counter()
    # demo: preprocess_img(img, HW=(256, 256)); resize counted with the model like ours
    img_rs = np.asarray(Image.fromarray(img).resize((256, 256), resample=3))
    t2 = time.perf_counter()
    img_lab_orig = color.rgb2lab(img)
    img_lab_rs = color.rgb2lab(img_rs)
    tens_orig_l = torch.Tensor(img_lab_orig[:, :, 0])[None, None, :, :]
    tens_rs_l = torch.Tensor(img_lab_rs[:, :, 0])[None, None, :, :]
    del img_lab_orig, img_lab_rs
    t3 = time.perf_counter()
    with torch.no_grad():
        out_ab = model.reference_ab(model(tens_rs_l))
    t4 = time.perf_counter()
    # demo: postprocess_tens(tens_orig_l, out_ab)
    out_ab_orig = F.interpolate(out_ab, size=tens_orig_l.shape[2:], mode="bilinear")
    t5 = time.perf_counter()
    out_lab_orig = torch.cat((tens_orig_l, out_ab_orig), dim=1)
    rgb = color.lab2rgb(out_lab_orig.data.cpu().numpy()[0, ...].transpose((1, 2, 0)))
    rgb8 = np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)
    t6 = time.perf_counter()
    _encode(rgb8, out_path)
    t7 = time.perf_counter()
    times["decode"] = t1 - t0
    times["colour"] = t3 - t2
    times["model"] = (t2 - t1) + (t4 - t3)
    times["upsample"] = t5 - t4
    times["recombine"] = t6 - t5
    times["encode"] = t7 - t6
    times["total"] = t7 - t0
    times["cpu_s"] = time.process_time() - cpu0
    times["baseline_rss_mb"] = baseline
    return times


def child_main(variant: str, image_path: Path, out_path: Path) -> None:
    import warnings

    warnings.simplefilter("ignore")  # scikit-image's lab2rgb warns about clipped values
    runner = run_chromatize if variant == "chromatize" else run_reference
    result = runner(image_path, out_path)
    result["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result))


# ---------------------------------------------------------------------------------------------
# Parent side: test images, children, table
# ---------------------------------------------------------------------------------------------


def make_image(megapixels: float, folder: Path) -> Path:
    """A 3:2 JPEG photo of about ``megapixels`` (Kodak kodim23 upscaled, or a synthetic scene)."""
    import numpy as np
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    width = int(round((megapixels * 1e6 * 1.5) ** 0.5 / 8)) * 8
    height = width * 2 // 3
    path = folder / f"photo_{megapixels:g}mp.jpg"
    if KODAK.is_file():
        with Image.open(KODAK) as im:
            src = im.convert("RGB")
    else:
        y, x = np.mgrid[0:512, 0:768] / 512.0
        src = Image.fromarray(
            (np.stack((np.sin(3 * x), np.cos(2 * y), np.sin(x + y)), -1) * 100 + 128).astype(
                np.uint8
            )
        )
    src.resize((width, height), resample=Image.Resampling.BICUBIC).save(path, quality=92)
    return path


def machine_description() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), {platform.system()}"
    )


def run_child(variant: str, image: Path, out_dir: Path) -> dict[str, float]:
    out = out_dir / f"{image.stem}_{variant}.jpg"
    load = os.getloadavg()[0]
    proc = subprocess.run(
        [sys.executable, __file__, "--child", variant, str(image), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} on {image.name} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load_before"] = load
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 6, 24], help="megapixels")
    parser.add_argument("--repeat", type=int, default=1, help="runs per (size, variant); median")
    parser.add_argument(
        "--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="what to run"
    )
    parser.add_argument("--json", type=Path, help="also write all raw results here")
    parser.add_argument(
        "--child", nargs=3, metavar=("VARIANT", "IMAGE", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return 0

    print(f"machine: {machine_description()}")
    print(f"load average before start: {os.getloadavg()}")
    raw: dict[str, dict[str, list[dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="chromatize-bench-") as tmp:
        folder = Path(tmp)
        for mp in args.sizes:
            image = make_image(mp, folder)
            key = f"{mp:g} MP"
            raw[key] = {v: [] for v in args.variants}
            for _ in range(args.repeat):
                for variant in args.variants:  # interleaved, so contention hits both alike
                    result = run_child(variant, image, folder)
                    raw[key][variant].append(result)
                    print(f"  {key:>6} {variant:<10} total {result['total']:6.2f} s, "
                          f"peak RSS {result['peak_rss_mb']:6.0f} MB", flush=True)  # fmt: skip

    print()
    header = ["size", "variant", *STAGES, "total s", "CPU s", "peak RSS MB", "baseline RSS MB"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for key, variants in raw.items():
        for variant, runs in variants.items():
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            cells = [key, variant, *(f"{med[s]:.2f}" for s in STAGES), f"{med['total']:.2f}",
                     f"{med['cpu_s']:.1f}", f"{med['peak_rss_mb']:.0f}",
                     f"{med['baseline_rss_mb']:.0f}"]  # fmt: skip
            print("| " + " | ".join(cells) + " |")
        if set(variants) == set(VARIANTS):
            ours = statistics.median(r["total"] for r in variants["chromatize"])
            ref = statistics.median(r["total"] for r in variants["reference"])
            m_ours = statistics.median(r["peak_rss_mb"] for r in variants["chromatize"])
            m_ref = statistics.median(r["peak_rss_mb"] for r in variants["reference"])
            print(f"| {key} | speed-up {ref / ours:.1f}x | memory {m_ours / m_ref:.2f}x |")
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine_description(), "results": raw}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
