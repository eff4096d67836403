"""The executors one map stage sends its chunks to.

Usually one. Under ``backend="auto"`` a stage runs on two at once while it measures
which is faster (:mod:`weft.data._map_backend`), and an executor it replaced finishes
the chunks it holds (their results are still handed on, in order) before it is closed.
A pipeline that keeps its workers between passes (persistent_workers) takes the
current one over at close as :class:`ParkedWorkers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from weft.data._sizing import ThreadSizing
    from weft.exec import Executor

__all__ = ["ParkedWorkers", "StageExecutors", "crosses_processes"]


def crosses_processes(executor: Executor) -> bool:
    """Whether the executor runs calls in other processes (so results come back pickled:
    errors must pickle, and same-shaped arrays are worth packing into one)."""
    if executor.backend in ("thread", "serial"):
        return False  # the built-in backends that run in this process
    if getattr(executor, "results_by_reference", True) is False:  # an executor that says so (ray, dask)
        return True
    from weft.exec import ProcessExecutor

    return isinstance(executor, ProcessExecutor)  # also a registered backend built on it


@dataclass(frozen=True, kw_only=True)
class ParkedWorkers:
    """A map stage's executor kept between passes of a pipeline (persistent_workers)."""

    executor: Executor
    label: str
    reason: str
    remote: bool
    limit: int
    #: the thread count a ``workers="auto"`` stage measured (sizing goes on from there)
    sizing: ThreadSizing | None = None


class StageExecutors:
    """One stage's executors by backend, the current one receiving new chunks, with
    the chunks each holds (of those it started: an adopted one is never replaced)."""

    __slots__ = ("_by_backend", "_chunks_on", "_options", "current")

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options  # for weft.exec.create (resources=, address=, ...)
        self._by_backend: dict[str, Executor] = {}
        self._chunks_on: dict[str, int] = {}
        self.current: Executor | None = None

    def get(self, backend: str) -> Executor | None:
        return self._by_backend.get(backend)

    def use(self, backend: str, *, workers: int, reason: str) -> Executor:
        """Make ``backend``'s executor current, created and started if there is none."""
        executor = self._by_backend.get(backend)
        if executor is None:
            import weft.exec

            executor = weft.exec.create(backend, workers=workers, **self._options,
                                         **({"reason": reason} if reason else {}))
            self._by_backend[backend] = executor
            self._chunks_on[backend] = 0
            executor.start()  # worker processes boot while the first items are pulled, not after
        self.current = executor
        return executor

    def adopt(self, executor: Executor) -> None:
        """Run on ``executor``, which an earlier pass of the pipeline left running."""
        self.current = executor
        self._by_backend = {executor.backend: executor}
        self._chunks_on = {}

    def sent(self, backend: str) -> None:
        """A chunk went to ``backend``'s executor."""
        if backend in self._chunks_on:
            self._chunks_on[backend] += 1

    def finished(self, backend: str) -> None:
        """A chunk of ``backend``'s executor was taken back."""
        if backend in self._chunks_on:
            self._chunks_on[backend] -= 1

    def close_idle(self, keep: str) -> None:
        """Close the executors other than ``keep``'s that hold no chunk any more."""
        for name in [n for n, count in self._chunks_on.items() if count == 0 and n != keep]:
            self._chunks_on.pop(name)
            self._by_backend.pop(name).close(cancel=True)

    def forget_chunks(self) -> None:
        """Every chunk was cancelled: none is held any more."""
        self._chunks_on = dict.fromkeys(self._chunks_on, 0)

    def take_current(self) -> Executor | None:
        """Close every executor but the current one, and hand that one over (to close or
        park); the stage has none afterwards."""
        current, self.current = self.current, None
        others = [e for e in self._by_backend.values() if e is not current]
        self._by_backend, self._chunks_on = {}, {}
        for other in others:
            other.close(cancel=True)
        return current
