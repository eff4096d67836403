"""NumPy arrays across processes through POSIX shared memory instead of pickle.

A pickler hands every large, plain ``ndarray`` it meets (at any depth of the
arguments or result) to :func:`_persistent_id`, which copies it once into a fresh
segment under ``/dev/shm`` and pickles only ``(name, dtype, shape)``. The receiver
maps the segment and unlinks its name at once, so the memory lives exactly as long
as the array that views it, and nothing remains under ``/dev/shm``.

Segment names are ``weft-<owner pid>-<creator pid>-<n>``: the owner (the process
that created the executor) can remove everything a dead worker left behind by
prefix, and a worker whose owner died removes the owner's segments.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import io
import itertools
import mmap
import os
import pickle
import sys
import threading
from typing import Any

__all__ = ["SHM_DIR", "dumps", "loads", "discard", "remove_segments", "supported"]

SHM_DIR = "/dev/shm"
#: Arrays smaller than this are pickled: a copy is cheaper than a segment.
MIN_SHARED_BYTES = 64 * 1024

_counter = itertools.count()
_counter_lock = threading.Lock()


def supported() -> bool:
    return sys.platform.startswith("linux") and os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK)


def _next_name(owner: int) -> str:
    with _counter_lock:
        n = next(_counter)
    return f"weft-{owner}-{os.getpid()}-{n}"


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, owner: int, created: list[str]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._owner = owner
        self._created = created
        import numpy

        self._ndarray = numpy.ndarray

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) is not self._ndarray or obj.nbytes < MIN_SHARED_BYTES or obj.dtype.hasobject:
            return None
        name = _next_name(self._owner)
        path = os.path.join(SHM_DIR, name)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        self._created.append(name)
        try:
            os.ftruncate(fd, obj.nbytes)
            segment = mmap.mmap(fd, obj.nbytes)
        finally:
            os.close(fd)
        view = self._ndarray(obj.shape, dtype=obj.dtype, buffer=segment)
        view[...] = obj
        del view
        segment.close()
        return ("weft-shm", name, obj.dtype.str, obj.shape, obj.nbytes)


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        tag, name, dtype, shape, nbytes = pid
        if tag != "weft-shm":
            raise pickle.UnpicklingError(f"unknown persistent id {tag!r}")
        import numpy

        path = os.path.join(SHM_DIR, name)
        fd = os.open(path, os.O_RDWR)
        try:
            segment = mmap.mmap(fd, nbytes)
        finally:
            os.close(fd)
            os.unlink(path)
        return numpy.frombuffer(segment, dtype=numpy.dtype(dtype)).reshape(shape)


class _Discarder(pickle.Unpickler):
    """Reads a payload only to unlink the segments it names."""

    def persistent_load(self, pid: Any) -> Any:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(SHM_DIR, pid[1]))
        return None

    def find_class(self, module: str, name: str) -> Any:
        return lambda *a, **k: None


def dumps(obj: Any, *, owner: int, use_shm: bool = True) -> tuple[bytes, list[str]]:
    """Pickle ``obj`` with large arrays moved to shared memory; returns (bytes, segment names)."""
    created: list[str] = []
    buffer = io.BytesIO()
    if use_shm:
        try:
            _Pickler(buffer, owner, created).dump(obj)
        except BaseException:
            unlink_all(created)
            raise
    else:
        pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue(), created


def loads(data: bytes) -> Any:
    """Unpickle, mapping (and unlinking) every shared segment the payload names."""
    return _Unpickler(io.BytesIO(data)).load()


def discard(data: bytes) -> None:
    """Unlink the segments of a payload nobody will read."""
    with contextlib.suppress(Exception):
        _Discarder(io.BytesIO(data)).load()


def unlink_all(names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(SHM_DIR, name))


def remove_segments(owner: int, creator: int | None = None) -> int:
    """Remove the segments of ``owner`` (optionally only those ``creator`` made)."""
    pattern = f"weft-{owner}-{'*' if creator is None else creator}-*"
    removed = 0
    for path in glob.glob(os.path.join(SHM_DIR, pattern)):
        try:
            os.unlink(path)
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def _remove_own_segments_at_exit() -> None:
    if supported():
        remove_segments(os.getpid())


atexit.register(_remove_own_segments_at_exit)
