"""Dynamic batching: queue requests, form batches by rows, split results back.

The batcher lives on one asyncio event loop. Requests whose non-batch shapes or
dtypes differ are never mixed: a batch takes, in arrival order, the requests that
match the oldest one, up to ``max_batch_size`` rows. A batch starts when

- it is full (``max_batch_size`` rows), or
- its oldest request has waited ``max_delay`` seconds, or
- a worker has just freed up: requests queued while every worker was busy have
  waited already, so the freed worker takes everything queued (up to the maximum)
  at once rather than waiting for more.

At most ``workers`` batches compute at once; the rest wait here, where new requests
can still join them. The batcher holds at most ``queue_size`` requests, waiting or in a
running batch (:class:`Overloaded` beyond): under any overload an accepted request then
waits no longer than it would behind ``queue_size`` concurrent clients. A request past
its deadline is dropped before compute (:class:`Expired`); a cancelled request (client
gone, timeout) leaves the queue. When the model fails on a batch of several requests,
the batch is re-run in halves until each failure is pinned on the requests that cause it:
one bad request gets the model's error, the requests batched with it their results.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from weft._checks import check_int, check_number
from weft.errors import ConfigError, ModelError, ServeError, WeftError

__all__ = ["Batcher", "BatcherConfig", "BatcherStatistics", "Expired", "Overloaded"]

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
RunBatch = Callable[[Arrays], Awaitable[Arrays]]
Clock = Callable[[], float]


_CLOSED = "the server is shutting down and takes no new requests"


class Overloaded(ServeError):
    """The queue is full or the batcher is closed; answer 503 and ask to retry."""


class Expired(ServeError, TimeoutError):
    """The request's deadline passed before its result was ready; answer 504."""


@dataclass(frozen=True, kw_only=True)
class BatcherConfig:
    """``max_batch_size`` in rows; ``max_delay`` in seconds from the oldest queued request;
    ``queue_size`` requests may be held, waiting or computing; ``workers`` batches compute
    at once."""

    max_batch_size: int = 32
    max_delay: float = 0.002
    queue_size: int = 256
    workers: int = 1

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "queue_size", "workers"):
            check_int(name, getattr(self, name))
        check_number("max_delay", self.max_delay)


@dataclass(frozen=True, kw_only=True)
class BatcherStatistics:
    """A snapshot of a batcher's counters (requests unless named rows/batches)."""

    queued: int
    queued_rows: int
    running_batches: int
    running: int  # requests in the running batches
    submitted: int
    completed: int
    failed: int
    rejected: int
    expired: int
    cancelled: int
    batches: int
    rows: int
    split_batches: int = 0  # batches of several requests the model failed on, re-run in halves
    rerun_batches: int = 0  # the smaller batches those re-runs took

    @property
    def mean_batch_rows(self) -> float:
        return self.rows / self.batches if self.batches else 0.0


class _Pending:
    __slots__ = ("deadline", "enqueued", "future", "inputs", "key", "rows")

    def __init__(self, inputs: Arrays, key: tuple[Any, ...], rows: int, deadline: float | None,
                 future: asyncio.Future[Arrays], enqueued: float) -> None:
        self.inputs = inputs
        self.key = key
        self.rows = rows
        self.deadline = deadline
        self.future = future
        self.enqueued = enqueued


def batch_key(inputs: Arrays) -> tuple[Any, ...]:
    """What must be equal for two requests to share a batch: names, dtypes, non-batch dims."""
    return tuple((name, a.dtype.str, a.shape[1:]) for name, a in inputs.items())


def batch_rows(inputs: Arrays) -> int:
    """The rows of a request: the common first dimension of its inputs."""
    rows = -1
    for name, a in inputs.items():
        if a.ndim == 0:
            raise ConfigError(f"input {name!r} is a scalar: every input needs a first (batch) dimension")
        if rows == -1:
            rows = a.shape[0]
        elif a.shape[0] != rows:
            raise ConfigError(f"inputs disagree on the batch dimension: {name!r} has {a.shape[0]} rows, "
                              f"others {rows}")
    return max(rows, 0)


def _concatenate(batch: list[_Pending]) -> Arrays:
    if len(batch) == 1:
        return batch[0].inputs
    return {name: np.concatenate([p.inputs[name] for p in batch]) for name in batch[0].inputs}


def _check_rows(outputs: Arrays, rows: int) -> None:
    for name, value in outputs.items():
        if not isinstance(value, np.ndarray) or value.ndim == 0 or value.shape[0] != rows:
            shape = getattr(value, "shape", type(value).__name__)
            raise ModelError(f"output {name!r} must be an array with {rows} rows (one per input row), got {shape}")


