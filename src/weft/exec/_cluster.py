"""What every backend that runs calls on a cluster engine (Ray, Dask) shares.

A :class:`ClusterExecutor` keeps the calls it was given in a local queue and hands
them to the engine only while fewer than ``max_in_flight`` calls and
``max_in_flight_bytes`` bytes of arguments are on the cluster, so a long input never
floods the engine's scheduler or object store. One dispatcher thread owns everything
the engine is asked: it hands calls over, reads their answers, re-runs the calls a
lost node or worker held (up to ``max_retries`` times, then :class:`WorkerDied`), and
enforces ``timeout``: when no call finishes for that long while calls are on the
cluster (a lost cluster, resources no node has, a hung call), every waiting call
fails with :class:`ClusterTimeout` instead of hanging.

An engine (one module per engine) implements :class:`Engine`: start a call, read its
answer, cancel it, say which failures mean a lost node, and release everything. What a
call is and how it travels: :mod:`weft.exec._cluster_call`.
"""

from __future__ import annotations

import abc
import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from weft._checks import check_int, check_number
from weft.errors import ConfigError, ExecutorClosed, RemoteError, WeftError, WorkerDied
from weft.exec._base import Executor, ExecutorStatistics
from weft.exec._cluster_call import Call, Reply, is_plain_function, payload_bytes, writable

__all__ = ["ClusterExecutor", "ClusterStatistics", "ClusterTimeout", "Engine"]

log = logging.getLogger(__name__)
R = TypeVar("R")

#: Default of ``timeout``: the longest weft waits for the cluster to finish any call
#: while calls are on it. Generous, since one call may legitimately run for minutes;
#: lower it to notice a lost cluster sooner.
DEFAULT_TIMEOUT_SECONDS = 300.0
#: Default of ``max_in_flight_bytes``: argument bytes on the cluster at once. Far below
#: an object store's usual size (30 % of a node's memory), so weft never makes it spill.
DEFAULT_MAX_IN_FLIGHT_BYTES = 256 * 1024 * 1024
#: How long close(cancel=True) lets the calls already on the cluster finish before it
#: forces them (kills the workers or actors that run them); close(timeout=) sets it.
CANCEL_GRACE_SECONDS = 5.0
#: Calls named in a ClusterTimeout message (the rest are counted).
_NAMED_IN_MESSAGES = 3


