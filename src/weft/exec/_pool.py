"""A reused shared-memory pool per process worker, for the arrays its results carry.

A fresh segment per array costs five system calls and faults every page in twice (4 MB
is 1,024 faults on each side). Instead each worker creates one pool when it starts,
maps it once and names it in its first message; the owner maps it and unlinks the name
at once, so from then on nothing of it is under ``/dev/shm`` whichever side is killed
(before that, the owner's clean-up by name prefix on a worker's death removes it).

The worker (:class:`WorkerPool`) copies a large result array into free space of its
pool, or a packed chunk is stacked straight into it (:func:`result_buffer`), and sends
``(offset, nbytes, dtype, shape)``. The owner (:class:`OwnerPool`) hands out an array
viewing the pool. Each allocation is exported through its own ``uint8`` array: NumPy
collapses the base of every view, slice and reshape onto that array (its own base is a
memoryview, not an array), so it lives exactly as long as the last view of the space.
A finalizer on it queues the offset, and the owner sends the queued offsets to the
worker with its next task; only then does the worker reuse the space. Nothing waits:
when the pool has no room, the array travels in a fresh segment as before.

The owner's mapping is dropped with its last view: every such array holds the mapping,
so arrays kept after the executor closed, or after their worker died, stay valid.
"""

from __future__ import annotations

import collections
import contextlib
import math
import mmap
import os
import sys
import weakref
from typing import Any

__all__ = ["OwnerPool", "WorkerPool", "pool_bytes", "result_buffer"]

#: Pool size per worker unless the executor is told otherwise. The map stage keeps two
#: chunks per worker in flight and, by default, up to 128 items per worker (of 2)
#: pulled and not handed on (data._chunks): 128 results of 512 KB are 64 MiB, and
#: larger results come in chunks of one or two items (10 ms of work each), a few MB.
#: Untouched pages of the pool cost nothing (tmpfs allocates on first write), and the
#: first-fit allocator keeps reusing the low end, so the pages in use stay few.
DEFAULT_POOL_BYTES = 64 * 1024 * 1024
#: All workers' pools together take at most this share of ``/dev/shm``'s free space (a
#: container's 64 MB default leaves 8 MB a worker with two workers: fresh segments
#: carry the rest).
FREE_SHM_SHARE = 4
#: Below this a pool is not worth a mapping: arrays travel in fresh segments only.
MIN_POOL_BYTES = 1024 * 1024
#: Allocations start on this boundary (a cache line; more than any dtype's alignment).
ALIGNMENT = 64

#: This process's pool when it is a process worker (set by the worker's loop).
_current: WorkerPool | None = None


def _pool_name(owner: int) -> str:
    return f"weft-{owner}-{os.getpid()}-pool"


def pool_bytes(workers: int, requested: int | None, shm_dir: str) -> int:
    """The size of each worker's pool: ``requested`` (0 turns pools off), else the
    default bounded by the share of ``shm_dir``'s free space; 0 when too small."""
    if requested is not None:
        size = requested
    else:
        try:
            stat = os.statvfs(shm_dir)
        except OSError:
            return 0
        size = min(DEFAULT_POOL_BYTES, stat.f_bavail * stat.f_frsize // (FREE_SHM_SHARE * max(1, workers)))
    size -= size % mmap.PAGESIZE
    return size if size >= MIN_POOL_BYTES or (requested is not None and size > 0) else 0


def _address(array: Any) -> int:
    """Where the data of ``array`` starts in this process's memory."""
    address: int = array.__array_interface__["data"][0]
    return address


def _nbytes(shape: tuple[int, ...], dtype: Any) -> int:
    """Bytes of an array of ``shape`` and ``dtype`` (a NumPy dtype)."""
    return dtype.itemsize * math.prod(shape)  # type: ignore[no-any-return]


def _aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGNMENT) * ALIGNMENT


