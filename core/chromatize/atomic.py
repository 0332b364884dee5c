"""Writing a file so that its final name only ever holds a complete file.

Image outputs have their own writer (:func:`chromatize.imageio.write_image`: fsync, and never
replacing a file unless asked); this is the plain version for the files the tools write besides
images (JSON reports, contact sheets, checkpoints, exported weights).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: The process's umask at import (reading it means setting it, so it is read once): temporary
#: files are made private, the final file gets the permissions a plain ``open`` would give it.
_UMASK = _current_umask()


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yields a temporary path beside ``path``; once the block succeeds it replaces ``path``.

    If the block raises, the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
