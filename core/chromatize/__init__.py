"""chromatize: automatic photo colorization with a 313-bin classification colorizer.

Importing the package makes OpenMP threads of this process sleep instead of spinning while they
wait (``OMP_WAIT_POLICY=PASSIVE``) unless the environment already chose a policy: spinning threads
collapse on a machine whose cores other programs keep busy (``benchmarks/RESULTS.md``, "A busy
machine"). It happens here, before any submodule imports torch, because OpenMP reads the variable
once, when its runtime is loaded; child processes (workers, batch and Dask workers) inherit it.
If torch was imported before chromatize, its OpenMP runtime keeps its default policy: import
chromatize first, or set the variable yourself.
"""

from __future__ import annotations

import os as _os

_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
