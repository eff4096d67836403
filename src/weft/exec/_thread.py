"""The thread backend: worker threads sharing data by reference.

Right on a free-threaded build with the GIL off, and on any build for functions that
release the GIL (NumPy, Pillow, onnxruntime, blocking I/O). :meth:`ThreadExecutor.resize`
changes the number of threads while it runs (a map stage sizing itself to waiting work).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from weft._checks import check_int
from weft.errors import ExecutorClosed
from weft.exec._base import Executor

R = TypeVar("R")

_pool_ids = itertools.count(1)
_Task = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class _Retire:
    """Queued by ``resize`` to shrink the pool: the thread that takes it ends. Queued behind
    every call already submitted, so no call is dropped, and results belong to their
    futures, so none is reordered."""


_RETIRE = _Retire()


class ThreadExecutor(Executor):
    """``workers`` threads, started on first use, joined on close; :meth:`resize` changes
    their number while running."""

    backend = "thread"

    def __init__(self, *, workers: int, reason: str = "") -> None:
        super().__init__(workers=workers, reason=reason)
        self._queue: queue.SimpleQueue[_Task | _Retire | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._retiring = 0  # retire tokens queued and not yet taken (under _start_lock)
        self._thread_ids = itertools.count()
        self._start_lock = threading.Lock()
        self._stopped = False  # set under _start_lock, so no thread starts after close() signals
        self._cancel_lock = threading.Lock()
        self._cancelling = False  # set under _cancel_lock by close(cancel=True)
        self._name = f"weft-thread-{next(_pool_ids)}"

    def _ensure_started(self) -> None:
        """Start the worker threads; the caller holds ``_start_lock``."""
        while len(self._threads) - self._retiring < self.workers:
            thread = threading.Thread(target=self._work, name=f"{self._name}-{next(self._thread_ids)}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            if isinstance(task, _Retire):
                with self._start_lock:
                    self._retiring -= 1
                    self._threads.remove(threading.current_thread())
                return
            future, fn, args, kwargs = task
            # Marked running under the lock close(cancel=True) takes before it cancels the
            # queue: a queued call either starts before cancellation began, or never.
            with self._cancel_lock:
                if self._cancelling:
                    future.cancel()
                if not future.set_running_or_notify_cancel():
                    continue
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self._counters.add_busy(time.perf_counter() - start, time.thread_time() - cpu)
                future.set_exception(exc)
                del exc  # break the frame -> exception -> frame cycle
            else:
                self._counters.add_busy(time.perf_counter() - start, time.thread_time() - cpu)
                future.set_result(result)
            del task, future, fn, args, kwargs

    @property
    def threads(self) -> int:
        """Threads running now (``workers`` once those a shrink retired have ended)."""
        with self._start_lock:
            return len(self._threads) - self._retiring

    def resize(self, workers: int) -> None:
        """Run ``workers`` threads from now on.

        Growing starts the new threads at once (or at first use, if none runs yet).
        Shrinking lets threads end as they finish their current call and find no queued
        call ahead of the stop signal: calls already submitted all run, and each result
        stays with its own future.
        """
        check_int("workers", workers)
        with self._start_lock:
            if self._stopped:
                raise ExecutorClosed("this thread executor is closed: create a new one to resize it")
            self.workers = workers
            if not self._threads:
                return  # started at first use
            extra = len(self._threads) - self._retiring - workers
            for _ in range(extra):
                self._queue.put(_RETIRE)
            self._retiring += max(0, extra)
            self._ensure_started()

    def _submit(self, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[R]:
        future: Future[R] = Future()
        with self._start_lock:  # never queue behind the stop signals of a concurrent close()
            if self._stopped:
                raise ExecutorClosed("this thread executor is closed: create a new one to submit work")
            self._ensure_started()
            self._queue.put((future, fn, args, kwargs))
        return future

    def _shutdown(self, *, cancel: bool, timeout: float | None) -> None:
        with self._start_lock:
            self._stopped = True
        if cancel:
            with self._cancel_lock:
                self._cancelling = True
            # Cancel now what is queued (workers also cancel what they take from now on),
            # so that a close() that times out on a long call leaves no pending future.
            while True:
                try:
                    task = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(task, tuple):
                    task[0].cancel()
        with self._start_lock:  # retiring threads remove themselves from the list
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            if thread is threading.current_thread():
                continue
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
