"""Folders of links to the held-out photos the model card and README report on.

    python -m chromatize.training.report_sets --data ../shared/data/train OUT

- ``OUT/validation``: every 5th held-out scene photo that chose nothing (not in the spread
  sample of 200 that ``mobile``'s training scored its checkpoints on, which also holds the
  baselines' sample of 100), named ``NNN_<source>__<name>`` (231 photos with today's data);
- ``OUT/imagenet``: the held-out photos of ``imagenet_sample`` under their own names
  (``<synset>_<name>``), for the semantic test of ``chromatize eval --models ... --classifier``.

Links, not copies: the photos' terms do not allow redistributing them. An existing OUT is refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chromatize.training.data import Split, source_of

#: The spread sample mobile v2's training scored its checkpoints on.
SELECTION_SAMPLE = 200
#: Every how many of the remaining validation photos the report set keeps.
REPORT_STRIDE = 5
IMAGENET_SOURCE = "imagenet_sample"


def report_files(data: Path, split: Split | None = None, selection: int = SELECTION_SAMPLE
                 ) -> list[Path]:
    """The validation report set: held-out scene photos outside the selection sample (of
    ``selection`` photos), every :data:`REPORT_STRIDE`-th."""
    split = split or Split()
    chosen = set(split.validation_sample(data, selection))
    return [f for f in split.validation_files(data) if f not in chosen][::REPORT_STRIDE]


def imagenet_files(data: Path, split: Split | None = None) -> list[Path]:
    """The held-out photos of the ImageNet sample (one photo per class, named by synset)."""
    return [f for f in (split or Split()).files(data)[1] if source_of(f, data) == IMAGENET_SOURCE]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chromatize.training.report_sets",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder of training photos")
    p.add_argument("--selection-sample", type=int, default=SELECTION_SAMPLE,
                   help="size of the spread sample that made choices (left out)")
    p.add_argument("out", type=Path, help="new folder to create")
    args = p.parse_args(argv)
    if args.out.exists():
        print(f"{args.out} already exists; not touching it", file=sys.stderr)
        return 1
    data = args.data.resolve()
    validation, imagenet = args.out / "validation", args.out / "imagenet"
    validation.mkdir(parents=True)
    imagenet.mkdir()
    report = report_files(data, selection=args.selection_sample)
    for i, f in enumerate(report):
        (validation / f"{i:03d}_{source_of(f, data)}__{f.name}").symlink_to(f)
    named = imagenet_files(data)
    for f in named:
        (imagenet / f.name).symlink_to(f)
    print(f"{validation}: {len(report)} photos; {imagenet}: {len(named)} photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