def _model_failed(exc: Exception) -> bool:
    """Whether the model itself failed (worth re-running smaller batches), rather than
    the machinery around it (an executor closed, a worker process gone)."""
    return isinstance(exc, ModelError) or not isinstance(exc, WeftError)


class Batcher:
    """Forms batches for ``run`` (an async function of a batch) on the running loop.

    ``on_batch(rows)`` is told the size of every batch started. ``clock`` gives the time
    in seconds that ``max_delay`` and deadlines are measured on; the default is the
    running loop's clock (``loop.time()``). Tests pass a clock they move by hand, so
    that what happens at which time does not depend on how busy the machine is.
    """

    def __init__(self, run: RunBatch, config: BatcherConfig | None = None, *,
                 on_batch: Callable[[int], None] | None = None, clock: Clock | None = None) -> None:
        self.config = config or BatcherConfig()
        self._run = run
        self._on_batch = on_batch
        self._clock = clock
        self._queue: collections.deque[_Pending] = collections.deque()
        self._queued_rows = 0
        self._running = 0
        self._running_requests = 0
        self._full = (f"the queue is full ({self.config.queue_size} requests waiting or computing): "
                      "retry later")
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._idle: asyncio.Event | None = None
        self._submitted = self._completed = self._failed = 0
        self._rejected = self._expired = self._cancelled = 0
        self._batches = self._rows = 0
        self._split_batches = self._rerun_batches = 0

    # -- requests ------------------------------------------------------------------
    async def infer(self, inputs: Arrays, *, deadline: float | None = None) -> Arrays:
        """Queue one request and wait for its outputs (rows split back from the batch).

        ``deadline`` is on the batcher's clock (:meth:`clock`). Raises :class:`Overloaded`
        at once when the queue is full, :class:`Expired` past the deadline.
        """
        loop = asyncio.get_running_loop()
        rows = batch_rows(inputs)
        if rows > self.config.max_batch_size:
            raise ConfigError(f"the request has {rows} rows, more than max_batch_size="
                              f"{self.config.max_batch_size}: split it into smaller requests")
        self.admit()
        now = self.clock()
        if deadline is not None and deadline <= now:
            self._expired += 1
            raise Expired("the request's timeout passed before it was queued")
        pending = _Pending(inputs, batch_key(inputs), rows, deadline, loop.create_future(), now)
        self._queue.append(pending)
        self._queued_rows += rows
        self._submitted += 1
        self._pump(freed=False)
        try:
            if deadline is None:
                return await pending.future
            # Relative to now on the batcher's clock: the same as timeout_at(deadline) on
            # the loop's clock by default, and right for an injected clock too.
            async with asyncio.timeout(deadline - self.clock()):
                return await pending.future
        except Expired:
            raise
        except TimeoutError:
            self._expired += 1
            raise Expired("the request timed out before its result was ready") from None
        except asyncio.CancelledError:
            self._cancelled += 1
            raise
        finally:
            if not pending.future.done():
                pending.future.cancel()
            self._forget(pending)

    def _forget(self, pending: _Pending) -> None:
        try:
            self._queue.remove(pending)
        except ValueError:
            return  # already in a batch
        self._queued_rows -= pending.rows
        self._check_idle()

    # -- batch formation -----------------------------------------------------------
    def _pump(self, *, freed: bool) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = asyncio.get_running_loop()
        cfg = self.config
        while self._running < cfg.workers and self._queue:
            now = self.clock()
            head = self._queue[0]
            if head.future.done():
                self._queue.popleft()
                self._queued_rows -= head.rows
                continue
            if not (freed or self._closed or now - head.enqueued >= cfg.max_delay
                    or self._group_rows(head.key) >= cfg.max_batch_size):
                # The timer only wakes the batcher: whether the batch is due is decided on
                # the batcher's clock when it fires (a timer early or late changes nothing).
                self._timer = loop.call_later(head.enqueued + cfg.max_delay - now, self._pump_timer)
                break
            self._start(self._take(now))
        self._check_idle()

    def _pump_timer(self) -> None:
        self._timer = None
        self._pump(freed=False)

    def _group_rows(self, key: tuple[Any, ...]) -> int:
        limit = self.config.max_batch_size
        rows = 0
        for p in self._queue:
            if p.key == key:
                rows += p.rows
                if rows >= limit:
                    break
        return rows

    def _take(self, now: float) -> list[_Pending]:
        """Remove and return the oldest request's batch (FIFO within its group)."""
        key = self._queue[0].key
        limit = self.config.max_batch_size
        batch: list[_Pending] = []
        rows = 0
        keep: collections.deque[_Pending] = collections.deque()
        while self._queue:
            p = self._queue.popleft()
            if p.key != key or rows + p.rows > limit:
                keep.append(p)
                if p.key == key:
                    break  # the next one of this group does not fit: keep arrival order
                continue
            self._queued_rows -= p.rows
            if p.future.done():
                continue
            if p.deadline is not None and p.deadline <= now:
                self._expired += 1
                p.future.set_exception(Expired("the request timed out while it waited in the queue"))
                continue
            batch.append(p)
            rows += p.rows
        keep.extend(self._queue)
        self._queue = keep
        return batch

    def _start(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        rows = sum(p.rows for p in batch)
        self._running += 1
        self._running_requests += len(batch)
        self._batches += 1
        self._rows += rows
        if self._on_batch is not None:
            self._on_batch(rows)
        task = asyncio.ensure_future(self._compute(batch, _concatenate(batch)))
        task.add_done_callback(lambda t: self._finish(t, batch))

    async def _compute(self, batch: list[_Pending], inputs: Arrays) -> None:
        """Run one batch and answer each of its requests with its own rows.

        When the model fails on a batch of several requests, one of them may be the cause
        (an input the model cannot take): the batch is re-run in halves, recursively, so
        that the requests the model fails on alone get its error and every other request
        its result. Other failures (the executor closed, a worker died) fail the batch.
        """
        try:
            outputs = await self._run(inputs)
            _check_rows(outputs, sum(p.rows for p in batch))
        except Exception as exc:
            live = [p for p in batch if not p.future.done()]
            if len(live) > 1 and _model_failed(exc):
                self._split_batches += 1
                middle = len(live) // 2
                for half in (live[:middle], live[middle:]):
                    half = [p for p in half if not p.future.done()]  # clients may have left meanwhile
                    if half:
                        self._rerun_batches += 1
                        await self._compute(half, _concatenate(half))
                return
            if not isinstance(exc, ServeError):
                rows = sum(p.rows for p in batch)
                exc = ModelError(f"the model failed on a batch of {rows} rows: {type(exc).__name__}: {exc}")
            for p in live:
                self._failed += 1
                p.future.set_exception(exc)
            return
        start = 0
        for p in batch:
            end = start + p.rows
            if not p.future.done():
                self._completed += 1
                p.future.set_result({name: value[start:end] for name, value in outputs.items()})
            start = end

    def _finish(self, task: asyncio.Future[None], batch: list[_Pending]) -> None:
        self._running -= 1
        self._running_requests -= len(batch)
        error = (ServeError("the batch was interrupted before its result was ready") if task.cancelled()
                 else task.exception())
        if error is not None:  # _compute answers every request itself unless interrupted
            for p in batch:
                if not p.future.done():
                    self._failed += 1
                    p.future.set_exception(error)
        self._pump(freed=True)

    # -- lifecycle -----------------------------------------------------------------
    def clock(self) -> float:
        """Now, in seconds, on the clock ``max_delay`` and deadlines are measured on."""
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    def wake(self) -> None:
        """Start every batch that is due now; the loop's timers do it otherwise (call it
        after moving an injected clock)."""
        self._pump(freed=False)

    def _check_idle(self) -> None:
        if self._idle is not None and not self._queue and self._running == 0:
            self._idle.set()

    async def drain(self) -> None:
        """Refuse new requests, start every queued batch at once, wait until all finished."""
        self._closed = True
        self._idle = asyncio.Event()
        self._pump(freed=True)
        self._check_idle()
        await self._idle.wait()

    @property
    def closed(self) -> bool:
        return self._closed

    def admit(self) -> None:
        """Raise :class:`Overloaded` (and count it) when no request can be queued now.

        Cheap on purpose: the server asks :meth:`refusal` before it reads a body, so that
        under overload a refusal costs almost nothing and capacity goes to accepted work.
        """
        reason = self.refusal()
        if reason is not None:
            raise Overloaded(reason)

    def refusal(self) -> str | None:
        """Like :meth:`admit`, without raising: the reason a request is refused now (counted), or None."""
        if self._closed:
            self._rejected += 1
            return _CLOSED
        if len(self._queue) + self._running_requests >= self.config.queue_size:
            self._rejected += 1
            return self._full
        return None

    def statistics(self) -> BatcherStatistics:
        return BatcherStatistics(
            queued=len(self._queue), queued_rows=self._queued_rows, running_batches=self._running,
            running=self._running_requests,
            submitted=self._submitted, completed=self._completed, failed=self._failed,
            rejected=self._rejected, expired=self._expired, cancelled=self._cancelled,
            batches=self._batches, rows=self._rows, split_batches=self._split_batches,
            rerun_batches=self._rerun_batches)
