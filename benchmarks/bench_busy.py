"""A busy machine: the same work quiet and while two other processes keep both cores busy.

    .venv/bin/python benchmarks/bench_busy.py --count 20 --repeat 2

Users run chromatize beside GIMP, a browser or a backup. Each case below runs as a fresh child
process started *without* ``OMP_WAIT_POLICY`` in its environment (what a user gets), first on
the machine as it is ("quiet"), then with two ``python -c "while True: pass"`` processes started
and killed by this script ("busy"), side by side, ``--repeat`` times; the ratio is busy / quiet
of the medians. Target (issue 17): busy <= 2.6 x quiet.

Cases:

- ``cli``: ``chromatize colorize SCANS --out-dir OUT -q`` on ``--count`` 1200x800 grayscale JPEGs
  (made as in ``bench_batch.py``), default engine (ONNX Runtime on the CPU);
- ``cli, engine torch``: the same through torch eager (torch's OpenMP threads run the network);
- ``python api, engine torch``: ``chromatize.batch.colorize_folder`` from a script that imports
  chromatize first (notebooks, napari);
- ``hint changes``: ``--changes`` hint changes on a 1-MP image (``predict`` with hints, then
  ``finish``), as napari's live mode does; timed inside the child, after one warm-up change
  (start-up, model load and the hint graph excluded);
- ``... torch imported first``: the last two again from a script that imports torch before
  chromatize, so torch's OpenMP keeps its default spinning policy: what every entry point got
  before chromatize set the policy itself (the control).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batch import busy_processes, make_scans  # noqa: E402

TARGET = 2.6

API = """
import sys
{first}
from chromatize.batch import colorize_folder
report = colorize_folder(sys.argv[1], sys.argv[2], engine="torch")
assert not report.failures, report.failures
"""

HINTS = """
import sys
{first}
sys.path.insert(0, {bench!r})
from bench_hints import hints_for, photo
from chromatize.pipeline import Colorizer
colorizer = Colorizer("mobile", device="cpu")
image = photo(1.0)
prepared = colorizer.prepare(image)
hints = hints_for(0, image.shape[1], image.shape[0])  # warm-up: the hint graph is made here
colorizer.finish(prepared, colorizer.predict(prepared, hints=hints), hints=hints)
import time
started = time.perf_counter()
for step in range({changes}):
    hints = hints_for(step, image.shape[1], image.shape[0])
    colorizer.finish(prepared, colorizer.predict(prepared, hints=hints), hints=hints)
print(time.perf_counter() - started)
"""


def run_child(argv: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one child process, or the seconds it printed last (the hint loop alone,
    without start-up); fails loudly if it fails."""
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed: {result.stderr.decode()[-2000:]}")
    printed = result.stdout.decode().split()
    return float(printed[-1]) if printed else wall


def cases(scans: Path, changes: int) -> list[tuple[str, object]]:
    """(label, function of an output folder -> argv) for every case."""
    chromatize = str(Path(sys.executable).with_name("chromatize"))
    bench = str(Path(__file__).resolve().parent)

    def api(first: str):
        return lambda out: [sys.executable, "-c", API.format(first=first), str(scans), str(out)]

    def hints(first: str):
        return lambda out: [sys.executable, "-c",
                            HINTS.format(first=first, bench=bench, changes=changes)]

    torch_first = "import torch; torch.ones(1 << 16).sum()"
    return [
        ("cli", lambda out: [chromatize, "colorize", str(scans), "--out-dir", str(out), "-q"]),
        ("cli, engine torch", lambda out: [chromatize, "colorize", str(scans), "--out-dir",
                                           str(out), "-q", "--engine", "torch"]),
        ("python api, engine torch", api("")),
        (f"{changes} hint changes at 1 MP", hints("")),
        ("control: python api, engine torch, torch imported first", api(torch_first)),
        (f"control: {changes} hint changes, torch imported first", hints(torch_first)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20, help="scans per folder run")
    parser.add_argument("--changes", type=int, default=20, help="hint changes per hint run")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="labels (prefixes) of the cases to run")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # what users have
    print(f"{os.cpu_count()} CPUs, load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print("| case | quiet s | 2 busy processes s | busy / quiet | target <= 2.6 |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        scans = Path(tmp) / "scans"
        make_scans(scans, args.count)
        run_child([str(Path(sys.executable).with_name("chromatize")), "colorize", str(scans),
                   "--out-dir", str(Path(tmp) / "warm"), "-q"], env)  # ONNX export, caches
        for n, (label, argv) in enumerate(cases(scans, args.changes)):
            if args.only and not any(label.startswith(p) for p in args.only):
                continue
            quiet, busy = [], []
            for rep in range(args.repeat):
                quiet.append(run_child(argv(Path(tmp) / f"q{n}-{rep}"), env))
                hogs = busy_processes(2)
                try:
                    time.sleep(0.5)  # let them take the cores
                    busy.append(run_child(argv(Path(tmp) / f"b{n}-{rep}"), env))
                finally:
                    for hog in hogs:
                        hog.kill()
                        hog.wait()
            ratio = statistics.median(busy) / statistics.median(quiet)
            verdict = "—" if label.startswith("control") else (
                "met" if ratio <= TARGET else "missed")
            print(f"| {label} | {' / '.join(f'{t:.2f}' for t in quiet)} | "
                  f"{' / '.join(f'{t:.2f}' for t in busy)} | **{ratio:.2f}** | {verdict} |",
                  flush=True)
    print(f"load average at the end {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