class WorkerPool:
    """The worker's side: a first-fit allocator over the mapped pool.

    Used by the worker's one loop thread only: allocations while encoding an answer,
    releases as they arrive with the next task.
    """

    def __init__(self, name: str, mapping: mmap.mmap, nbytes: int) -> None:
        self.name = name
        self.nbytes = nbytes
        self._mapping = mapping
        self._free: list[tuple[int, int]] = [(0, nbytes)]  # (offset, size), sorted, coalesced
        self._live: dict[int, int] = {}  # offset -> aligned size
        self._staged: dict[int, int] = {}  # address -> offset of result_buffer arrays not yet sent
        import numpy

        self._np = numpy
        self._address = _address(numpy.frombuffer(mapping, dtype=numpy.uint8, count=1))

    @classmethod
    def create(cls, owner: int, shm_dir: str, nbytes: int) -> WorkerPool | None:
        """A new pool of ``nbytes`` under ``shm_dir``, or None when it cannot be made."""
        if nbytes <= 0:
            return None
        name = _pool_name(owner)
        path = os.path.join(shm_dir, name)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        except OSError:
            return None
        try:
            os.ftruncate(fd, nbytes)
            mapping = mmap.mmap(fd, nbytes)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        finally:
            os.close(fd)
        return cls(name, mapping, nbytes)

    @property
    def free_bytes(self) -> int:
        return sum(size for _, size in self._free)

    def allocate(self, nbytes: int) -> int | None:
        """The offset of ``nbytes`` of free space, or None when no free extent holds them."""
        need = _aligned(max(1, nbytes))
        for i, (offset, size) in enumerate(self._free):
            if size >= need:
                if size == need:
                    del self._free[i]
                else:
                    self._free[i] = (offset + need, size - need)
                self._live[offset] = need
                return offset
        return None

    def release(self, offsets: Any) -> None:
        """Give back the space at ``offsets`` (unknown offsets are ignored)."""
        for offset in offsets:
            size = self._live.pop(offset, None)
            if size is None:
                continue
            free = self._free
            lo, hi = 0, len(free)
            while lo < hi:
                mid = (lo + hi) // 2
                if free[mid][0] < offset:
                    lo = mid + 1
                else:
                    hi = mid
            start, end = offset, offset + size
            if lo < len(free) and free[lo][0] == end:  # merge with the extent after
                end += free[lo][1]
                del free[lo]
            if lo > 0 and free[lo - 1][0] + free[lo - 1][1] == start:  # and the one before
                start = free[lo - 1][0]
                lo -= 1
                del free[lo]
            free.insert(lo, (start, end - start))

    def array(self, offset: int, shape: tuple[int, ...], dtype: Any) -> Any:
        """A writable array of ``shape`` and ``dtype`` over the space at ``offset``."""
        dt = self._np.dtype(dtype)
        raw = self._np.frombuffer(self._mapping, dtype=self._np.uint8, count=_nbytes(shape, dt), offset=offset)
        return raw.view(dt).reshape(shape)

    def result_buffer(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """An array in the pool to write a result into, or None when there is no room.

        Encoding the answer then sends it without a copy (:meth:`claim`); one that is
        not sent is released after the answer (:meth:`release_unsent`).
        """
        dt = self._np.dtype(dtype)
        offset = self.allocate(_nbytes(shape, dt))
        if offset is None:
            return None
        out = self.array(offset, shape, dt)
        self._staged[self._address + offset] = offset
        return out

    def claim(self, array: Any) -> int | None:
        """The offset of ``array`` if it is a whole :meth:`result_buffer` not sent yet."""
        if not self._staged:
            return None
        offset = self._staged.get(_address(array))
        if offset is None or not array.flags.c_contiguous or _aligned(max(1, array.nbytes)) != self._live.get(offset):
            return None
        del self._staged[self._address + offset]
        return offset

    def release_unsent(self) -> None:
        if self._staged:
            self.release(list(self._staged.values()))
            self._staged.clear()


class OwnerPool:
    """The owner's side of one worker's pool: arrays viewing it, releases queued for it."""

    def __init__(self, mapping: mmap.mmap) -> None:
        self._mapping: mmap.mmap | None = mapping
        # Appended to by finalizers in whichever thread drops a last view, taken by the
        # dispatcher: deque append and popleft are atomic, with or without the GIL.
        self._released: collections.deque[int] = collections.deque()
        import numpy

        self._np = numpy

    @classmethod
    def attach(cls, path: str, nbytes: int) -> OwnerPool | None:
        """Map the pool at ``path`` and unlink it; None (unlinked all the same) on failure."""
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return None
        try:
            return cls(mmap.mmap(fd, nbytes))
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)

    def array(self, offset: int, nbytes: int, dtype: str, shape: tuple[int, ...]) -> Any:
        """An array viewing the pool's space at ``offset``; the space is released when the
        last view of it is gone."""
        if self._mapping is None:
            raise ValueError("the pool is closed")
        np = self._np
        raw = np.frombuffer(self._mapping, dtype=np.uint8, count=nbytes, offset=offset)
        done = weakref.finalize(raw, self._released.append, offset)
        done.atexit = False
        return raw.view(np.dtype(dtype)).reshape(shape)

    def release(self, offset: int) -> None:
        """Queue ``offset`` for release (its payload was never turned into arrays)."""
        self._released.append(offset)

    def take_released(self) -> tuple[int, ...]:
        out: list[int] = []
        released = self._released
        while True:
            try:
                out.append(released.popleft())
            except IndexError:
                return tuple(out)

    def close(self) -> None:
        """Drop this reference to the mapping: it is unmapped when its last view is gone."""
        self._mapping = None


def result_buffer(shape: tuple[int, ...], dtype: Any) -> Any:
    """An array in this worker process's pool to write a large result into, or None
    (not a worker, no pool, too small to share, or no room)."""
    pool = _current
    if pool is None:
        return None
    np = sys.modules.get("numpy")
    if np is None:
        return None
    from weft.exec._shm import MIN_SHARED_BYTES

    if _nbytes(shape, np.dtype(dtype)) < MIN_SHARED_BYTES:
        return None
    return pool.result_buffer(shape, dtype)
