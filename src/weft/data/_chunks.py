"""How much work a map stage sends to a worker at a time, and how much it keeps in flight.

Items travel to workers in chunks sized to hold a target amount of work (measured as
the stage runs), which amortises the cost of a Future and, on processes, of two pickles
and a pipe round trip; results still come back per item. At most ``max_in_flight``
items are pulled and not yet handed on; by default fewer when results are large (a bound
in bytes, measured on the results as they come back). When a batch stage with the default collate
follows the map, chunks hold whole batches (``MapNode._chunk_size``), and the in-flight
bound leaves room for them.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["ChunkSizer", "batch_max_in_flight", "bytes_bounded_in_flight", "default_max_in_flight", "result_bytes"]

# Work per chunk sent to the executor. Without the GIL, threads contend on the shared
# queue and futures instead of on the GIL, and larger chunks measured 1.4x faster on
# pure-Python work (text tokenisation on 3.13t: 0.5 ms -> 6.2k items/s, 5 ms -> 9.0k).
# On processes every chunk costs two pickles, two pipe messages and a dispatcher wake-up
# (~0.2 ms of CPU in all): 10 ms chunks keep that near 2% (text tokenisation on 2 workers:
# 2 ms -> 12.4k items/s, 10 ms -> 14.9k).
TARGET_CHUNK_SECONDS = {"thread": 0.0005, "thread-nogil": 0.005, "process": 0.010}
#: Weight of the newest chunk in the running average of seconds per item that sizes
#: chunks: an exponential average over about the last five chunks, so one slow chunk
#: does not halve the chunk size while a lasting change in item cost shows within a few.
PER_ITEM_SMOOTHING = 0.2
#: Floor of the seconds per item used to size chunks (a call measured at 0 s must not
#: ask for unbounded chunks; the in-flight cap bounds them anyway).
MIN_PER_ITEM_SECONDS = 1e-7
#: Chunks are capped so this many fit in flight per worker: one running, one queued
#: behind it, so a worker never waits for the stage to send its next chunk.
CHUNKS_IN_FLIGHT_PER_WORKER = 2

# Default in-flight bound: room for two chunks per worker (one running, one queued behind
# it), of up to 8 items on threads (4 workers of the 64-item floor: a 0.5 ms target
# rarely needs more) and of 32 or more on processes, where larger chunks pay for
# themselves. The floors leave a stage with few workers room for chunks of useful size.
_THREAD_ITEMS_PER_WORKER = 4
_THREAD_MIN_IN_FLIGHT = 64
_PROCESS_ITEMS_PER_WORKER = 64
_PROCESS_MIN_IN_FLIGHT = 256
# On a cluster engine a call costs milliseconds (on 2 cores: a Ray task ~2.3 ms, a Dask
# task ~8.4 ms), so chunks hold 50-200 ms of work (the executor's target_chunk_seconds):
# room for chunks of up to 256 items per worker.
_CLUSTER_ITEMS_PER_WORKER = 512
_CLUSTER_MIN_IN_FLIGHT = 1024


def default_max_in_flight(workers: int, backend: str) -> int:
    """Items pulled and not yet handed on when the user does not say."""
    if backend == "cluster":
        return max(_CLUSTER_MIN_IN_FLIGHT, _CLUSTER_ITEMS_PER_WORKER * workers)
    if backend == "process":
        return max(_PROCESS_MIN_IN_FLIGHT, _PROCESS_ITEMS_PER_WORKER * workers)
    return max(_THREAD_MIN_IN_FLIGHT, _THREAD_ITEMS_PER_WORKER * workers)


#: Bytes of results the default in-flight bound keeps pulled and not yet handed on: for
#: large results the item bound shrinks to this, never below two items per worker (plus
#: the room for whole-batch chunks). Results of 4 MB in batches of 4 on 2 threads of
#: 3.13t: 64 items in flight (256 MB) ran at 0.87x a hand-written thread pool holding 16,
#: 16 items at 1.02x, peak RSS 285-317 -> 205 MB. Results under 1 MB are not affected.
IN_FLIGHT_RESULT_BYTES = 64 << 20


def result_bytes(results: Any) -> int:
    """Bytes of the NumPy arrays in a chunk's results (a list, a stacked array or a
    PackedRows); 0 when they hold no arrays (other objects are not sized)."""
    from weft.data._packing import PackedRows

    np = sys.modules.get("numpy")
    if np is None:
        return 0
    if type(results) is np.ndarray:
        return int(results.nbytes)
    if type(results) is PackedRows:
        return sum(int(c.nbytes) for c in results.columns if type(c) is np.ndarray)
    if type(results) is list and results and type(results[0]) is np.ndarray:
        return sum(int(r.nbytes) for r in results if type(r) is np.ndarray)
    return 0


def bytes_bounded_in_flight(limit: int, bytes_per_item: float, workers: int) -> int:
    """The default in-flight bound ``limit`` for results of ``bytes_per_item``: at most
    :data:`IN_FLIGHT_RESULT_BYTES` of them, and at least two items per worker."""
    if bytes_per_item <= 0:
        return limit
    return max(CHUNKS_IN_FLIGHT_PER_WORKER * workers, min(limit, int(IN_FLIGHT_RESULT_BYTES // bytes_per_item)))


def batch_max_in_flight(workers: int, batch: int) -> int:
    """The least default in-flight bound of a map whose chunks hold whole batches of
    ``batch`` items (0 when no batch stage follows): a chunk of at least one batch running
    and one queued per worker, as DataLoader's default keeps two batches per worker.

    Only as many workers as there are cores count: a map with more workers than cores
    waits (I/O), and whole-batch chunks would run a batch's waits one after another in
    one thread, with many times the items in flight. Its chunks stay sized by time."""
    from weft import runtime

    return CHUNKS_IN_FLIGHT_PER_WORKER * min(workers, runtime.usable_cores()) * batch


class ChunkSizer:
    """Items per chunk, from the seconds per item the finished chunks took.

    Until a first chunk is measured the size is 1 and the stage sends only one chunk per
    worker (:attr:`probing`): filling the in-flight bound with one-item chunks would cost
    a message (on a cluster engine, a task of milliseconds) per item for hundreds of items.
    """

    def __init__(self) -> None:
        self.size = 1
        self._per_item: float | None = None

    @property
    def probing(self) -> bool:
        """No chunk measured yet: send one chunk per worker and wait for the first."""
        return self._per_item is None

    def observe(self, seconds: float, items: int, *, kind: str, limit: int, workers: int,
                target: float | None = None) -> int:
        """Take in a finished chunk of ``items`` that took ``seconds`` on a worker; the new size.

        ``kind`` is a key of :data:`TARGET_CHUNK_SECONDS`; ``limit`` the stage's in-flight
        bound; ``target`` the work per chunk an executor states for itself (a cluster
        engine, whose per-call cost it measured), which replaces ``kind``'s.
        """
        per_item = seconds / items
        if self._per_item is None:
            self._per_item = per_item
        else:
            self._per_item += PER_ITEM_SMOOTHING * (per_item - self._per_item)
        cap = max(1, limit // (CHUNKS_IN_FLIGHT_PER_WORKER * workers))
        wanted = int((TARGET_CHUNK_SECONDS[kind] if target is None else target) / max(self._per_item, MIN_PER_ITEM_SECONDS))
        self.size = max(1, min(cap, wanted))
        return self.size

    def in_batches(self, batch: int, sent: int, *, limit: int, workers: int) -> int:
        """The size for a map whose results a batch stage of ``batch`` items collates, after
        ``sent`` items: whole batches, ending on a batch boundary, so that a batch is one
        slice of one chunk (a view, no copy). Items skipped on error shift the boundaries:
        the batches are still right, some of them join two chunks. When the in-flight bound
        (a ``max_in_flight`` the user set) has no room for a batch per chunk, the plain size."""
        if batch <= 1 or batch > max(1, limit // (CHUNKS_IN_FLIGHT_PER_WORKER * workers)):
            return self.size
        return max(batch, self.size - self.size % batch) - sent % batch
