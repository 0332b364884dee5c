"""``python -m chromatize`` runs the ``chromatize`` console script."""

from __future__ import annotations

import sys

from chromatize.cli import console_main

if __name__ == "__main__":
    sys.exit(console_main())
