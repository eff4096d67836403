"""The serial backend: runs each call inline, at submit time. For debugging and tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from weft.exec._base import Executor

R = TypeVar("R")


class SerialExecutor(Executor):
    """Runs every call in the submitting thread; tracebacks are as plain as they get."""

    backend = "serial"

    def __init__(self, *, workers: int = 1, reason: str = "") -> None:
        super().__init__(workers=1, reason=reason)

    def _submit(self, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[R]:
        future: Future[R] = Future()
        future.set_running_or_notify_cancel()
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        finally:
            self._counters.add_busy(time.perf_counter() - start, time.thread_time() - cpu)
        return future

    def _shutdown(self, *, cancel: bool, timeout: float | None) -> None:
        return None
