"""A pass over a pipeline: the running nodes, and the workers kept between passes.

Iterating a :class:`~weft.data.Pipeline` starts a :class:`Run`. The run belongs to the
iterator alone, so breaking out of a ``for`` loop, an exception in the loop body,
``close()`` or garbage collection all stop it; when it stops it hands its final state
and statistics to whoever started it.

:class:`WorkerPark` keeps map stages' executors from one pass to the next
(``persistent_workers``), until it is closed.
"""

from __future__ import annotations

import functools
import sys
import time
import weakref
from collections.abc import Callable
from typing import Any

from weft import runtime
from weft.data._map import MapNode
from weft.data._map_executors import ParkedWorkers
from weft.data._node import Node
from weft.data._stats import PipelineStatistics, verdict

__all__ = ["STATE_VERSION", "Run", "WorkerPark"]

#: The version of the plain-data state a pipeline's state_dict() returns.
STATE_VERSION = 1


#: Passes not yet closed, closed when the interpreter begins to exit (see _close_open_passes).
_open_passes: weakref.WeakSet[Run] = weakref.WeakSet()


def _close_open_passes() -> None:
    """Close the passes a program left open (a script that broke out of a loop over a
    pipeline and ended), as close() would, while their threads still run.

    Left to garbage collection during finalization a pass could not be closed: the
    interpreter has frozen its daemon threads by then, and waiting for one never returns
    (the script hung at its end). An atexit handler runs after the program's other
    threads ended (a pass one of them still reads is not cut short), and before
    multiprocessing's own handler, which would terminate a pass's worker processes first:
    the pass would take them for crashed workers and restart them.
    """
    for run in list(_open_passes):
        try:
            run.close()
        except Exception as exc:  # one failure must not keep the rest open
            print(f"weft: closing a pipeline pass at exit failed: {exc!r}", file=sys.stderr)


@functools.cache
def _close_open_passes_at_exit() -> None:
    """Register :func:`_close_open_passes` with atexit, once per program (a second
    registration by a racing thread would only find the passes closed already)."""
    # atexit runs the newest handler first: multiprocessing's is registered when
    # multiprocessing.util is first imported (a process map imports it later), so import
    # it now (~3-8 ms)
    import atexit
    import multiprocessing.util  # noqa: F401

    atexit.register(_close_open_passes)


class Run:
    """One pass over the pipeline: owns the nodes; closing it stops every worker.

    ``on_close(state_dict, statistics)`` is called once, when the run stops.
    """

    def __init__(self, node: Node, *, epoch: int, end: int | None, state: Any, finished: bool,
                 on_close: Callable[[dict[str, Any], PipelineStatistics], None]) -> None:
        self.node = node
        self.epoch = epoch
        self.end = end
        self.finished = finished
        self.closed = False
        self.yielded = 0
        self.wait = 0.0
        self.started = time.perf_counter()
        self._on_close = on_close
        _open_passes.add(self)
        _close_open_passes_at_exit()
        node.set_epoch(epoch)
        node.restore(state)

    def __iter__(self) -> Run:
        return self

    def __next__(self) -> Any:
        if self.finished or self.closed:
            raise StopIteration
        start = time.perf_counter()
        try:
            while True:
                try:
                    _key, value = self.node.next()
                    break
                except StopIteration:
                    if self.end is not None and self.epoch + 1 >= self.end:
                        self.finished = True
                        raise
                    self.epoch += 1
                    self.node.set_epoch(self.epoch)
                    self.node.restore(None)
        except BaseException:
            self.close()
            raise
        self.wait += time.perf_counter() - start
        self.yielded += 1
        return value

    def state_dict(self) -> dict[str, Any]:
        stages = None if self.finished else self.node.export(self.node.state())
        return {"version": STATE_VERSION, "epoch": self.epoch, "end": self.end,
                "finished": self.finished, "stages": stages}

    def statistics(self) -> PipelineStatistics:
        now = time.perf_counter()
        stages = tuple(n.statistics(now) for n in self.node.chain())
        elapsed = now - self.started
        fraction = min(1.0, self.wait / elapsed) if elapsed > 0 else 0.0
        text = verdict(stages, consumer_wait_fraction=fraction, gil=runtime.gil_enabled(),
                       cores=runtime.usable_cores())
        return PipelineStatistics(stages=stages, consumer_wait_seconds=self.wait, elapsed_seconds=elapsed,
                                  verdict=text)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._on_close(self.state_dict(), self.statistics())
        finally:
            self.closed = True
            _open_passes.discard(self)
            self.node.close()

    #: held by the class: during finalization this module's globals may already be None
    _finalizing = staticmethod(sys.is_finalizing)

    def __del__(self) -> None:
        if self._finalizing():
            return  # closed at exit already; its threads are frozen now, nothing may wait for them
        try:
            self.close()
        except Exception:  # pragma: no cover - a collected run's close has nobody to tell
            pass


class WorkerPark:
    """Map stages' executors kept between passes, by stage index, until :meth:`close`."""

    def __init__(self) -> None:
        self._parked: dict[int, ParkedWorkers] = {}

    def lend(self, node: Node) -> None:
        """Give every map stage of ``node``'s chain the workers parked for its index (if
        any), and have it park its workers here when its pass ends."""
        parked = self._parked
        for stage in node.chain():
            if isinstance(stage, MapNode):
                kept = parked.pop(stage.index, None)
                if kept is not None:
                    stage.adopt(kept)
                stage.park = lambda p, i=stage.index: parked.__setitem__(i, p)  # type: ignore[misc]

    def close(self) -> None:
        """Stop every parked worker."""
        while self._parked:
            _index, kept = self._parked.popitem()
            kept.executor.close(cancel=True)
