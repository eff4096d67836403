"""The one protocol every backend implements: submit, map, statistics, close.

Backends only implement ``_submit`` (start one call, return a Future) and
``_shutdown``; bounded mapping, error notes, counters and the context-manager
behaviour live here once.
"""

from __future__ import annotations

import abc
import reprlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from weft._checks import check_int
from weft.errors import ExecutorClosed

__all__ = ["Executor", "ExecutorStatistics"]

T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S", bound="ExecutorStatistics")

#: Calls a map keeps started per worker by default: one running and one ready to go, so
#: a worker never idles waiting for the next submit.
_DEFAULT_IN_FLIGHT_PER_WORKER = 2


@dataclass(frozen=True, kw_only=True)
class ExecutorStatistics:
    """A snapshot of one executor's counters.

    ``busy_seconds`` is the time workers spent inside user functions, summed over
    workers; ``busy_fraction`` divides it by ``workers x elapsed_seconds``.
    ``cpu_seconds`` is the CPU time of those calls (the calling thread's CPU clock):
    busy time minus waiting, on I/O or, on a GIL build, for the GIL. Both count the
    call alone: on the process backend, not unpickling its arguments (which may import
    the function's module) nor pickling its result.

    A call whose result is visible (``Future.result()`` returned) is counted here.
    """

    backend: str
    workers: int
    reason: str
    submitted: int
    completed: int
    failed: int
    cancelled: int
    in_flight: int
    busy_seconds: float
    elapsed_seconds: float
    worker_restarts: int
    retried: int
    cpu_seconds: float = 0.0

    @property
    def busy_fraction(self) -> float:
        capacity = self.workers * self.elapsed_seconds
        return min(1.0, self.busy_seconds / capacity) if capacity > 0 else 0.0

    @property
    def computing_cores(self) -> float:
        """Cores' worth of CPU the workers spent in user functions (``cpu / elapsed``).

        N threads that are all busy yet compute on about one core are serialised by the
        GIL; far below one core, their calls mostly wait.
        """
        return self.cpu_seconds / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0


