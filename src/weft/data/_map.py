"""The map stage: ``fn`` on every item, inline or on a weft.exec executor.

Items travel to workers in chunks (see :mod:`weft.data._chunks` for their size and the
in-flight bound); results still come back per item.

Resume. Ordered: the state after an item is the upstream state recorded when that
item was pulled. Unordered: see :mod:`weft.data._ledger`.

Which backend runs the stage is weft.exec's rule (:mod:`weft.exec._policy`): with
``backend="auto"`` the stage asks it through :mod:`weft.data._map_backend`, which
measures its own first items when the rule needs a measurement (those results are kept).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from weft import runtime
from weft.data import _map_backend
from weft.data._chunks import (
    ChunkSizer,
    batch_max_in_flight,
    bytes_bounded_in_flight,
    default_max_in_flight,
    result_bytes,
)
from weft.data._ledger import HandOnLedger
from weft.data._map_executors import ParkedWorkers, StageExecutors, crosses_processes
from weft.data._node import Key, Node, NodeState, freeze
from weft.data._work import ChunkResult, ItemError, pack_chunk, run_chunk
from weft.errors import WeftError, WorkerDied
from weft.exec._handoff import Completions

if TYPE_CHECKING:
    from weft.data._build import MapSpec
    from weft.data._map_backend import Choice
    from weft.data._sizing import ThreadSizing
    from weft.exec import Executor
    from weft.exec._auto import BackendTrials

__all__ = ["MapNode", "ParkedWorkers"]

log = logging.getLogger(__name__)

#: What statistics() says of a map with backend="serial".
_INLINE_REASON = "backend='serial': runs in the thread that pulls from it"


def _naming_items(exc: WeftError, node: Node, keys: Sequence[Key]) -> BaseException:
    """``exc`` (a chunk's lost worker or node, a cluster timeout) told in the stage's terms:
    the source indices of the items the chunk held. A WorkerDied lists them in ``items``;
    another error gets a note naming them."""
    if isinstance(exc, WorkerDied):
        return WorkerDied(f"stage {node.index} `{node.name}` lost the items with source indices {list(keys)!r}: {exc}",
                          items=tuple(keys), exitcode=exc.exitcode)
    exc.add_note(f"weft: stage {node.index} `{node.name}` was running the items with source indices {list(keys)!r}")
    return exc


class _Chunk:
    __slots__ = ("backend", "future", "keys", "ordinals", "posts", "remote")

    def __init__(self, future: Future[ChunkResult], keys: Sequence[Key], posts: Sequence[Any],
                 ordinals: Sequence[int], backend: str, remote: bool) -> None:
        self.future = future
        self.keys = keys
        self.posts = posts
        self.ordinals = ordinals
        self.backend = backend  # what ran it ("calibration" for the items auto measured)
        self.remote = remote


class MapNode(Node):
    kind = "map"

    def __init__(self, up: Node, spec: MapSpec) -> None:
        super().__init__(up, name=spec.name)
        self._fn = spec.fn
        self._workers = spec.workers
        #: workers="auto": the ceiling, and (on threads) what sizes them
        self._max_workers = spec.max_workers if spec.auto_workers else None
        self._sizing: ThreadSizing | None = None
        self._backend = spec.backend
        self._ordered = not spec.unordered
        self._user_limit = spec.max_in_flight
        self._limit = spec.max_in_flight or default_max_in_flight(spec.workers, "thread")
        self._default_limit = self._limit  # the bound before results' bytes lowered it
        #: bytes of arrays per result, as last measured (0: none measured, or no arrays)
        self._bytes_per_item = 0.0
        self._raise = spec.on_error != "skip"
        self._retries = spec.retries if spec.on_error == "retry" else 0
        #: under backend="auto": which backend runs next, by measured throughput
        self._trials: BackendTrials | None = None
        self._executors = StageExecutors(dict(spec.options))
        self._choice: Choice | None = None  # what backend="auto" measured first
        self._label = "inline" if spec.backend == "serial" else spec.backend
        self._reason = _INLINE_REASON
        self._remote = False
        self._sizer = ChunkSizer()
        #: (seconds, items) of the items backend="auto" timed before choosing, if it did
        self._calibrated: tuple[float, int] | None = None
        #: the size of the batches the next stage makes with the default collate, 0 when the
        #: next stage is no such batch (MapSpec.collated_batch, set when the pipeline is built)
        self.collated_batch = spec.collated_batch
        self._target: float | None = None  # work per chunk the executor asks for, if it does
        self.skipped = 0
        self.retried = 0
        #: set by a pipeline that keeps workers between passes: takes the executor at close
        self.park: Callable[[ParkedWorkers], None] | None = None
        self._reset_flow(None)

    # -- bookkeeping -------------------------------------------------------------------
    def _reset_flow(self, post: Any) -> None:
        self._window: deque[_Chunk] = deque()
        self._flying: set[Future[ChunkResult]] = set()
        #: the chunks in flight as they finish (unordered), or to wait for the oldest (ordered)
        self._completions: Completions[_Chunk] = Completions()
        self._chunks_in_flight = 0
        self._in_flight = 0
        self._ready: _Chunk | None = None
        self._results: Any = []  # a list, or the chunk a worker packed (an array, a PackedRows)
        self._errors: dict[int, ItemError] | None = None
        self._pos = 0
        self._exhausted = False
        self._ordinal = 0
        self._last_post = post
        self._state_post = post
        self._skip: set[Key] = set()
        self._ledger = None if self._ordered else HandOnLedger(self._limit)

    def _set_limit(self, limit: int) -> None:
        self._default_limit = limit
        if self._user_limit is None:
            # large results: fewer items; then room for chunks of whole batches (see _chunk_size)
            limit = bytes_bounded_in_flight(limit, self._bytes_per_item, self._workers)
            limit = max(limit, batch_max_in_flight(self._workers, self.collated_batch))
        self._limit = limit
        if self._ledger is not None:
            self._ledger.set_limit(limit)

    def adopt(self, parked: ParkedWorkers) -> None:
        """Run on the workers a previous pass of the same pipeline left running."""
        self._executors.adopt(parked.executor)
        self._label, self._reason = parked.label, parked.reason
        self._target = getattr(parked.executor, "target_chunk_seconds", None)
        self._trials = None  # kept workers: the backend decided in an earlier pass stays
        self._remote = parked.remote
        self._set_limit(parked.limit)
        if parked.sizing is not None:  # workers="auto": go on from the count measured, on new windows
            self._sizing, self._workers = parked.sizing, parked.executor.workers
            parked.sizing.resume()

    def _start_executor(self) -> None:
        backend, reason = self._backend, ""
        if backend == "auto":
            backend, reason = self._choose()
            self._trials = _map_backend.plan_trials(self._choice, backend, workers=self._workers,
                                                    sizes_threads=self._max_workers is not None)
        executor = self._use(backend, reason)
        self._reason = executor.statistics().reason
        self._hand_on_calibrated(executor)
        if self._calibrated is not None:  # the items auto timed one by one size the first chunks
            self._observe(*self._calibrated, remote=self._remote)

    def _use(self, backend: str, reason: str) -> Executor:
        """Send new chunks to ``backend``'s executor (created and started if need be)."""
        if self._max_workers is not None and backend != "thread" and self._executors.get(backend) is None:
            self._workers = runtime.usable_cores()  # workers="auto" sizes threads only
        executor = self._executors.use(backend, workers=self._workers, reason=reason)
        self._remote = crosses_processes(executor)
        # -- cluster executors (ray, dask) state the work per chunk that pays for their per-call cost
        self._target = getattr(executor, "target_chunk_seconds", None)
        kind = "cluster" if self._target is not None else ("process" if self._remote else backend)
        # -- end cluster
        if self._user_limit is None:
            self._set_limit(default_max_in_flight(self._workers, kind))
        self._label = backend if self._backend != "auto" else f"auto:{backend}"
        if self._max_workers is not None and backend == "thread" and self._sizing is None:
            from weft.data._sizing import ThreadSizing

            self._sizing = ThreadSizing(start=self._workers, maximum=self._max_workers, bound=self._user_limit)
        return executor

    def _choose(self) -> tuple[str, str]:
        """weft.exec's backend rule for this stage's function (see :mod:`weft.data._map_backend`);
        the items it measured are the stage's first chunk."""
        self._calibrated = None
        choice = self._choice = _map_backend.choose(self._fn, workers=self._workers, retries=self._retries,
                                                    pull=self._pull)
        self._exhausted = self._exhausted or choice.exhausted
        return choice.decision.backend, choice.decision.reason

    def _hand_on_calibrated(self, executor: Executor) -> None:
        """The items auto measured (if it did) are the stage's first chunk. When a batch
        stage collates them, a worker thread stacks them as it would have (the consumer
        would otherwise, alone: for 4 MB results, ~10 % of a short epoch)."""
        choice = self._choice  # set by _choose, under backend="auto" only
        if choice is None or choice.first_chunk is None:
            return
        first, pulled = choice.first_chunk, choice.pulled
        if self.collated_batch and executor.backend == "thread" and first.errors is None:
            future = executor.submit(pack_chunk, first)
        else:
            future = Future()
            future.set_result(first)
        self._add_chunk(future, [p[0] for p in pulled], [p[1] for p in pulled], [p[2] for p in pulled],
                        "calibration", False)
        self._calibrated = (first.seconds, len(pulled))

    def _pull(self) -> tuple[Key, Any, Any, int]:
        """The next upstream item that was not already handed on before a resume."""
        up = self.up
        assert up is not None
        while True:
            key, value = up.next()
            post = up.state()
            ordinal = self._ordinal
            self._ordinal = ordinal + 1
            if self._ledger is not None:
                self._ledger.pulled(ordinal, self._last_post)
            self._last_post = post
            if self._skip and key in self._skip:
                self._skip.discard(key)
                self._hand_on(ordinal, key)
                continue
            return key, value, post, ordinal

    def _pull_run(self, n: int) -> tuple[Sequence[Key], list[Any], Sequence[Any], Sequence[int]]:
        """Up to ``n`` upstream items at once, as keys, values, upstream states after each
        and ordinals: :meth:`_pull` ``n`` times, for a stage with no ledger (ordered) and
        no items left to skip after a resume, at a fraction of the cost per item."""
        up = self.up
        assert up is not None and self._ledger is None and not self._skip
        keys, values, posts = up.pull_run(n)
        first = self._ordinal
        self._ordinal = first + len(keys)
        self._last_post = posts[len(posts) - 1]
        return keys, values, posts, range(first, first + len(keys))

    def _pull_each(self, n: int) -> tuple[list[Key], list[Any], list[Any], list[int]]:
        """:meth:`_pull` up to ``n`` times: fewer only when nothing is left upstream,
        StopIteration when nothing was."""
        keys: list[Key] = []
        values: list[Any] = []
        posts: list[Any] = []
        ordinals: list[int] = []
        try:
            for _ in range(n):
                key, value, post, ordinal = self._pull()
                keys.append(key)
                values.append(value)
                posts.append(post)
                ordinals.append(ordinal)
        except StopIteration:
            if not keys:
                raise
        return keys, values, posts, ordinals

    def _hand_on(self, ordinal: int, key: Key) -> None:
        if self._ledger is not None:
            self._ledger.handed_on(ordinal, key)

    def _add_chunk(self, future: Future[ChunkResult], keys: Sequence[Key], posts: Sequence[Any],
                   ordinals: Sequence[int], backend: str, remote: bool) -> None:
        chunk = _Chunk(future, keys, posts, ordinals, backend, remote)
        self._executors.sent(backend)
        self._in_flight += len(keys)
        self._chunks_in_flight += 1
        self._flying.add(future)
        if self._ordered:
            self._window.append(chunk)
        self._completions.watch(future, chunk)

    def _fill(self) -> None:
        executor, limit, ledger = self._executors.current, self._limit, self._ledger
        assert executor is not None
        while not self._exhausted and self._in_flight < limit:
            if ledger is not None and not ledger.may_pull(self._ordinal):
                return
            if self._sizer.probing and self._chunks_in_flight >= executor.workers:
                return  # the first chunks size the rest (see ChunkSizer)
            size = self._chunk_size()
            n = min(size, limit - self._in_flight)
            if n < size and self._in_flight:
                return  # wait for room for a whole chunk: small leftovers would stay small
            start = time.perf_counter()
            try:
                pulled = self._pull_run(n) if ledger is None and not self._skip else self._pull_each(n)
            except StopIteration:
                pulled = None
            finally:
                self.wait_up += time.perf_counter() - start
            if pulled is None or len(pulled[0]) < n:  # fewer than asked: nothing is left upstream
                self._exhausted = True
            if pulled is not None:
                keys, values, posts, ordinals = pulled
                future = executor.submit(run_chunk, self._fn, values, self._retries, self._remote,
                                         self.collated_batch > 0)
                self._add_chunk(future, keys, posts, ordinals, executor.backend, self._remote)

    def _chunk_size(self) -> int:
        """Items in the next chunk: in whole batches when a batch stage collates this map's
        results and the in-flight bound has room (see ChunkSizer.in_batches). Not while
        workers="auto" sizes the threads: a batch of waits would run one after another in
        one thread, and the in-flight bound of whole batches would stop the growth."""
        if self._max_workers is not None:
            return self._sizer.size
        return self._sizer.in_batches(self.collated_batch, self._ordinal, limit=self._limit, workers=self._workers)

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
                    self._fail(key, self._errors[i])
                    continue
                self.items += 1
                return key, self._results[i]
            self._advance()

    def next_run(self, n: int) -> tuple[list[Key], list[Any]]:
        """Up to ``n`` items (fewer only at the end) as their keys and a list of pieces.

        A piece is a list of values, or a slice of a chunk a worker packed (an array
        whose rows are the values, or a PackedRows: see :mod:`weft.data._packing`). A
        batch of such rows is then one slice, or one concatenation per field, instead of
        one view per row and a stack of them. Bookkeeping
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
                if self._ledger is not None:
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
        if self._executors.current is None:
            self._start_executor()
        self._ready = None
        self._results = []
        self._errors = None
        self._fill()
        if self._chunks_in_flight == 0:
            raise StopIteration
        start = time.perf_counter()
        if self._ordered:
            chunk = self._window.popleft()
            self._completions.wait_for(chunk.future)
        else:
            chunk = self._completions.next()
        try:
            result: ChunkResult = chunk.future.result()
        except WorkerDied as exc:  # a lost worker or node names the chunk: say its items
            raise _naming_items(exc, self, chunk.keys) from exc
        except WeftError as exc:  # a cluster timeout, a lost cluster
            _naming_items(exc, self, chunk.keys)
            raise
        self._flying.discard(chunk.future)
        self.wait_down += time.perf_counter() - start
        self._chunks_in_flight -= 1
        self._in_flight -= len(chunk.keys)
        self.retried += result.retried
        if chunk.backend != "calibration":  # (sized the first chunks already)
            self._observe(result.seconds, len(chunk.keys), remote=chunk.remote)
        if self._user_limit is None:
            self._bound_bytes(result_bytes(result.results) / max(1, len(chunk.keys)))
        self._ready, self._results, self._errors, self._pos = chunk, result.results, result.errors, 0
        self._executors.finished(chunk.backend)
        if self._trials is not None:
            self._follow_trials(chunk, result)
        if self._sizing is not None and chunk.backend == "thread":
            self._resize(self._sizing.completed(len(chunk.keys), result.seconds / len(chunk.keys), self.wait_up))
        self._fill()

    def _observe(self, seconds: float, items: int, *, remote: bool) -> None:
        """Size the next chunks from ``items`` that took ``seconds`` on a worker."""
        kind = "process" if remote else ("thread" if runtime.gil_enabled() else "thread-nogil")
        self._sizer.observe(seconds, items, kind=kind, limit=self._limit, workers=self._workers, target=self._target)

    def _bound_bytes(self, bytes_per_item: float) -> None:
        """Lower the default in-flight bound for results of ``bytes_per_item`` (see
        IN_FLIGHT_RESULT_BYTES); redone when their size moves by more than 2x."""
        known = self._bytes_per_item
        if bytes_per_item <= 0 or (known and 0.5 * known <= bytes_per_item <= 2.0 * known):
            return  # (0: a chunk of no arrays, or with a failed item, says nothing)
        self._bytes_per_item = bytes_per_item
        self._set_limit(self._default_limit)

    def _resize(self, workers: int | None) -> None:
        """Run ``workers`` threads (workers="auto" decided so), with room in flight for them."""
        from weft.exec import ThreadExecutor

        executor = self._executors.get("thread")
        if workers is None or not isinstance(executor, ThreadExecutor):
            return
        executor.resize(workers)
        self._workers = workers
        if self._user_limit is None:
            self._set_limit(default_max_in_flight(workers, "thread"))
        log.debug("weft: stage %d %r: %s", self.index, self.name, self._sizing.reason if self._sizing else "")

    def _follow_trials(self, chunk: _Chunk, result: ChunkResult) -> None:
        """Switch backend when the throughput trials say so; close replaced executors
        once their chunks are in (their results are still handed on, in order)."""
        from weft.exec import _policy

        trials = self._trials
        current = self._executors.current
        assert trials is not None and current is not None
        before, rounds = trials.decision, trials.rounds
        # CPU seconds: wall time on threads of a GIL build also counts waiting for the GIL
        target = trials.finished(chunk.backend, len(chunk.keys), result.cpu_seconds or result.seconds)
        if target != current.backend:
            self._use(target, "")
        if trials.rounds != rounds:
            self._reason = (f"the cost per item moved by more than {_policy.REDECIDE_COST_FACTOR:g}x: "
                            f"measuring the throughput of {' and '.join(trials.candidates)} again")
        if trials.decision is not before and trials.decision is not None:
            self._reason = trials.decision.reason
            log.info("weft: stage %d %r runs on %s: %s", self.index, self.name, target, self._reason)
        if not trials.measuring:
            self._executors.close_idle(keep=target)

    def _next_inline(self) -> tuple[Key, Any]:
        while True:
            key, value, post, _ = self._pull()
            self._state_post = post
            start = time.perf_counter()
            result = run_chunk(self._fn, (value,), self._retries, False)
            self.busy += time.perf_counter() - start
            self.retried += result.retried
            if result.errors:
                self._fail(key, result.errors[0])
                continue
            self.items += 1
            return key, result.results[0]

    def _fail(self, key: Key, error: ItemError) -> None:
        exc = error.exception
        if not self._raise:
            self.skipped += 1
            log.debug("weft: stage %d %r skipped source index %r: %r", self.index, self.name, key, exc)
            return
        if error.traceback:
            from weft.exec import RemoteTraceback

            exc.__cause__ = RemoteTraceback(error.traceback)
        if self._retries:
            advice = (f"on_error='retry' tried it {self._retries} more time{'s' if self._retries > 1 else ''}, "
                      "failing each time; on_error='skip' drops such items")
        else:
            advice = "on_error='skip' drops such items, on_error='retry' tries again"
        exc.add_note(f"weft: stage {self.index} `{self.name}` failed on source index {key!r} ({advice})")
        raise exc

    # -- resume ------------------------------------------------------------------------
    def state(self) -> Any:
        skip = tuple(self._skip)
        if self._ledger is None:
            return NodeState(skip or None, self._state_post)
        base, handed_on = self._ledger.resume_point(self._last_post)
        return NodeState(handed_on + skip or None, base)

    def restore(self, state: Any) -> None:
        own, up_state = self.parts(state)
        self._cancel()
        assert self.up is not None
        self.up.restore(up_state)
        self._reset_flow(self.up.state())
        self._skip = set(freeze(own) or ())

    def _cancel(self) -> None:
        for future in list(self._flying):
            future.cancel()
        self._executors.forget_chunks()
        self._flying = set()
        self._window.clear()
        self._completions = Completions()

    def interrupt(self) -> None:
        for future in list(self._flying):  # a copy: the pulling thread may be adding to it
            future.cancel()
        super().interrupt()

    def close(self) -> None:
        self._cancel()
        executor = self._executors.take_current()
        if executor is not None:
            if self.park is not None and not executor.closed:
                # cancelled chunks that already run finish on the workers; nobody reads them
                self.park(ParkedWorkers(executor=executor, label=self._label, reason=self._reason,
                                        remote=self._remote, limit=self._limit, sizing=self._sizing))
            else:
                executor.close(cancel=True)
        super().close()

    def _extra_statistics(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"backend": self._label, "workers": self._workers if self._backend != "serial" else 1,
                                 "reason": self._reason, "skipped": self.skipped, "retried": self.retried,
                                 "extra": {"chunk": float(self._sizer.size), "max in flight": float(self._limit)}}
        if self._executors.current is not None:
            s = self._executors.current.statistics()
            extra["busy_fraction"] = s.busy_fraction
            extra["computing_cores"] = s.computing_cores
            extra["reason"] = s.reason
            nodes = getattr(s, "nodes", None)  # -- cluster executors: the nodes that ran chunks
            if nodes is not None:
                extra["extra"]["nodes"] = float(len(nodes))
            pooled = getattr(s, "pooled_share", None)  # process executors: how result arrays came back
            if pooled is not None:
                extra["extra"]["results pooled"] = pooled
                extra["extra"]["result pool MB"] = s.result_pool_bytes / 1e6  # type: ignore[attr-defined]
        if self._max_workers is not None and self._backend != "serial":
            extra["workers_reason"] = (self._sizing.reason if self._sizing is not None else
                                       f"workers='auto' sizes threads; on {self._label}: the usable cores "
                                       f"({self._workers})")
        if self._trials is not None:
            extra["reason"] = self._reason
            rates = self._trials.decision.throughputs if self._trials.decision is not None else None
            for name, rate in rates or ():
                extra["extra"][f"{name} items/s"] = rate
            extra["extra"]["backend trials"] = float(self._trials.rounds)
        return extra
