"""Bounded map over any executor: a sliding window of futures.

At most ``limit`` calls are started and not yet consumed, so memory stays bounded
whatever the length of the input. Leaving the generator early cancels the rest.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from weft.exec._base import annotate
from weft.exec._handoff import Completions

if TYPE_CHECKING:
    from weft.exec._base import Executor

T = TypeVar("T")
R = TypeVar("R")


def _result(future: Future[R], fn: Callable[..., Any], index: int, item: object) -> R:
    try:
        return future.result()
    except BaseException as exc:
        if future.done() and not future.cancelled():
            annotate(exc, fn, index, item)
        raise


def bounded_map(executor: Executor, fn: Callable[[T], R], items: Iterable[T], *, ordered: bool,
                limit: int) -> Iterator[tuple[int, R]]:
    source = iter(enumerate(items))
    window: deque[tuple[Future[R], int, T]] = deque()
    pending: dict[Future[R], tuple[int, T]] = {}
    completions: Completions[Future[R]] = Completions()  # (see weft.exec._handoff)
    exhausted = False
    try:
        while True:
            while not exhausted and len(window) + len(pending) < limit:
                try:
                    index, item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                future = executor.submit(fn, item)
                if ordered:
                    window.append((future, index, item))
                else:
                    pending[future] = (index, item)
                completions.watch(future, future)
            if ordered:
                if not window:
                    return
                future, index, item = window.popleft()
                completions.wait_for(future)
                yield index, _result(future, fn, index, item)
            else:
                if not pending:
                    return
                future = completions.next()
                index, item = pending.pop(future)
                yield index, _result(future, fn, index, item)
    finally:
        for future, _, _ in window:
            future.cancel()
        for future in pending:
            future.cancel()
