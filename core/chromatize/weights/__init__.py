"""Model weights: where they are (:mod:`.finding`), fetching them (:mod:`.downloading`), and
resolving and reading them safely (:mod:`.loading`).

Resolution order (:func:`resolve_weights`): an explicit path → the user cache
(:func:`cache_dir`, overridable with ``CHROMATIZE_CACHE_DIR``) → weights shipped inside the
package → download (only when allowed). The names below are re-exported for callers.
"""

from __future__ import annotations

from chromatize.weights.downloading import PART_SUFFIX, download_weights
from chromatize.weights.finding import (
    CACHE_ENV,
    ModelStatus,
    cache_dir,
    cached_path,
    describe_expected_hash,
    file_sha256,
    model_status,
    verify_sha256,
)
from chromatize.weights.loading import load_model, load_state_dict, resolve_weights

__all__ = [
    "CACHE_ENV", "PART_SUFFIX", "ModelStatus", "cache_dir", "cached_path", "describe_expected_hash",
    "download_weights", "file_sha256", "load_model", "load_state_dict", "model_status",
    "resolve_weights", "verify_sha256",
]
