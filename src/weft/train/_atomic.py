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

__all__ = ["TMP_PREFIX", "StagedFile", "atomic_write", "fsync_directory", "staged_write", "temporary_owner"]

#: Temporary files start with this; anything left with it after a crash is garbage.
#: The full name is ``<prefix><target name>.<pid>.<thread id>``, so the writer is known.
TMP_PREFIX = ".weft-tmp-"


def temporary_owner(name: str) -> int | None:
    """The pid that wrote the temporary file ``name``, or None if it is not one of ours."""
    if not name.startswith(TMP_PREFIX) or name.count(".") < 2:
        return None
    pid = name.rsplit(".", 2)[-2]
    return int(pid) if pid.isdigit() else None


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


class StagedFile:
    """A complete file under a temporary name beside ``target``, not yet in place.

    :meth:`commit` renames it over ``target`` (and makes the rename durable);
    :meth:`discard` removes it. Splitting the write from the rename lets a caller put
    the file in place only while it holds a lock (see the checkpoint store).
    """

    def __init__(self, target: Path, temporary: Path, *, durable: bool) -> None:
        self.target = target
        self.temporary = temporary
        self.durable = durable

    def commit(self) -> None:
        os.replace(self.temporary, self.target)
        if self.durable:
            fsync_directory(self.target.parent)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.temporary)


@contextlib.contextmanager
def staged_write(path: Path, *, durable: bool = True) -> Iterator[tuple[BinaryIO, StagedFile]]:
    """Yield ``(file, staged)``: write the file; on normal exit it is flushed (fsynced if
    ``durable``) and closed, and ``staged.commit()`` puts it in place. On an exception
    the temporary file is removed."""
    tmp = path.parent / f"{TMP_PREFIX}{path.name}.{os.getpid()}.{threading.get_ident()}"
    staged = StagedFile(path, tmp, durable=durable)
    f = open(tmp, "wb")  # noqa: SIM115 (closed below on every path)
    try:
        yield f, staged
        f.flush()
        if durable:
            os.fsync(f.fileno())
        f.close()
    except BaseException:
        f.close()
        staged.discard()
        raise


@contextlib.contextmanager
def atomic_write(path: Path, *, durable: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file; on normal exit it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is untouched.
    ``durable=False`` skips the fsyncs (still atomic, not crash-durable).
    """
    with staged_write(path, durable=durable) as (f, staged):
        yield f
    try:
        staged.commit()
    except BaseException:
        staged.discard()
        raise
