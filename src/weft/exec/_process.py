"""The process backend: worker processes, arrays through shared memory, deaths noticed.

One dispatcher thread in the owning process talks to every worker over its own pipe.
It waits on the pipes, the workers' death sentinels and a wake-up pipe at once, so a
worker killed by any signal is noticed as soon as the kernel reports it (not by a
timeout). Work held by a dead worker is re-run on a fresh worker up to
``max_retries`` times; after that its Future fails with :class:`WorkerDied`.

A worker takes one task at a time: a task is only sent to a worker that waits in
``recv``, so neither side ever blocks writing a large message to the other. The
messages are in :mod:`weft.exec._wire`, the worker's loop in :mod:`weft.exec._worker`.

How workers start (the fork server, else spawn) is :mod:`weft.exec._start`.

Each worker's large result arrays come back through its own reused shared-memory pool
(:mod:`weft.exec._pool`), which the dispatcher maps when the worker is ready; the pool
space the owner's arrays no longer view travels back with the worker's next task.
"""

from __future__ import annotations

import collections
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import reprlib
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from weft._checks import check_int, check_one_of
from weft.errors import BackendUnavailable, ConfigError, ExecutorClosed, RemoteError, WorkerDied
from weft.exec import _pool, _shm, _start, _wire
from weft.exec._base import Executor, ExecutorStatistics
from weft.exec._worker import worker_main

__all__ = ["ProcessExecutor"]

log = logging.getLogger(__name__)
R = TypeVar("R")

#: Tasks sent to one worker at once, and the largest payload that may wait queued
#: behind a running one (see ``_has_room``).
_TASKS_PER_WORKER = 2
_QUEUED_PAYLOAD_LIMIT = 32 * 1024

#: How long close() waits for an idle worker to exit after its pipe is closed, before
#: terminate(): a worker exits as soon as it reads EOF, so this only bounds a hung exit.
_EXIT_GRACE_SECONDS = 5.0
#: How long to wait for a worker to die after terminate() before kill().
_TERMINATE_GRACE_SECONDS = 1.0
#: Reaping a worker whose death sentinel fired: it has exited, so this is only a bound.
_REAP_SECONDS = 0.1
#: Bytes drained from the wake-up pipe at once (each submit writes at most one).
_WAKE_READ_BYTES = 4096

@dataclass(eq=False)
class _Task:
    id: int
    payload: bytes  # the encoded _wire.Call
    segments: list[str]
    future: Future[Any]
    call: tuple[Callable[..., Any], tuple[Any, ...]]  # for messages only: described on demand
    attempts: int = 0
    running: bool = False  # the Future was marked running (it can no longer be cancelled)

    @property
    def label(self) -> str:
        fn, args = self.call
        return f"{getattr(fn, '__qualname__', 'call')}{reprlib.repr(args)}"


@dataclass(eq=False)
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    tasks: collections.deque[_Task] = field(default_factory=collections.deque)
    ready: bool = False
    pool: _pool.OwnerPool | None = None


@dataclass(frozen=True, kw_only=True)
class ProcessStatistics(ExecutorStatistics):
    """:class:`ExecutorStatistics` plus how result arrays came back (shared-memory ones,
    of at least 64 KiB): through the workers' reused pools of ``result_pool_bytes``
    each, or each in a fresh segment (pools full or turned off), which costs a file,
    a mapping and page faults per array."""

    result_pool_bytes: int = 0
    pooled_arrays: int = 0
    pooled_bytes: int = 0
    fresh_arrays: int = 0
    fresh_bytes: int = 0

    @property
    def pooled_share(self) -> float | None:
        """Share of result bytes in shared memory that came through the pools (None: none came)."""
        total = self.pooled_bytes + self.fresh_bytes
        return self.pooled_bytes / total if total else None