class _Counters:
    """Thread-safe counters behind ``statistics()``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = time.perf_counter()
        self.submitted = self.completed = self.failed = self.cancelled = 0
        self.busy_seconds = self.cpu_seconds = 0.0
        self.worker_restarts = self.retried = 0

    def count_done(self, future: Future[Any]) -> None:
        """Count a finished future; the caller holds ``lock``."""
        if future.cancelled():
            self.cancelled += 1
        elif future.exception() is not None:
            self.failed += 1
        else:
            self.completed += 1

    def add_busy(self, seconds: float, cpu_seconds: float = 0.0) -> None:
        with self.lock:
            self.busy_seconds += seconds
            self.cpu_seconds += cpu_seconds


def describe_item(index: int, item: object) -> str:
    return f"item #{index} ({reprlib.repr(item)})"


def annotate(exc: BaseException, fn: Callable[..., Any], index: int, item: object) -> BaseException:
    """Add a note naming the function and the input that raised ``exc`` (once)."""
    note = f"weft: raised by {getattr(fn, '__qualname__', repr(fn))} on {describe_item(index, item)}"
    if note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)
    return exc


def _values(pairs: Iterator[tuple[int, R]]) -> Iterator[R]:
    try:
        for _index, result in pairs:
            yield result
    finally:
        close = getattr(pairs, "close", None)
        if close is not None:
            close()


class Executor(abc.ABC):
    """Runs callables on a backend with bounded in-flight work.

    Use as a context manager, or call :meth:`close`; closing cancels queued work and
    leaves no thread, process or shared-memory segment behind.
    """

    backend: str = "?"

    def __init__(self, *, workers: int, reason: str = "") -> None:
        check_int("workers", workers)
        self.workers = workers
        self.reason = reason or f"backend {self.backend!r} was requested"
        self._counters = _Counters()
        self._closed = False
        self._in_flight: set[Future[Any]] = set()

    # -- what a backend provides ------------------------------------------------
    @abc.abstractmethod
    def _submit(self, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[R]:
        """Start ``fn(*args, **kwargs)``; the Future completes with its result or error."""

    @abc.abstractmethod
    def _shutdown(self, *, cancel: bool, timeout: float | None) -> None:
        """Stop workers and release every resource."""

    def _extra_restarts(self) -> tuple[int, int]:
        """(worker restarts, retried tasks); process backends override."""
        return (0, 0)

    # -- the protocol -------------------------------------------------------------
    def start(self) -> None:
        """Start the workers now rather than at the first ``submit``; returns at once.

        Worker processes then boot while the caller still prepares the first call
        (reads its first items); backends whose workers cost nothing to start do
        nothing. Idempotent.
        """
        if self._closed:
            raise ExecutorClosed(f"this {self.backend} executor is closed: create a new one to start workers")
        self._start()

    def _start(self) -> None:  # noqa: B027 - optional: most backends have nothing to start early
        """Start the workers (a backend whose workers are slow to start overrides this)."""

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        """Run ``fn(*args, **kwargs)`` on a worker; returns a ``concurrent.futures.Future``."""
        if self._closed:
            raise ExecutorClosed(f"this {self.backend} executor is closed: create a new one to submit work")
        future = self._submit(fn, args, kwargs)
        with self._counters.lock:
            self._counters.submitted += 1
            self._in_flight.add(future)
        future.add_done_callback(self._on_done)
        return future

    def _on_done(self, future: Future[Any]) -> None:
        with self._counters.lock:
            self._count_finished(future)

    def _count_finished(self, future: Future[Any]) -> None:
        """Count ``future`` once, whichever of its done-callback and ``statistics()`` comes
        first; the caller holds the counters' lock."""
        if future in self._in_flight:
            self._in_flight.discard(future)
            self._counters.count_done(future)

    def map(self, fn: Callable[[T], R], items: Iterable[T], *, ordered: bool = True,
            max_in_flight: int | None = None) -> Iterator[R]:
        """Yield ``fn(item)`` for every item, keeping at most ``max_in_flight`` calls started.

        ``ordered=False`` yields results as they complete. An exception from ``fn`` is
        re-raised with its traceback and a note naming the item. Closing the returned
        generator (or breaking out of the loop) cancels the calls not yet finished.
        """
        return _values(self.map_indexed(fn, items, ordered=ordered, max_in_flight=max_in_flight))

    def map_indexed(self, fn: Callable[[T], R], items: Iterable[T], *, ordered: bool = True,
                    max_in_flight: int | None = None) -> Iterator[tuple[int, R]]:
        """Like :meth:`map`, yielding ``(input index, result)`` pairs."""
        limit = check_int("max_in_flight", _DEFAULT_IN_FLIGHT_PER_WORKER * self.workers
                          if max_in_flight is None else max_in_flight)
        from weft.exec._map import bounded_map

        return bounded_map(self, fn, items, ordered=ordered, limit=limit)

    def statistics(self) -> ExecutorStatistics:
        return self._statistics(ExecutorStatistics)

    def _statistics(self, kind: type[S], **extra: Any) -> S:
        """The counters every executor keeps, as a ``kind`` with a backend's ``extra`` fields."""
        restarts, retried = self._extra_restarts()
        c = self._counters
        with c.lock:
            # A Future wakes its waiters before it runs its done-callbacks: a caller that
            # has the result may ask before the callback counted it. Count it now.
            for future in [f for f in self._in_flight if f.done()]:
                self._count_finished(future)
            return kind(
                backend=self.backend, workers=self.workers, reason=self.reason,
                submitted=c.submitted, completed=c.completed, failed=c.failed,
                cancelled=c.cancelled, in_flight=len(self._in_flight),
                busy_seconds=c.busy_seconds, elapsed_seconds=time.perf_counter() - c.started,
                worker_restarts=restarts, retried=retried, cpu_seconds=c.cpu_seconds, **extra,
            )

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, *, cancel: bool = True, timeout: float | None = None) -> None:
        """Stop the workers. ``cancel`` drops queued work; running calls finish first.

        Idempotent. With ``timeout``, gives up waiting for running calls after that many
        seconds (process workers are then terminated).
        """
        if self._closed:
            return
        self._closed = True
        self._shutdown(cancel=cancel, timeout=timeout)

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} backend={self.backend!r} workers={self.workers} {state}>"
