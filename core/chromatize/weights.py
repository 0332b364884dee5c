"""Finding, downloading, verifying and loading model weights.

Resolution order (:func:`resolve_weights`): an explicit path → the user cache
(:func:`cache_dir`, overridable with ``CHROMATIZE_CACHE_DIR``) → weights shipped inside the
package → download (only when allowed).

Downloads go to ``<cache>/<filename>.part`` and are renamed to the final name with
:func:`os.replace` only after the byte count and the sha256 check out, so the final name never holds
a partial or unverified file. An interrupted transfer keeps its ``.part`` file and the next attempt
resumes it with an HTTP ``Range`` request; a ``.part`` whose hash turns out wrong is deleted.

Loading is safe: ``torch.load(weights_only=True)`` for ``.pth`` files and ``safetensors`` for ours.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pickle
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

import platformdirs
from tqdm import tqdm

from chromatize.errors import DownloadError, ModelUnavailableError, WeightsError
from chromatize.registry import ModelSpec, WeightsFormat, get_spec

if TYPE_CHECKING:
    import torch
    from torch import nn

CACHE_ENV = "CHROMATIZE_CACHE_DIR"
PART_SUFFIX = ".part"
_CHUNK = 1 << 20
_TIMEOUT_S = 30.0
_USER_AGENT = "chromatize-weights/1"


# --------------------------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Hashes
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------


def resolve_weights(
    spec: ModelSpec,
    path: str | os.PathLike[str] | None = None,
    allow_download: bool = False,
    progress: bool = True,
) -> Path:
    """The weights file to use for ``spec``: explicit ``path`` → cache → shipped → download.

    An explicit path is used as is (no hash check; it must exist). Cached and shipped files are
    checked against ``spec.sha256`` when it is set. Downloading happens only with
    ``allow_download``; otherwise a missing model raises :class:`ModelUnavailableError` that says
    how to get it.
    """
    if path is not None:
        explicit = Path(path).expanduser()
        if not explicit.is_file():
            raise WeightsError(f"weights file {explicit} does not exist or is not a file")
        return explicit

    cached = cached_path(spec)
    if cached.is_file():
        return _verified_cache_file(spec, cached)

    shipped = spec.shipped_path()
    if shipped is not None and shipped.is_file():
        verify_sha256(shipped, spec.sha256)
        return shipped

    if spec.url is None:
        if spec.shipped is not None:
            raise ModelUnavailableError(
                f"the embedded model {spec.name!r} is not in this build of chromatize "
                f"(no {spec.shipped} in the package, nothing at {cached}); use another model "
                f"(e.g. --model eccv16) or pass a weights file with --weights PATH"
            )
        raise ModelUnavailableError(
            f"model {spec.name!r} has no weights here (looked at {cached}) and no download URL; "
            f"pass a weights file with --weights PATH"
        )
    if not allow_download:
        raise ModelUnavailableError(
            f"model {spec.name!r} is not downloaded yet (looked at {cached}). Run "
            f"`chromatize models download {spec.name}`, or allow downloading "
            f"(allow_download=True), or fetch {spec.url} yourself and pass it with --weights PATH"
        )
    return _download(spec, cached, progress=progress)


def _verified_cache_file(spec: ModelSpec, path: Path) -> Path:
    try:
        verify_sha256(path, spec.sha256)
    except WeightsError as exc:
        raise WeightsError(
            f"{exc}. Delete it or run `chromatize models download {spec.name} --force`"
        ) from None
    return path


def _spec(model: str | ModelSpec) -> ModelSpec:
    return model if isinstance(model, ModelSpec) else get_spec(model)


def download_weights(
    name: str | ModelSpec, force: bool = False, progress: bool = True
) -> Path:
    """Download a model's weights into the cache (verified) and return the file's path.

    ``name`` is a registered model name (or a :class:`ModelSpec`). An already cached, valid file
    is kept unless ``force``; with ``force`` it is downloaded again and replaces the old file only
    once the new one is verified.
    """
    spec = _spec(name)
    name = spec.name
    if spec.url is None:
        shipped = spec.shipped_path()
        if shipped is not None and shipped.is_file():
            raise ModelUnavailableError(
                f"model {name!r} has no download URL and needs none: it ships inside the package"
            )
        if spec.shipped is not None:
            raise ModelUnavailableError(
                f"the embedded model {name!r} is not in this build of chromatize and has no "
                "download URL; use another model (e.g. eccv16) or pass a weights file"
            )
        raise ModelUnavailableError(
            f"model {name!r} has no download URL; pass a weights file with --weights PATH"
        )
    target = cached_path(spec)
    if target.is_file() and not force:
        return _verified_cache_file(spec, target)
    return _download(spec, target, progress=progress)


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


@contextmanager
def _locked(fh: IO[bytes]) -> Iterator[None]:
    """Exclusive advisory lock on an open file (POSIX), so two processes never append at once."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks via fcntl; best effort
        yield
        return
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise DownloadError(
            f"{fh.name} is being downloaded by another process; wait for it to finish"
        ) from None
    try:
        yield
    finally:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _download(spec: ModelSpec, target: Path, progress: bool) -> Path:
    assert spec.url is not None
    url = spec.url
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the weights cache {target.parent}: {exc}") from exc
    part = target.with_name(target.name + PART_SUFFIX)
    try:
        try:
            with open(part, "ab") as fh, _locked(fh):
                _fetch_into(url, part, fh, progress=progress, spec=spec)
        except OSError as exc:  # network errors are DownloadErrors already: this is the local disk
            raise DownloadError(
                f"cannot write the download to {part} ({exc}); free some disk space or point "
                f"{CACHE_ENV} at a writable folder"
            ) from None
    except BaseException:
        # Keep a partial transfer for resuming, but no empty file from a request that never began.
        if part.is_file() and part.stat().st_size == 0:
            part.unlink(missing_ok=True)
        raise
    try:
        verify_sha256(part, spec.sha256)
    except WeightsError:
        actual = file_sha256(part)
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"the file downloaded from {url} has sha256 {actual}, expected "
            f"{describe_expected_hash(spec.sha256)}; it was deleted. The server may be serving a "
            f"different or damaged file; try again later or fetch it yourself and pass "
            f"--weights PATH"
        ) from None
    os.replace(part, target)
    return target


