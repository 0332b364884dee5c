"""Downloading weights into the cache: resumable, locked, verified, atomic.

Downloads go to ``<cache>/<filename>.part`` and are renamed to the final name with
:func:`os.replace` only after the byte count and the sha256 check out, so the final name never holds
a partial or unverified file. An interrupted transfer keeps its ``.part`` file and the next attempt
resumes it with an HTTP ``Range`` request; a ``.part`` whose hash turns out wrong is deleted.
"""

from __future__ import annotations

import http.client
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tqdm import tqdm

from chromatize.errors import DownloadError, ModelUnavailableError, WeightsError
from chromatize.registry import ModelSpec
from chromatize.weights.finding import (
    CACHE_ENV,
    cached_path,
    describe_expected_hash,
    file_sha256,
    spec_of,
    verified_cache_file,
    verify_sha256,
)

PART_SUFFIX = ".part"
_CHUNK = 1 << 20
_TIMEOUT_S = 30.0
_USER_AGENT = "chromatize-weights/1"


def download_weights(
    name: str | ModelSpec, force: bool = False, progress: bool = True
) -> Path:
    """Download a model's weights into the cache (verified) and return the file's path.

    ``name`` is a registered model name (or a :class:`ModelSpec`). An already cached, valid file
    is kept unless ``force``; with ``force`` it is downloaded again and replaces the old file only
    once the new one is verified.
    """
    spec = spec_of(name)
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
            f"model {name!r} has no download URL; give a weights file («weights=PATH»)"
        )
    target = cached_path(spec)
    if target.is_file() and not force:
        return verified_cache_file(spec, target)
    return download_into(spec, target, progress=progress)


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


def download_into(spec: ModelSpec, target: Path, progress: bool) -> Path:
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
            f"different or damaged file; try again later, or fetch it yourself and give it as "
            f"the weights file («weights=PATH»)"
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
            f"the file elsewhere and give it as the weights file («weights=PATH»)"
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
