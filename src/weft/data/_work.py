"""What a map stage sends to a worker: a chunk of items, with the error policy applied there.

Module-level functions only: process workers import them by name.

A process worker packs a chunk whose results are NumPy arrays of one shape and dtype into
one stacked array: one pickle (or one shared-memory segment) instead of one per item,
stacked straight into the worker's result pool when it has room (one copy, not two). The
owner hands on its rows, or slices of it to a following batch stage (``MapNode.next_run``).
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from weft.exec._pool import result_buffer
from weft.exec._portable import portable_exception

__all__ = ["ChunkResult", "ItemError", "run_chunk"]


class ItemError(NamedTuple):
    """An item whose call failed (after its retries)."""

    exception: BaseException
    #: the worker's formatted traceback when the call ran in another process, else ""
    traceback: str


class ChunkResult(NamedTuple):
    """What a worker sends back for a chunk of items."""

    #: one result per item (None where it failed): a list, or one array stacking them
    #: when the chunk ran in a worker process and ``run_chunk`` packed it
    results: Any
    #: failed items by position in the chunk, or None when every call succeeded
    errors: dict[int, ItemError] | None
    #: calls repeated under on_error="retry"
    retried: int
    #: wall time the worker spent on the chunk
    seconds: float
    #: CPU time of the worker's thread on the chunk: unlike ``seconds``, not inflated by
    #: waiting for the GIL or for a core (0.0 where not measured)
    cpu_seconds: float = 0.0


def _packed(out: list[Any], allocate: Callable[[tuple[int, ...], Any], Any] | None = None) -> Any:
    """``out`` stacked into one array if every result is an array of the same shape and
    dtype (object arrays excluded: they pickle per element anyway), else ``out``.

    ``allocate(shape, dtype)`` may give the array to stack into (None: a new one)."""
    np = sys.modules.get("numpy")
    if np is None or len(out) < 2:
        return out
    first = out[0]
    if type(first) is not np.ndarray or first.dtype.hasobject:
        return out
    shape, dtype = first.shape, first.dtype
    for a in out:
        if type(a) is not np.ndarray or a.shape != shape or a.dtype != dtype:
            return out
    target = allocate((len(out), *shape), dtype) if allocate is not None else None
    if target is None:
        return np.stack(out)
    return np.stack(out, out=target)


def run_chunk(fn: Callable[[Any], Any], values: Sequence[Any], retries: int, remote: bool) -> ChunkResult:
    """Apply ``fn`` to every value; failures are retried ``retries`` times, then recorded.

    A failure never stops the chunk: the caller applies the stage's policy (raise or
    skip) item by item, in order. ``remote`` makes recorded exceptions picklable.
    """
    start, cpu_start = time.perf_counter(), time.thread_time()
    out: list[Any] = []
    append = out.append
    first: Exception | None = None
    try:
        for v in values:
            append(fn(v))
        return ChunkResult(_packed(out, result_buffer) if remote else out, None, 0, time.perf_counter() - start,
                           time.thread_time() - cpu_start)
    except Exception as exc:
        first = exc  # the call on values[len(out)] failed once already
    errors: dict[int, ItemError] = {}
    retried = 0
    for i in range(len(out), len(values)):
        attempt = 0
        while True:
            try:
                if first is not None:
                    failed, first = first, None
                    raise failed
                append(fn(values[i]))
                break
            except Exception as exc:
                if attempt < retries:
                    attempt += 1
                    retried += 1
                    continue
                append(None)
                text = traceback.format_exc() if remote else ""
                errors[i] = ItemError(portable_exception(exc) if remote else exc, text)
                del exc
                break
    return ChunkResult(out, errors, retried, time.perf_counter() - start, time.thread_time() - cpu_start)
