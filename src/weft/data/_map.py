"""The map stage: ``fn`` on every item, inline or on a weft.exec executor.

Items travel to workers in small chunks (sized so a chunk holds ~0.5 ms of work on
threads, ~2 ms on processes), which amortises the cost of a Future and of a pipe
round trip; results still come back per item. At most ``max_in_flight`` items are
pulled and not yet handed on.

Resume. Ordered: the state after an item is the upstream state recorded when that
item was pulled. Unordered: the upstream state before the oldest item not yet handed
on, plus the keys handed on since; on resume those keys are skipped when they come
round again. The span between the oldest pending item and the newest pulled one is
bounded, so that key list stays small.
"""

from __future__ import annotations

import logging
import pickle
import queue
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from weft import runtime
from weft.data._node import Key, Node
from weft.data._stages import freeze
from weft.data._work import ChunkResult, run_chunk

__all__ = ["MapNode"]

log = logging.getLogger(__name__)

# Work per chunk sent to the executor. Without the GIL, threads contend on the shared
# queue and futures instead of on the GIL, and larger chunks measured 1.4x faster on
# pure-Python work (text tokenisation on 3.13t: 0.5 ms -> 6.2k items/s, 5 ms -> 9.0k).
# On processes every chunk costs two pickles, two pipe messages and a dispatcher wake-up
# (~0.2 ms of CPU in all): 10 ms chunks keep that near 2% (text tokenisation on 2 workers:
# 2 ms -> 12.4k items/s, 10 ms -> 14.9k).
_TARGET_CHUNK_SECONDS = {"thread": 0.0005, "thread-nogil": 0.005, "process": 0.010}


def default_max_in_flight(workers: int, backend: str) -> int:
    """Items pulled and not yet handed on when the user does not say.

    Room for two chunks per worker (one running, one queued behind it): chunks of up to
    8 items on threads, of 32 or more on processes, where larger chunks pay for themselves.
    """
    return max(256, 64 * workers) if backend == "process" else max(64, 4 * workers)


#: what a pipeline keeps of a map stage between passes: (executor, label, reason, remote, limit)
_Parked = tuple[Any, str, str, bool, int]


class _Chunk:
    __slots__ = ("future", "keys", "ordinals", "posts")

    def __init__(self, future: Future[ChunkResult], keys: list[Key], posts: list[Any],
                 ordinals: list[int]) -> None:
        self.future = future
        self.keys = keys
        self.posts = posts
        self.ordinals = ordinals


