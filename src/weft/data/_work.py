"""What a map stage sends to a worker: a chunk of items, with the error policy applied there.

Module-level functions only: process workers import them by name.

A process worker packs a chunk whose results are NumPy arrays of one shape and dtype into
one stacked array: one pickle (or one shared-memory segment) instead of one per item. The
owner hands on its rows, or slices of it to a following batch stage (``MapNode.next_run``).
"""

from __future__ import annotations

import pickle
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from weft.errors import RemoteError

__all__ = ["ChunkResult", "run_chunk"]

#: (results, {position: (exception, traceback text)} or None, retries used, seconds).
#: ``results`` is a list, or one array stacking them when ``run_chunk`` packed it.
ChunkResult = tuple[Any, dict[int, tuple[BaseException, str]] | None, int, float]


def _packed(out: list[Any]) -> Any:
    """``out`` stacked into one array if every result is an array of the same shape and
    dtype (object arrays excluded: they pickle per element anyway), else ``out``."""
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
    return np.stack(out)


def _portable(exc: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else a RemoteError describing it."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RemoteError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")
    return exc


def run_chunk(fn: Callable[[Any], Any], values: Sequence[Any], retries: int, remote: bool) -> ChunkResult:
    """Apply ``fn`` to every value; failures are retried ``retries`` times, then recorded.

    A failure never stops the chunk: the caller applies the stage's policy (raise or
    skip) item by item, in order. ``remote`` makes recorded exceptions picklable.
    """
    start = time.perf_counter()
    out: list[Any] = []
    append = out.append
    first: Exception | None = None
    try:
        for v in values:
            append(fn(v))
        return (_packed(out) if remote else out), None, 0, time.perf_counter() - start
    except Exception as exc:
        first = exc  # the call on values[len(out)] failed once already
    errors: dict[int, tuple[BaseException, str]] = {}
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
                errors[i] = (_portable(exc) if remote else exc, text)
                del exc
                break
    return out, errors, retried, time.perf_counter() - start
