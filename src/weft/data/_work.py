"""What a map stage sends to a worker: a chunk of items, with the error policy applied there.

Module-level functions only: process workers import them by name.

A worker packs a chunk whose results hold NumPy arrays of one shape and dtype (bare, or
at the same place of dicts, tuples, ... of one shape) into one stacked array per place
(:mod:`weft.data._packing`): in a worker process always (one pickle, or one shared-memory
segment, instead of one per item; stacked straight into
the worker's result pool when it has room: one copy, not two), in a thread when a batch stage with the default
collate consumes the map (the batch's stacking then runs on the workers). The owner
hands on its rows, or slices of it to the batch stage (``MapNode.next_run``).
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from weft.exec._pool import result_buffer
from weft.exec._portable import portable_exception

__all__ = ["ChunkResult", "ItemError", "pack_chunk", "run_chunk"]


class ItemError(NamedTuple):
    """An item whose call failed (after its retries)."""

    exception: BaseException
    #: the worker's formatted traceback when the call ran in another process, else ""
    traceback: str


class ChunkResult(NamedTuple):
    """What a worker sends back for a chunk of items."""

    #: one result per item (None where it failed): a list, or (when ``run_chunk`` packed
    #: them) one array stacking them or a PackedRows
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


def _stack_rows(rows: list[Any], allocate: Callable[[tuple[int, ...], Any], Any] | None = None) -> Any:
    """One column of a packed chunk: arrays of one shape and dtype stacked (a new first axis).

    ``allocate(shape, dtype)`` may give the array to stack into (None: a new one)."""
    np = sys.modules["numpy"]
    first = rows[0]
    target = allocate((len(rows), *first.shape), first.dtype) if allocate is not None else None
    return np.stack(rows) if target is None else np.stack(rows, out=target)


def _packed(out: list[Any], allocate: Callable[[tuple[int, ...], Any], Any] | None = None) -> Any:
    """``out`` packed: one array if every result is an array of the same shape and dtype
    (object and 0-d arrays excluded), a :class:`~weft.data._packing.PackedRows` if the
    results are records with such places, else ``out`` as it is. ``allocate`` as for
    :func:`_stack_rows`."""
    np = sys.modules.get("numpy")
    if np is None or len(out) < 2:
        return out
    from weft.data._packing import pack, stacks

    if type(out[0]) is np.ndarray:
        return _stack_rows(out, allocate) if stacks(out) else out
    packed = pack(out, lambda rows: _stack_rows(rows, allocate))
    return out if packed is None else packed


def run_chunk(fn: Callable[[Any], Any], values: Sequence[Any], retries: int, remote: bool,
              batched: bool = False) -> ChunkResult:
    """Apply ``fn`` to every value; failures are retried ``retries`` times, then recorded.

    A failure never stops the chunk: the caller applies the stage's policy (raise or
    skip) item by item, in order. ``remote`` (the chunk runs in another process) makes
    recorded exceptions picklable and packs the results; ``batched`` (a batch stage with
    the default collate consumes them) packs them in this process too. A chunk with a
    failed item is not packed.
    """
    start, cpu_start = time.perf_counter(), time.thread_time()
    out: list[Any] = []
    append = out.append
    first: Exception | None = None
    try:
        for v in values:
            append(fn(v))
        results = _packed(out, result_buffer if remote else None) if remote or batched else out
        return ChunkResult(results, None, 0, time.perf_counter() - start,
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


def pack_chunk(chunk: ChunkResult) -> ChunkResult:
    """``chunk``'s results packed as :func:`run_chunk` packs them for a batch stage (for a
    chunk computed elsewhere: the items ``backend="auto"`` measured)."""
    return chunk._replace(results=_packed(chunk.results))
