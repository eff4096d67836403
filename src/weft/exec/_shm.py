"""NumPy arrays across processes through POSIX shared memory instead of pickle.

A pickler hands every large, plain ``ndarray`` it meets (at any depth of the
arguments or result) to :func:`_persistent_id`, which copies it once into a fresh
segment under ``/dev/shm`` and pickles only ``(name, dtype, shape)``. The receiver
maps the segment and unlinks its name at once, so the memory lives exactly as long
as the array that views it, and nothing remains under ``/dev/shm``.

A process worker's results go to its reused pool instead when it has room
(:mod:`weft.exec._pool`): the pickle then holds ``(offset, nbytes, dtype, shape)``
and the owner's array views the pool. A fresh segment remains the way for arguments,
for results the pool cannot hold, and with pools turned off.

Segment names are ``weft-<owner pid>-<creator pid>-<n>`` (a worker's pool:
``weft-<owner pid>-<worker pid>-pool``): the owner (the process that created the
executor) can remove everything a dead worker left behind by prefix, and a worker
whose owner died removes the owner's segments.
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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from weft.exec._pool import OwnerPool, WorkerPool

__all__ = ["SHM_DIR", "ArrayCounts", "dumps", "loads", "discard", "remove_segments", "supported"]

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
    def __init__(self, file: io.BytesIO, owner: int, created: list[str], pool: WorkerPool | None,
                 allocated: list[int]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._owner = owner
        self._created = created
        self._pool = pool
        self._allocated = allocated
        import numpy

        self._ndarray = numpy.ndarray

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) is not self._ndarray or obj.nbytes < MIN_SHARED_BYTES or obj.dtype.hasobject:
            return None
        pool = self._pool
        if pool is not None:
            offset = pool.claim(obj)  # stacked straight into the pool: no copy
            if offset is None:
                offset = pool.allocate(obj.nbytes)
                if offset is not None:
                    pool.array(offset, obj.shape, obj.dtype)[...] = obj
            if offset is not None:
                self._allocated.append(offset)
                return ("weft-pool", offset, obj.nbytes, obj.dtype.str, obj.shape)
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


@dataclass
class ArrayCounts:
    """The shared-memory arrays a receiver took out of payloads: those that viewed the
    sender's pool, and those that came each in a fresh segment (one file, one mapping
    and first-touch page faults per array: what the pool exists to avoid)."""

    pooled: int = 0
    pooled_bytes: int = 0
    fresh: int = 0
    fresh_bytes: int = 0


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, pool: OwnerPool | None, counts: ArrayCounts | None) -> None:
        super().__init__(file)
        self._pool = pool
        self._counts = counts
        self.viewed: set[int] = set()  # pool offsets now owned by an array's finalizer

    def persistent_load(self, pid: Any) -> Any:
        counts = self._counts
        if pid[0] == "weft-pool" and self._pool is not None:
            _, offset, nbytes, dtype, shape = pid
            array = self._pool.array(offset, nbytes, dtype, shape)
            self.viewed.add(offset)
            if counts is not None:
                counts.pooled += 1
                counts.pooled_bytes += nbytes
            return array
        tag, name, dtype, shape, nbytes = pid
        if tag != "weft-shm":
            raise pickle.UnpicklingError(f"unknown persistent id {tag!r}")
        if counts is not None:
            counts.fresh += 1
            counts.fresh_bytes += nbytes
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
    """Reads a payload only to unlink the segments it names and release its pool space."""

    def __init__(self, file: io.BytesIO, pool: OwnerPool | None, viewed: set[int]) -> None:
        super().__init__(file)
        self._pool = pool
        self._viewed = viewed

    def persistent_load(self, pid: Any) -> Any:
        if pid[0] == "weft-pool":
            # Released once: space an array already views is released by its finalizer.
            if self._pool is not None and pid[1] not in self._viewed:
                self._viewed.add(pid[1])
                self._pool.release(pid[1])
            return None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(SHM_DIR, pid[1]))
        return None

    def find_class(self, module: str, name: str) -> Any:
        return lambda *a, **k: None


def dumps(obj: Any, *, owner: int, use_shm: bool = True,
          pool: WorkerPool | None = None) -> tuple[bytes, list[str]]:
    """Pickle ``obj`` with large arrays moved to shared memory (into ``pool`` while it has
    room); returns (bytes, names of the fresh segments)."""
    created: list[str] = []
    allocated: list[int] = []
    buffer = io.BytesIO()
    if use_shm:
        try:
            _Pickler(buffer, owner, created, pool, allocated).dump(obj)
        except BaseException:
            unlink_all(created)
            if pool is not None:
                pool.release(allocated)
            raise
    else:
        pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue(), created


def loads(data: bytes, pool: OwnerPool | None = None, counts: ArrayCounts | None = None) -> Any:
    """Unpickle, mapping (and unlinking) every shared segment the payload names and
    viewing ``pool`` (the sending worker's) where it says, counting both in ``counts``.
    One that fails is discarded."""
    unpickler = _Unpickler(io.BytesIO(data), pool, counts)
    try:
        return unpickler.load()
    except BaseException:
        discard(data, pool, viewed=unpickler.viewed)
        raise


def discard(data: bytes, pool: OwnerPool | None = None, *, viewed: set[int] | None = None) -> None:
    """Unlink the segments of a payload nobody will read and release its pool space
    (except ``viewed``: offsets that arrays view already)."""
    with contextlib.suppress(Exception):
        _Discarder(io.BytesIO(data), pool, set() if viewed is None else viewed).load()


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
