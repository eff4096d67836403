"""Atomic, durable file replacement: write a temporary file, fsync it, rename it over
the target, fsync the directory. A reader (or a process killed at any instant) sees
either the old file or the new one, never a mixture."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["TMP_PREFIX", "atomic_write", "fsync_directory"]

#: Temporary files start with this; anything left with it after a crash is garbage.
TMP_PREFIX = ".weft-tmp-"


def fsync_directory(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: Path, *, durable: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file; on normal exit it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is untouched.
    ``durable=False`` skips the fsyncs (still atomic, not crash-durable).
    """
    tmp = path.parent / f"{TMP_PREFIX}{path.name}.{os.getpid()}.{threading.get_ident()}"
    f = open(tmp, "wb")  # noqa: SIM115 (closed below on every path)
    try:
        yield f
        f.flush()
        if durable:
            os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
        if durable:
            fsync_directory(path.parent)
    except BaseException:
        f.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
