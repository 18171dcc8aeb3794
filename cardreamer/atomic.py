"""Writing files atomically: a reader sees the old file or the whole new one, never half of it.

Every file the project writes for later reading (configs, checkpoints, logs rewritten on resume,
maps, datasets, videos, reports) goes through :func:`atomic_output` or :func:`write_atomic`: the
data is written to a temporary file in the same directory, flushed to disk, and renamed over the
target; on any error the temporary file is removed and the target is untouched, and an ``OSError``
that names no file (a full disk: ``ENOSPC`` from a write) is given the target's path.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO]:
    """A file object whose contents replace ``path`` when the ``with`` block ends without error.

    ``mode`` is ``"wb"`` or ``"w"`` (text, UTF-8 unless ``encoding`` is given). The file gets the
    permissions a plain ``open`` would give it (``mkstemp``'s 0600, widened by the umask).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_output writes whole files: mode must be 'w' or 'wb', not {mode!r}")
    if mode == "w":
        open_kwargs.setdefault("encoding", "utf-8")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.filename is None:
            error.filename = str(path)
        raise


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8)."""
    with atomic_output(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