def _open(url: str, offset: int) -> http.client.HTTPResponse:
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the partial is already as long as the file, or longer
            raise
        raise DownloadError(
            f"downloading {url} failed: the server answered HTTP {exc.code} {exc.reason}"
        ) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"cannot reach {url} ({reason}). Check your internet connection or proxy, or download "
            f"the file elsewhere and pass it with --weights PATH"
        ) from None


def _fetch_into(url: str, part: Path, fh: IO[bytes], progress: bool, spec: ModelSpec) -> None:
    """Append the rest of ``url`` to the open ``.part`` file, resuming from its current size."""
    offset = part.stat().st_size
    try:
        response = _open(url, offset)
    except urllib.error.HTTPError:  # 416: restart from scratch
        fh.truncate(0)
        offset = 0
        response = _open(url, 0)
    with response:
        status = response.status
        if offset and status != 206:  # the server ignored the Range header: start over
            fh.truncate(0)
            offset = 0
        elif offset:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                fh.truncate(0)
                raise DownloadError(
                    f"downloading {url}: the server resumed at the wrong place "
                    f"(Content-Range {content_range!r}, wanted byte {offset}); the partial file "
                    f"was discarded, run the download again"
                )
        length = response.headers.get("Content-Length")
        expected_total = offset + int(length) if length is not None else None
        fh.seek(offset)
        received = offset
        bar = tqdm(
            total=expected_total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=f"{spec.name}: {spec.filename}", disable=not progress, file=sys.stderr,
            leave=False,
        )  # fmt: skip
        try:
            while True:
                try:
                    block = response.read(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:  # reset, timeout, cut off
                    fh.flush()
                    raise DownloadError(
                        f"downloading {url} broke off after {received} bytes ({exc}); the partial "
                        f"file {part} is kept, run the same command again to resume"
                    ) from None
                if not block:
                    break
                fh.write(block)
                received += len(block)
                bar.update(len(block))
        finally:
            bar.close()
        fh.flush()
        os.fsync(fh.fileno())
    if expected_total is not None and received != expected_total:
        raise DownloadError(
            f"downloading {url} stopped after {received} of {expected_total} bytes; the partial "
            f"file {part} is kept, run the same command again to resume"
        )


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _format_for(path: Path, default: WeightsFormat) -> WeightsFormat:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return "safetensors"
    if suffix in (".pth", ".pt", ".bin", ".ckpt"):
        return "pth"
    return default


def load_state_dict(
    path: str | os.PathLike[str], fmt: WeightsFormat | None = None
) -> dict[str, torch.Tensor]:
    """Read a state dict safely: ``torch.load(weights_only=True)`` or ``safetensors``.

    ``fmt`` defaults to the file's suffix. A file that is not a readable state dict of tensors
    raises :class:`WeightsError` naming it.
    """
    import torch

    path = Path(path)
    fmt = fmt or _format_for(path, "pth")
    try:
        if fmt == "safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"weights file {path} does not exist") from None
    except pickle.UnpicklingError:
        # torch's own message advises weights_only=False, which we never do: do not pass it on.
        raise WeightsError(
            f"cannot read weights file {path} as {fmt}: it is corrupted, or it holds pickled "
            "objects other than tensors, which chromatize refuses to load for safety"
        ) from None
    except Exception as exc:  # zip, EOF, safetensors header errors: all mean "unreadable"
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise WeightsError(
            f"cannot read weights file {path} as {fmt} ({type(exc).__name__}: {detail}); "
            "the file is corrupted, truncated or in another format"
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError(
            f"weights file {path} does not hold a plain state dict (a mapping of parameter names "
            f"to tensors) but a {type(state).__name__}"
        )
    return dict(state)


def _fit_errors(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """What stops ``state`` from loading strictly into ``model`` (empty if it fits)."""
    expected = model.state_dict()
    problems: list[str] = []

    def listed(keys: list[str]) -> str:
        shown = ", ".join(keys[:5])
        return shown + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")

    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} instead of {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing:
        problems.append(f"{len(missing)} missing keys ({listed(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({listed(unexpected)})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches ({listed(shapes)})")
    return problems


def load_model(
    name: str | ModelSpec,
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    allow_download: bool = False,
) -> nn.Module:
    """Build model ``name``, load its weights (see :func:`resolve_weights`), return it in eval mode.

    ``name`` is a registered model name (or a :class:`ModelSpec`). ``weights`` is an explicit file
    for the architecture (no hash check). A file that is corrupted or does not fit the
    architecture raises :class:`WeightsError` naming the file, the expected hash and what did not
    match.
    """
    spec = _spec(name)
    path = resolve_weights(spec, weights, allow_download=allow_download)
    if weights is not None:
        hash_note = "an explicit file, not hash-checked"
    else:
        hash_note = describe_expected_hash(spec.sha256)
    state = load_state_dict(path, _format_for(path, spec.weights_format))
    model = spec.build()
    problems = _fit_errors(model, state)
    if problems:
        raise WeightsError(
            f"weights file {path} ({hash_note}) does not fit the {spec.name!r} architecture: "
            + "; ".join(problems)
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"weights file {path} ({hash_note}) cannot be loaded: {exc}") from None
    validate = getattr(model, "validate_weights", None)
    if callable(validate):
        validate(f"weights file {path} ({hash_note})")
    return model.to(device).eval()