class ProcessExecutor(Executor):
    """``workers`` processes fed by one dispatcher thread.

    Functions and arguments must be picklable (functions defined at module level).
    ``start_method`` is multiprocessing's (None: the fork server where there is one, else
    spawn; see :mod:`weft.exec._start`).
    Large NumPy arrays anywhere in arguments or results travel through shared memory:
    results through a pool of ``result_pool_bytes`` per worker, reused (None: a default
    bounded by the free space of /dev/shm; 0: a fresh segment per array).
    """

    backend = "process"

    def __init__(self, *, workers: int, reason: str = "", max_retries: int = 1,
                 start_method: str | None = None, shared_memory: bool = True,
                 result_pool_bytes: int | None = None) -> None:
        _start.exit_if_unguarded_worker()
        super().__init__(workers=workers, reason=reason)
        check_int("max_retries", max_retries, minimum=0)
        if start_method is None:
            start_method = _start.default_start_method()
        check_one_of("start_method", start_method, multiprocessing.get_all_start_methods())
        self.max_retries = max_retries
        self._ctx: Any = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            _start.preload_fork_server()
        self._use_shm = shared_memory and _shm.supported()
        if result_pool_bytes is not None:
            check_int("result_pool_bytes", result_pool_bytes, minimum=0)
        self._pool_bytes = _pool.pool_bytes(workers, result_pool_bytes, _shm.SHM_DIR) if self._use_shm else 0
        self._result_arrays = _shm.ArrayCounts()  # counted by the dispatcher thread alone
        self._owner = os.getpid()
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._pending: collections.deque[_Task] = collections.deque()
        self._workers: list[_Worker] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        # One byte in the wake pipe is enough until the dispatcher reads it: a burst of
        # submits then costs one write and one wake-up, not one per task.
        self._wake_pending = False
        self._stopping = False
        self._cancelling = False  # close(cancel=True) began: no queued task may start
        self._stop_deadline: float | None = None
        self._restarts = 0
        self._retried = 0
        self._dispatcher: threading.Thread | None = None
        self._fatal: BackendUnavailable | None = None

    # -- submit --------------------------------------------------------------------
    def _submit(self, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[R]:
        try:
            payload, segments = _wire.encode_call(_wire.Call(fn, args, kwargs), owner=self._owner,
                                                  use_shm=self._use_shm)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            name = getattr(fn, "__qualname__", repr(fn))
            raise ConfigError(
                f"cannot send {name} or its arguments to a worker process ({type(exc).__name__}: {exc}); "
                "define the function at module level and pass picklable arguments, or use backend='thread'"
            ) from exc
        future: Future[R] = Future()
        task = _Task(next(self._ids), payload, segments, future, (fn, args))
        with self._lock:
            if self._fatal is not None or self._stopping:
                _shm.unlink_all(segments)
                raise self._fatal or ExecutorClosed("this process executor is closed: create a new one to "
                                                    "submit work")
            self._pending.append(task)
            self._start_dispatcher()
        self._wake()
        return future

    def _start(self) -> None:
        with self._lock:
            if self._fatal is not None:
                raise self._fatal
            if self._dispatcher is None:
                # started here, in the caller's thread: when start() returns, every worker
                # process exists (and boots while the caller goes on)
                while len(self._workers) < self.workers:
                    self._workers.append(self._spawn())
            self._start_dispatcher()

    def _start_dispatcher(self) -> None:
        """Start the dispatcher thread, which starts the workers (call with the lock held)."""
        if self._dispatcher is None:
            self._dispatcher = threading.Thread(target=self._dispatch, name="weft-process-dispatcher", daemon=True)
            self._dispatcher.start()

    @property
    def ready_workers(self) -> int:
        """Workers that have started and wait for work or run it."""
        return sum(1 for w in list(self._workers) if w.ready)

    def _wake(self) -> None:
        if self._wake_pending:
            return
        self._wake_pending = True
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe is full or closed: the dispatcher is awake or gone anyway

    # -- dispatcher ----------------------------------------------------------------
    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        method = self._ctx.get_start_method()
        inherited: tuple[int, ...] = ()
        if method == "fork":
            inherited = (parent_conn.fileno(), self._wake_r, self._wake_w,
                         *(w.conn.fileno() for w in self._workers))
        process = self._ctx.Process(target=worker_main,
                                    args=(child_conn, self._owner, self._use_shm, method != "forkserver",
                                          inherited, self._pool_bytes),
                                    name=_start.WORKER_NAME, daemon=True)
        process.start()
        child_conn.close()
        return _Worker(process, parent_conn)

    def _dispatch(self) -> None:
        try:
            while len(self._workers) < self.workers:  # unless start() started them
                self._workers.append(self._spawn())
            while True:
                self._assign()
                if self._stopping and (self._drained() or not self._workers):
                    break
                waitables: list[Any] = [self._wake_r]
                for w in self._workers:
                    waitables += [w.conn, w.process.sentinel]
                timeout = None
                if self._stop_deadline is not None:
                    timeout = max(0.0, self._stop_deadline - time.monotonic())
                ready = multiprocessing.connection.wait(waitables, timeout=timeout)
                if self._wake_r in ready:
                    os.read(self._wake_r, _WAKE_READ_BYTES)
                    # After the read, never before: a submit that still saw True queued its
                    # task before this line, so the _assign below finds it; a later submit
                    # sees False and writes again. (Clearing first could swallow that byte
                    # and leave the flag set with an empty pipe: no wake-up ever again.)
                    self._wake_pending = False
                for w in list(self._workers):
                    if w.conn in ready:
                        self._receive(w)
                    if w.process.sentinel in ready or not w.process.is_alive():
                        self._on_death(w)
                if self._stop_deadline is not None and time.monotonic() >= self._stop_deadline:
                    break
        except BaseException as exc:  # a bug here must fail the futures, never hang them
            if isinstance(exc, BackendUnavailable):
                fatal = exc
            else:
                log.exception("weft process dispatcher failed")
                fatal = BackendUnavailable(
                    f"the process executor's dispatcher failed ({type(exc).__name__}: {exc}), so this executor "
                    "cannot run more work: close it and create a new one (the error is logged above)")
                fatal.__cause__ = exc
            with self._lock:
                self._fatal = fatal
        finally:
            self._finish()

    def _drained(self) -> bool:
        with self._lock:
            return not self._pending and all(not w.tasks for w in self._workers)

    def _assign(self) -> None:
        for w in self._workers:
            while w.ready and self._has_room(w):
                with self._lock:
                    if not self._pending:
                        return
                    if w.tasks and len(self._pending[0].payload) > _QUEUED_PAYLOAD_LIMIT:
                        break
                    task = self._pending.popleft()
                    # Marked running under the lock close() takes to cancel the queue: a
                    # task either starts before cancellation began, or never. (A retried
                    # task is running already: its call started before close().)
                    if not task.running:
                        if self._cancelling:
                            task.future.cancel()
                        if not task.future.set_running_or_notify_cancel():
                            _shm.unlink_all(task.segments)  # cancelled before it ran
                            continue
                        task.running = True
                task.attempts += 1
                w.tasks.append(task)
                releases = w.pool.take_released() if w.pool is not None else ()
                try:
                    w.conn.send_bytes(_wire.encode_task(_wire.Task(task.id, task.payload, releases)))
                except OSError:
                    break  # the worker is dead; its sentinel reports it and the task is retried

    @staticmethod
    def _has_room(w: _Worker) -> bool:
        """An idle worker takes a task; a busy one a second, small one, which it reads as
        soon as it answers the first (no idle round trip). Small, so that the write never
        blocks the dispatcher: both fit in the socket buffer."""
        if not w.tasks:
            return True
        return len(w.tasks) < _TASKS_PER_WORKER and len(w.tasks[0].payload) <= _QUEUED_PAYLOAD_LIMIT

    def _receive(self, w: _Worker) -> None:
        try:
            message = w.conn.recv_bytes()
        except (EOFError, OSError):
            return  # death is handled through the sentinel
        self._handle_answer(w, message)

    def _handle_answer(self, w: _Worker, message: bytes) -> None:
        if not w.ready:
            ready = _wire.decode_ready(message)
            w.ready = ready is not None
            if ready is not None and ready.pool:
                w.pool = _pool.OwnerPool.attach(os.path.join(_shm.SHM_DIR, ready.pool), ready.pool_bytes)
            return
        answer = _wire.decode_answer(message)
        del message
        task = w.tasks.popleft() if w.tasks else None
        if task is None or answer.task_id != task.id:
            _wire.discard(answer.payload, w.pool)
            return
        self._counters.add_busy(answer.busy_seconds, answer.cpu_seconds)
        _shm.unlink_all(task.segments)  # the worker mapped and unlinked them; make sure
        if task.future.cancelled():
            _wire.discard(answer.payload, w.pool)
            return
        try:
            outcome = _wire.decode_outcome(answer.payload, w.pool, self._result_arrays)
        except RemoteError as exc:
            task.future.set_exception(exc)
            return
        if isinstance(outcome, _wire.Ok):
            task.future.set_result(outcome.value)
        else:
            task.future.set_exception(outcome.exception())

    def _on_death(self, w: _Worker) -> None:
        while w.tasks:  # an answer sent just before dying still counts
            try:
                if not w.conn.poll(0):
                    break
                message = w.conn.recv_bytes()
            except (EOFError, OSError):
                break
            self._handle_answer(w, message)
        w.process.join(_REAP_SECONDS)
        exitcode = w.process.exitcode
        w.conn.close()
        if w.pool is not None:
            w.pool.close()  # unmapped once no array views it
        if self._use_shm:
            _shm.remove_segments(self._owner, w.process.pid)
        self._workers.remove(w)
        task = w.tasks.popleft() if w.tasks else None
        with self._lock:  # queued behind the one that ran: never started, so no attempt used
            for queued in reversed(w.tasks):
                queued.attempts -= 1
                self._pending.appendleft(queued)
        how = _describe_exit(exitcode)
        if not w.ready:
            # Retrying a worker that cannot start would loop forever: fail loudly instead.
            raise _start.not_started(how, exitcode)
        if task is not None:
            if task.attempts <= self.max_retries and not self._stopping:
                log.warning("weft: worker %s %s while running %s; retrying on a fresh worker",
                            w.process.pid, how, task.label)
                self._retried += 1
                with self._lock:
                    self._pending.appendleft(task)
            else:
                _shm.unlink_all(task.segments)
                task.future.set_exception(WorkerDied(
                    f"worker process {w.process.pid} {how} while running {task.label} "
                    f"(attempt {task.attempts} of {self.max_retries + 1}); the work was lost. "
                    "Check the function for crashes or memory use, or raise max_retries",
                    items=(task.label,), exitcode=exitcode))
        if not self._stopping:
            self._restarts += 1
            self._workers.append(self._spawn())

    def _finish(self) -> None:
        """Fail what is left, stop the workers, remove the segments this executor made."""
        with self._lock:
            leftovers = list(self._pending)
            self._pending.clear()
        leftovers += [task for w in self._workers for task in w.tasks]
        timed_out = self._stop_deadline is not None and time.monotonic() >= self._stop_deadline
        for task in leftovers:
            _shm.unlink_all(task.segments)
            if not task.future.done():
                if self._fatal is None and task.future.cancel():
                    continue
                task.future.set_exception(self._fatal or ExecutorClosed(
                    f"the process executor closed before {task.label} finished (close(timeout=...) ran "
                    "out, or its worker died while closing); give close() a longer timeout, or none, to let "
                    "running calls finish"))
        for w in self._workers:
            w.conn.close()
        deadline = time.monotonic() + _EXIT_GRACE_SECONDS
        for w in self._workers:
            if not (timed_out and w.tasks):  # a worker still running a call will not read EOF
                w.process.join(max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(_TERMINATE_GRACE_SECONDS)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
        for w in self._workers:
            if w.pool is not None:
                w.pool.close()  # unmapped once no array views it
            if self._use_shm:
                # Only this executor's workers: other executors of this process keep theirs.
                _shm.remove_segments(self._owner, w.process.pid)
            w.process.close()
        self._workers = []

    # -- shutdown ------------------------------------------------------------------
    def _shutdown(self, *, cancel: bool, timeout: float | None) -> None:
        with self._lock:
            self._stopping = True
            if cancel:
                self._cancelling = True
                for task in self._pending:
                    if not task.running and task.future.cancel():
                        _shm.unlink_all(task.segments)
                self._pending = collections.deque(t for t in self._pending if not t.future.cancelled())
            if timeout is not None:
                self._stop_deadline = time.monotonic() + timeout
            dispatcher = self._dispatcher
        self._wake()
        if dispatcher is not None:
            dispatcher.join()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def statistics(self) -> ProcessStatistics:
        counts = self._result_arrays
        return self._statistics(ProcessStatistics, result_pool_bytes=self._pool_bytes,
                                pooled_arrays=counts.pooled, pooled_bytes=counts.pooled_bytes,
                                fresh_arrays=counts.fresh, fresh_bytes=counts.fresh_bytes)

    def _extra_restarts(self) -> tuple[int, int]:
        return (self._restarts, self._retried)


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with code {exitcode}"
