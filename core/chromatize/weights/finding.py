"""Where a model's weights are on this machine: the cache, the package, hashes, status.

The cache directory is ``$CHROMATIZE_CACHE_DIR`` if set, otherwise the user cache directory
(``platformdirs``). Nothing here touches the network or imports torch.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

import platformdirs

from chromatize.errors import WeightsError
from chromatize.registry import ModelSpec, get_spec

CACHE_ENV = "CHROMATIZE_CACHE_DIR"
_CHUNK = 1 << 20

ModelStatus = Literal["shipped", "cached", "downloadable", "missing"]


def spec_of(model: str | ModelSpec) -> ModelSpec:
    """``model`` itself if it is a spec, else the registry's spec of that name."""
    return model if isinstance(model, ModelSpec) else get_spec(model)


def cache_dir() -> Path:
    """Directory holding downloaded weights: ``$CHROMATIZE_CACHE_DIR`` or the user cache dir.

    Not created here; downloads create it.
    """
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("chromatize", appauthor=False)) / "weights"


def cached_path(spec: ModelSpec) -> Path:
    """Where ``spec``'s weights live in the cache (whether or not the file exists)."""
    return cache_dir() / spec.filename


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_expected_hash(expected: str | None) -> str:
    """Human description of an expected digest (full, prefix, or None)."""
    if expected is None:
        return "no pinned sha256"
    if len(expected) == 64:
        return f"sha256 {expected.lower()}"
    return f"sha256 starting with {expected.lower()}"


def verify_sha256(path: Path, expected: str | None) -> str:
    """Return the file's sha256; raise :class:`WeightsError` unless it starts with ``expected``.

    ``expected`` may be a full digest or a prefix (torch.hub file names carry the first 8 hex
    digits, and that prefix is all that is known of some official files). None skips the check.
    """
    actual = file_sha256(path)
    if expected is not None and not actual.startswith(expected.lower()):
        raise WeightsError(
            f"{path}: sha256 is {actual}, expected {describe_expected_hash(expected)}; the file is "
            "corrupted or not the expected release"
        )
    return actual


def model_status(name: str) -> ModelStatus:
    """Where model ``name``'s weights would come from right now, without touching the network.

    Follows the resolution order of :func:`chromatize.weights.loading.resolve_weights` (cache
    before shipped): ``"cached"`` (a file in the user cache), ``"shipped"`` (inside the package),
    ``"downloadable"`` (has a URL, not yet downloaded) or ``"missing"`` (cannot be used).
    """
    spec = get_spec(name)
    if cached_path(spec).is_file():
        return "cached"
    shipped = spec.shipped_path()
    if shipped is not None and shipped.is_file():
        return "shipped"
    if spec.url:
        return "downloadable"
    return "missing"


def verified_cache_file(spec: ModelSpec, path: Path) -> Path:
    """``path`` after checking it against ``spec``'s hash (with advice if it is damaged)."""
    try:
        verify_sha256(path, spec.sha256)
    except WeightsError as exc:
        raise WeightsError(
            f"{exc}. Delete it or run `chromatize models download {spec.name} --force`"
        ) from None
    return path