class ClusterTimeout(WeftError, TimeoutError):
    """No call finished on the cluster within ``timeout`` seconds while calls waited.

    The message names the calls, the resources they asked for and the cluster's state.
    ``items`` lists the calls that failed.
    """

    def __init__(self, message: str, *, items: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.items = items


@dataclass(frozen=True, kw_only=True)
class ClusterStatistics(ExecutorStatistics):
    """:class:`ExecutorStatistics` plus where the calls ran.

    ``nodes`` maps a node (a Ray node id, a Dask worker address) to the calls whose
    answer it delivered (``completed + failed`` in all, less failures that never reached
    a node, such as timeouts); ``on_cluster`` is the calls handed to the engine and not yet answered
    (the rest of ``in_flight`` waits in weft's queue).
    """

    nodes: Mapping[str, int] = field(default_factory=dict)
    on_cluster: int = 0


class Engine(abc.ABC):
    """The part of a cluster backend that talks to one engine.

    Every method is called from the executor's dispatcher thread only, except
    ``notify(call, handle)``, which the engine calls from any thread when a handle has
    an answer, and ``wake()``, when it can take calls again after ``start`` declined.
    """

    #: Functions that carry data kept on the cluster per executor (least recently used
    #: first out), so a map that builds a new closure per call cannot pin them all.
    SHARED_FUNCTIONS = 16

    def __init__(self, notify: Callable[[Call, Any], None], wake: Callable[[], None]) -> None:
        self.notify = notify
        self.wake = wake
        # id(fn) -> (fn, its handle on the cluster); holding fn keeps its id from being reused
        self.shared: collections.OrderedDict[int, tuple[Callable[..., Any], Any]] = collections.OrderedDict()

    def shared_function(self, fn: Callable[..., Any]) -> Any:
        """``fn`` itself if it is a plain function, else its handle on the cluster,
        sent once (by :meth:`share`) and reused while it stays among the recent ones."""
        if is_plain_function(fn):
            return fn
        key = id(fn)
        entry = self.shared.get(key)
        if entry is None or entry[0] is not fn:
            entry = (fn, self.share(fn))
            self.shared[key] = entry
            while len(self.shared) > self.SHARED_FUNCTIONS:
                self.shared.popitem(last=False)
        self.shared.move_to_end(key)
        return entry[1]

    def share(self, fn: Callable[..., Any]) -> Any:
        """Send ``fn`` (which carries data) to the cluster once; returns its handle there."""
        raise NotImplementedError(f"{type(self).__name__} sends every function with its call")

    @abc.abstractmethod
    def start(self, call: Call) -> Any:
        """Hand ``call`` over and return its handle, arranging ``notify(call, handle)``.

        Returns None when the engine cannot take a call now (its workers are busy or
        still starting); it calls ``wake()`` once it can.
        """

    @abc.abstractmethod
    def answer(self, handle: Any) -> Reply:
        """The reply of a finished handle; raises what the engine raised."""

    @abc.abstractmethod
    def is_lost(self, exc: BaseException) -> bool:
        """True when ``exc`` means the node or worker that held the call was lost."""

    def casualties(self, call: Call) -> list[tuple[Call, bool]]:
        """Calls lost with ``call``'s worker, each with whether it had started.

        A task engine loses just ``call``; an actor pool loses every call queued on the
        dead actor, of which only the oldest was running.
        """
        return [(call, True)]

    def forget(self, call: Call) -> None:  # noqa: B027 - optional hook
        """``call``'s handle is answered or abandoned: drop what the engine kept for it."""

    @abc.abstractmethod
    def cancel(self, handle: Any, *, force: bool) -> None:
        """Nobody wants ``handle``'s answer any more: drop its work where that is safe.

        ``force`` (after close()'s grace period or ``timeout``): stop it now, killing
        what runs it. The handle's ``notify`` still follows, unless the engine is gone.
        """

    @abc.abstractmethod
    def describe(self) -> str:
        """A sentence on the cluster's state, for timeout messages."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release everything: actors, cached objects, the connection weft opened."""

    def restarts(self) -> int:
        """Workers (actors) the engine replaced after a loss."""
        return 0


class ClusterExecutor(Executor):
    """An :class:`Executor` whose calls run through an :class:`Engine`.

    Futures stay pending until the answer is back, so ``Future.cancel()`` (and leaving a
    ``map`` early) always succeeds; the engine drops the call's work where it safely can.
    close() drops queued calls, gives the calls on the cluster ``timeout`` seconds
    (default :data:`CANCEL_GRACE_SECONDS`) and then kills what still runs them.

    What a pipeline's map stage asks of its executor: ``target_chunk_seconds`` (work
    per call that keeps the engine's per-call cost small; each engine states its own,
    measured) and ``results_by_reference`` (False: arguments and results are
    serialised, so errors must travel as portable exceptions).
    """

    target_chunk_seconds: float = 0.05
    results_by_reference = False

    def __init__(self, *, workers: int, reason: str = "", max_retries: int = 1,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS, max_in_flight: int | None = None,
                 max_in_flight_bytes: int = DEFAULT_MAX_IN_FLIGHT_BYTES) -> None:
        super().__init__(workers=workers, reason=reason)
        self.max_retries: int = check_int("max_retries", max_retries, minimum=0)
        self.timeout: float = check_number("timeout", timeout, strict=True)
        self.max_in_flight: int = check_int("max_in_flight", max_in_flight, none=True) or 2 * workers
        self.max_in_flight_bytes: int = check_int("max_in_flight_bytes", max_in_flight_bytes)
        # Set by the backend's __init__ once connected, so a cluster that cannot be
        # reached fails create() itself rather than the first call.
        self._engine: Engine | None = None
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending: collections.deque[Call] = collections.deque()
        self._handed: dict[Call, None] = {}  # insertion-ordered set, owned by the dispatcher
        self._handed_bytes = 0
        self._declined = False  # the engine declined a call and has not woken us since
        self._nodes: collections.Counter[str] = collections.Counter()
        self._retried = 0
        self._dispatcher: threading.Thread | None = None
        self._fatal: BaseException | None = None
        self._stopped = False  # set under _lock by close(): no dispatcher starts after it

    # -- submit ----------------------------------------------------------------------
    def _submit(self, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[R]:
        future: Future[R] = Future()
        call = Call(future, fn, args, kwargs, payload_bytes((args, kwargs)))
        with self._lock:
            if self._stopped:
                raise ExecutorClosed(f"this {self.backend} executor is closed: create a new one to submit work")
            if self._fatal is not None:
                if isinstance(self._fatal, WeftError):
                    raise self._fatal
                raise RemoteError(f"this {self.backend} executor lost its cluster ({self._fatal!r}); "
                                  "create a new one") from self._fatal
            self._pending.append(call)
            if self._dispatcher is None:
                self._dispatcher = threading.Thread(target=self._dispatch, daemon=True,
                                                    name=f"weft-{self.backend}-dispatcher")
                self._dispatcher.start()
        future.add_done_callback(lambda f: self._events.put(("cancel", call)) if f.cancelled() else None)
        self._events.put(("submit",))
        return future

    def _notify(self, call: Call, handle: Any) -> None:
        self._events.put(("done", call, handle))

    def _wake(self) -> None:
        self._events.put(("wake",))

    # -- the dispatcher --------------------------------------------------------------
    def _dispatch(self) -> None:
        try:
            assert self._engine is not None, "a cluster backend sets _engine in __init__"
            self._serve(self._engine)
        except BaseException as exc:  # a bug or a lost connection must fail the futures, never hang them
            if not isinstance(exc, WeftError):
                log.exception("weft %s dispatcher failed", self.backend)
            with self._lock:
                self._fatal = exc
        finally:
            self._finish()

    def _serve(self, engine: Engine) -> None:
        """Hand calls over and read answers until close() has nothing left to wait for."""
        stopping = cancel_all = False
        stop_at: float | None = None  # from close(timeout): when to stop waiting and force the rest
        last_progress = time.monotonic()
        while True:
            if not cancel_all:
                if not self._outstanding():
                    last_progress = time.monotonic()  # the no-progress clock runs only while calls wait
                self._hand_over()
            if stopping and not self._handed and (cancel_all or not self._pending):
                return
            deadlines = [last_progress + self.timeout] if self._outstanding() else []
            if stop_at is not None:
                deadlines.append(stop_at)
            wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            try:
                event = self._events.get(timeout=wait)
            except queue.Empty:
                now = time.monotonic()
                if stop_at is not None and now >= stop_at:
                    return  # _finish forces what is left
                if self._outstanding() and now >= last_progress + self.timeout:
                    self._time_out()
                continue
            kind = event[0]  # "submit" and "wake" only need the hand-over at the top of the loop
            if kind == "done":
                if self._complete(event[1], event[2]):
                    last_progress = time.monotonic()
            elif kind == "cancel":
                call = event[1]
                if call.handle is not None and not call.cancelling:
                    call.cancelling = True
                    self._cancel(call, force=False)
            elif kind == "stop":
                stopping, cancel_all, grace = True, event[1], event[2]
                stop_at = None if grace is None else time.monotonic() + grace
                if cancel_all:
                    self._cancel_everything()

    def _outstanding(self) -> bool:
        """Calls are on the cluster, or wait for it to take them."""
        return bool(self._handed) or self._declined

    def _hand_over(self) -> None:
        assert self._engine is not None
        self._declined = False
        while len(self._handed) < self.max_in_flight:
            with self._lock:
                if not self._pending:
                    return
                call = self._pending[0]
                if (self._handed and call.nbytes
                        and self._handed_bytes + call.nbytes > self.max_in_flight_bytes):
                    return  # a call larger than the bound still goes, alone
                self._pending.popleft()
            if call.future.cancelled():
                continue
            call.attempts += 1
            try:
                handle = self._engine.start(call)
            except BaseException as exc:
                if isinstance(exc, WeftError):
                    error: BaseException = exc
                else:
                    error = ConfigError(
                        f"cannot send {call.label} to the {self.backend} cluster ({type(exc).__name__}: {exc}); "
                        "pass picklable functions and arguments, importable on the cluster's nodes")
                    error.__cause__ = exc
                self._settle(call, error=error)
                continue
            if handle is None:  # the engine is busy: back in front, and wait for wake() or an answer
                call.attempts -= 1
                with self._lock:
                    self._pending.appendleft(call)
                self._declined = True
                return
            call.handle = handle
            self._handed[call] = None
            self._handed_bytes += call.nbytes

    def _release(self, call: Call) -> None:
        if call in self._handed:
            del self._handed[call]
            self._handed_bytes -= call.nbytes
        assert self._engine is not None
        self._engine.forget(call)
        call.handle = None
        call.cancelling = False

    def _complete(self, call: Call, handle: Any) -> bool:
        """Read one answer; returns True when it counts as progress."""
        if call.handle is not handle:
            return False  # an attempt already given up (lost with its actor, timed out)
        assert self._engine is not None
        try:
            reply = self._engine.answer(handle)
        except BaseException as exc:
            if not call.future.cancelled() and self._engine.is_lost(exc):
                self._on_lost(call, exc)
                return True
            self._release(call)
            if not call.future.cancelled():
                error = RemoteError(f"the {self.backend} cluster failed to run {call.label}: "
                                    f"{type(exc).__name__}: {exc}")
                error.__cause__ = exc
                self._settle(call, error=error)
            return True
        self._release(call)
        self._counters.add_busy(reply.busy_seconds, reply.cpu_seconds)
        if reply.ok:
            delivered = self._settle(call, value=writable(reply.value))
        else:
            error = reply.value
            if reply.traceback:
                from weft.exec import RemoteTraceback

                error.__cause__ = RemoteTraceback(reply.traceback)
            delivered = self._settle(call, error=error)
        if delivered:
            with self._counters.lock:
                self._nodes[reply.node] += 1
        return True

    @staticmethod
    def _settle(call: Call, *, value: Any = None, error: BaseException | None = None) -> bool:
        """Complete the caller's future; False when it was cancelled meanwhile."""
        if not call.future.set_running_or_notify_cancel():
            return False
        if error is not None:
            call.future.set_exception(error)
        else:
            call.future.set_result(value)
        return True

    def _on_lost(self, lost: Call, exc: BaseException) -> None:
        assert self._engine is not None
        requeue: list[Call] = []
        for call, started in self._engine.casualties(lost):
            self._release(call)
            if call.future.cancelled():
                continue
            if not started:
                call.attempts -= 1  # queued behind the one that ran: it never started
                requeue.append(call)
            elif call.attempts <= self.max_retries:
                log.warning("weft: %s lost while running %s (%s); running it again",
                            self.backend, call.label, type(exc).__name__)
                self._retried += 1
                requeue.append(call)
            else:
                self._settle(call, error=WorkerDied(
                    f"the {self.backend} node or worker running {call.label} was lost "
                    f"({type(exc).__name__}: {_first_line(exc)}), attempt {call.attempts} of "
                    f"{self.max_retries + 1}; the work was lost. Raise max_retries, or check the "
                    "cluster's nodes and the function's memory use", items=(call.label,)))
        with self._lock:
            self._pending.extendleft(reversed(requeue))

    def _time_out(self) -> None:
        assert self._engine is not None
        victims = list(self._handed)
        with self._lock:
            victims += [c for c in self._pending if not c.future.cancelled()]
            self._pending.clear()
        labels = tuple(c.label for c in victims)
        shown = ", ".join(labels[:_NAMED_IN_MESSAGES])
        more = f" and {len(labels) - _NAMED_IN_MESSAGES} more" if len(labels) > _NAMED_IN_MESSAGES else ""
        message = (f"no call finished on the {self.backend} cluster for {self.timeout:g} s while "
                   f"{len(labels)} waited ({shown}{more}). {self._engine.describe()} Check that the "
                   "cluster is up and has the resources the calls ask for, or raise timeout= "
                   "if one call legitimately takes longer")
        for call in victims:
            if call.handle is not None:
                self._cancel(call, force=True)
            self._release(call)
            self._settle(call, error=ClusterTimeout(message, items=labels))

    def _cancel(self, call: Call, *, force: bool) -> None:
        """Ask the engine to stop ``call``; a cluster that cannot answer is no reason to hang or fail."""
        assert self._engine is not None
        try:
            self._engine.cancel(call.handle, force=force)
        except Exception:
            log.debug("weft: could not cancel %s on the %s cluster", call.label, self.backend, exc_info=True)

    def _cancel_everything(self) -> None:
        assert self._engine is not None
        with self._lock:
            queued = list(self._pending)
            self._pending.clear()
        for call in queued:
            call.future.cancel()
        for call in self._handed:
            call.future.cancel()
            if not call.cancelling:
                call.cancelling = True
                self._cancel(call, force=False)

    def _finish(self) -> None:
        """Cancel (or, after a failure, fail) what is left, force what still runs, release the engine."""
        with self._lock:
            leftovers = list(self._pending)
            self._pending.clear()
            fatal = self._fatal
        leftovers += list(self._handed)
        engine = self._engine
        for call in leftovers:
            if engine is not None and call.handle is not None:
                self._cancel(call, force=True)
                self._release(call)
            if call.future.done():
                continue
            if fatal is None:
                call.future.cancel()  # always succeeds: weft never marks a remote call running
            else:
                self._settle(call, error=fatal)
        if engine is not None:
            try:
                engine.close()
            except Exception:
                log.warning("weft: closing the %s engine failed", self.backend, exc_info=True)

    # -- shutdown and statistics -----------------------------------------------------
    def _shutdown(self, *, cancel: bool, timeout: float | None) -> None:
        with self._lock:
            self._stopped = True
            dispatcher = self._dispatcher
        if dispatcher is None:
            if self._engine is not None:
                self._engine.close()
            return
        # cancel=True waits a short grace for the engine to confirm; cancel=False lets the
        # work finish, each wait still bounded by the no-progress timeout.
        grace = timeout if timeout is not None else (CANCEL_GRACE_SECONDS if cancel else None)
        self._events.put(("stop", cancel, grace))
        if dispatcher is not threading.current_thread():
            dispatcher.join()

    def _extra_restarts(self) -> tuple[int, int]:
        engine = self._engine
        return (engine.restarts() if engine is not None else 0, self._retried)

    def statistics(self) -> ClusterStatistics:
        with self._counters.lock:
            nodes = dict(self._nodes)
        return self._statistics(ClusterStatistics, nodes=nodes, on_cluster=len(self._handed))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