class MapNode(Node):
    kind = "map"

    def __init__(self, up: Node, fn: Callable[[Any], Any], *, workers: int, backend: str, ordered: bool,
                 max_in_flight: int | None, on_error: str, retries: int, name: str) -> None:
        super().__init__(up, name=name)
        self._fn = fn
        self._workers = workers
        self._backend = backend
        self._ordered = ordered or backend == "serial"
        self._user_limit = max_in_flight
        self._limit = max_in_flight or default_max_in_flight(workers, "thread")
        self._raise = on_error != "skip"
        self._retries = retries if on_error == "retry" else 0
        self._executor: Any = None
        self._label = "inline" if backend == "serial" else backend
        self._reason = "backend='serial': runs in the thread that pulls from it"
        self._remote = False
        self._chunk = 1
        self._per_item: float | None = None
        self.skipped = 0
        self.retried = 0
        #: set by a pipeline that keeps workers between passes: takes the executor at close
        self.park: Callable[[_Parked], None] | None = None
        self._reset_flow(None)

    # -- bookkeeping -------------------------------------------------------------------
    def _reset_flow(self, post: Any) -> None:
        self._window: deque[_Chunk] = deque()
        self._flying: set[Future[ChunkResult]] = set()
        self._done: queue.SimpleQueue[_Chunk] = queue.SimpleQueue()
        self._chunks_in_flight = 0
        self._in_flight = 0
        self._ready: _Chunk | None = None
        self._results: Any = []  # a list, or an array of rows a worker process packed
        self._errors: dict[int, tuple[BaseException, str]] | None = None
        self._pos = 0
        self._exhausted = False
        self._ordinal = 0
        self._last_post = post
        self._state_post = post
        self._skip: set[Key] = set()
        # unordered only: pull order with pre-states, handed-on ordinals, handed-on keys
        self._pending: deque[tuple[int, Any]] = deque()
        self._gone: set[int] = set()
        self._emitted: list[tuple[int, Key]] = []

    def adopt(self, parked: _Parked) -> None:
        """Run on the workers a previous pass of the same pipeline left running."""
        self._executor, self._label, self._reason, self._remote, self._limit = parked

    def _start_executor(self) -> None:
        import weft.exec

        backend, reason = self._backend, ""
        if backend == "auto":
            backend, reason = self._choose()
        self._executor = weft.exec.create(backend, workers=self._workers, **({"reason": reason} if reason else {}))
        self._remote = backend == "process"
        if self._user_limit is None:
            self._limit = default_max_in_flight(self._workers, backend)
        self._label = backend if self._backend != "auto" else f"auto:{backend}"
        self._reason = self._executor.statistics().reason

    def _choose(self) -> tuple[str, str]:
        """The auto rule of weft.exec, measured on this stage's first items (kept as results)."""
        if not runtime.gil_enabled():
            return "thread", "the GIL is off: threads run Python in parallel, sharing data by reference"
        if min(self._workers, runtime.usable_cores()) <= 1:
            return "thread", "one usable core or worker: processes would add copying, not parallelism"
        try:
            pickle.dumps(self._fn)
        except Exception:
            return "thread", ("the function cannot be pickled, so it cannot go to processes "
                              "(define it at module level to allow them): threads")
        from weft.exec import calibrate

        pulled: list[tuple[Key, Any, int]] = []

        def items() -> Any:
            while True:
                try:
                    key, value, post, ordinal = self._pull()
                except StopIteration:
                    self._exhausted = True
                    return
                pulled.append((key, post, ordinal))
                yield len(pulled) - 1, value

        def measured(value: Any) -> ChunkResult:
            return run_chunk(self._fn, (value,), self._retries, False)

        decision, done = calibrate(measured, items(), workers=self._workers)
        results = [r for _, r in sorted(done, key=lambda p: p[0])]
        if results:
            future: Future[ChunkResult] = Future()
            errors = {i: r[1][0] for i, r in enumerate(results) if r[1]}
            future.set_result(([r[0][0] for r in results], errors or None, sum(r[2] for r in results),
                               sum(r[3] for r in results)))
            self._add_chunk(future, [p[0] for p in pulled], [p[1] for p in pulled], [p[2] for p in pulled])
        return decision.backend, decision.reason

    def _pull(self) -> tuple[Key, Any, Any, int]:
        """The next upstream item that was not already handed on before a resume."""
        up = self.up
        assert up is not None
        while True:
            key, value = up.next()
            post = up.state()
            ordinal = self._ordinal
            self._ordinal = ordinal + 1
            if not self._ordered:
                self._pending.append((ordinal, self._last_post))
            self._last_post = post
            if self._skip and key in self._skip:
                self._skip.discard(key)
                self._hand_on(ordinal, key)
                continue
            return key, value, post, ordinal

    def _hand_on(self, ordinal: int, key: Key) -> None:
        if not self._ordered:
            self._gone.add(ordinal)
            self._emitted.append((ordinal, key))
            if len(self._emitted) > 4 * self._limit + 64:
                oldest = self._oldest()
                self._emitted = [(o, k) for o, k in self._emitted if oldest is not None and o > oldest]

    def _oldest(self) -> int | None:
        pending, gone = self._pending, self._gone
        while pending and pending[0][0] in gone:
            gone.discard(pending.popleft()[0])
        return pending[0][0] if pending else None

    def _add_chunk(self, future: Future[ChunkResult], keys: list[Key], posts: list[Any],
                   ordinals: list[int]) -> None:
        chunk = _Chunk(future, keys, posts, ordinals)
        self._in_flight += len(keys)
        self._chunks_in_flight += 1
        self._flying.add(future)
        if self._ordered:
            self._window.append(chunk)
        else:
            done = self._done
            future.add_done_callback(lambda _f, c=chunk, q=done: q.put(c))  # type: ignore[misc]

    def _fill(self) -> None:
        limit = self._limit
        span = 8 * limit
        while not self._exhausted and self._in_flight < limit:
            if not self._ordered:
                oldest = self._oldest()
                if oldest is not None and self._ordinal - oldest >= span:
                    return
            n = min(self._chunk, limit - self._in_flight)
            if n < self._chunk and self._in_flight:
                return  # wait for room for a whole chunk: small leftovers would stay small
            keys: list[Key] = []
            values: list[Any] = []
            posts: list[Any] = []
            ordinals: list[int] = []
            start = time.perf_counter()
            try:
                for _ in range(n):
                    key, value, post, ordinal = self._pull()
                    keys.append(key)
                    values.append(value)
                    posts.append(post)
                    ordinals.append(ordinal)
            except StopIteration:
                self._exhausted = True
            finally:
                self.wait_up += time.perf_counter() - start
            if keys:
                future = self._executor.submit(run_chunk, self._fn, values, self._retries, self._remote)
                self._add_chunk(future, keys, posts, ordinals)

    # -- iteration ---------------------------------------------------------------------
    def next(self) -> tuple[Key, Any]:
        if self._backend == "serial":
            return self._next_inline()
        while True:
            chunk = self._ready
            if chunk is not None and self._pos < len(chunk.keys):
                i = self._pos
                self._pos = i + 1
                key = chunk.keys[i]
                self._state_post = chunk.posts[i]
                self._hand_on(chunk.ordinals[i], key)
                if self._errors and i in self._errors:
                    self._fail(key, *self._errors[i])
                    continue
                self.items += 1
                return key, self._results[i]
            self._advance()

    def next_run(self, n: int) -> tuple[list[Key], list[Any]]:
        """Up to ``n`` items (fewer only at the end) as their keys and a list of pieces.

        A piece is a list of values, or an array whose rows are the values: a slice of
        a chunk a worker process packed. A batch of such rows is then one slice, or one
        concatenation, instead of one view per row and a stack of them. Bookkeeping
        (resume state, hand-on order) is the same as ``n`` calls of :meth:`next`.
        """
        keys: list[Key] = []
        pieces: list[Any] = []
        while len(keys) < n:
            chunk = self._ready
            if self._backend != "serial" and (chunk is None or self._pos >= len(chunk.keys)):
                try:
                    self._advance()
                except StopIteration:
                    if keys:
                        break
                    raise
                continue
            results = self._results
            if chunk is not None and self._errors is None and type(results) is not list:
                i = self._pos
                j = min(len(chunk.keys), i + n - len(keys))
                for k in range(i, j):
                    self._hand_on(chunk.ordinals[k], chunk.keys[k])
                keys.extend(chunk.keys[i:j])
                self._state_post = chunk.posts[j - 1]
                self._pos = j
                self.items += j - i
                pieces.append(results[i:j])
                continue
            try:
                key, value = self.next()
            except StopIteration:
                if keys:
                    break
                raise
            keys.append(key)
            pieces.append([value])
        return keys, pieces

    def _advance(self) -> None:
        """Make the next finished chunk current; StopIteration when nothing is left."""
        if self._executor is None:
            self._start_executor()
        self._ready = None
        self._results = []
        self._errors = None
        self._fill()
        if self._chunks_in_flight == 0:
            raise StopIteration
        start = time.perf_counter()
        chunk = self._window.popleft() if self._ordered else self._done.get()
        results, errors, retried, seconds = chunk.future.result()
        self._flying.discard(chunk.future)
        self.wait_down += time.perf_counter() - start
        self._chunks_in_flight -= 1
        self._in_flight -= len(chunk.keys)
        self.retried += retried
        self._tune(seconds / len(chunk.keys))
        self._ready, self._results, self._errors, self._pos = chunk, results, errors, 0
        self._fill()

    def _tune(self, per_item: float) -> None:
        self._per_item = per_item if self._per_item is None else 0.8 * self._per_item + 0.2 * per_item
        kind = "process" if self._remote else ("thread" if runtime.gil_enabled() else "thread-nogil")
        target = _TARGET_CHUNK_SECONDS[kind]
        cap = max(1, self._limit // (2 * self._workers))
        self._chunk = max(1, min(cap, int(target / max(self._per_item, 1e-7))))

    def _next_inline(self) -> tuple[Key, Any]:
        while True:
            key, value, post, _ = self._pull()
            self._state_post = post
            start = time.perf_counter()
            results, errors, retried, _ = run_chunk(self._fn, (value,), self._retries, False)
            self.busy += time.perf_counter() - start
            self.retried += retried
            if errors:
                self._fail(key, *errors[0])
                continue
            self.items += 1
            return key, results[0]

    def _fail(self, key: Key, exc: BaseException, text: str) -> None:
        if not self._raise:
            self.skipped += 1
            log.debug("weft: stage %d %r skipped source index %r: %r", self.index, self.name, key, exc)
            return
        if text:
            from weft.exec import RemoteTraceback

            exc.__cause__ = RemoteTraceback(text)
        exc.add_note(f"weft: stage {self.index} `{self.name}` failed on source index {key!r} "
                     f"(on_error='skip' drops such items, on_error='retry' tries again)")
        raise exc

    # -- resume ------------------------------------------------------------------------
    def state(self) -> Any:
        if self._ordered:
            return (tuple(self._skip) or None, self._state_post)
        oldest = self._oldest()
        if oldest is None:
            self._emitted = []
            return (tuple(self._skip) or None, self._last_post)
        base = self._pending[0][1]
        self._emitted = [(o, k) for o, k in self._emitted if o > oldest]
        skip = tuple(k for _, k in self._emitted) + tuple(self._skip)
        return (skip or None, base)

    def restore(self, state: Any) -> None:
        own, up_state = (None, None) if state is None else state
        self._cancel()
        assert self.up is not None
        self.up.restore(up_state)
        self._reset_flow(self.up.state())
        self._skip = set(freeze(own) or ())

    def _cancel(self) -> None:
        for future in list(self._flying):
            future.cancel()
        self._flying = set()
        self._window.clear()
        self._done = queue.SimpleQueue()

    def interrupt(self) -> None:
        for future in list(self._flying):  # a copy: the pulling thread may be adding to it
            future.cancel()
        super().interrupt()

    def close(self) -> None:
        self._cancel()
        executor, self._executor = self._executor, None
        if executor is not None:
            if self.park is not None and not executor.closed:
                # cancelled chunks that already run finish on the workers; nobody reads them
                self.park((executor, self._label, self._reason, self._remote, self._limit))
            else:
                executor.close(cancel=True)
        super().close()

    def _extra_stats(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"backend": self._label, "workers": self._workers if self._backend != "serial" else 1,
                                 "reason": self._reason, "skipped": self.skipped, "retried": self.retried,
                                 "extra": {"chunk": float(self._chunk)}}
        if self._executor is not None:
            s = self._executor.statistics()
            extra["busy_fraction"] = s.busy_fraction
            extra["computing_cores"] = s.computing_cores
            extra["reason"] = s.reason
        return extra
