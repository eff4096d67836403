"""Prefetch: one background thread (from weft.exec) runs the upstream stages ahead of
the consumer, into a channel of at most ``n`` items.

Each queued item carries the upstream state recorded right after it was pulled; the
prefetch stage's state is the one carried by the item the consumer received last.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Any

from weft.data._node import Key, Node
from weft.exec._handoff import Channel

__all__ = ["Prefetch"]

_END = object()

#: How often a reader blocked on an empty queue checks that it can still be filled. Only
#: a pass being closed from another thread needs this; a tenth of a second bounds how
#: long such a close waits, at ten wake-ups a second for an idle reader.
_RECHECK_SECONDS = 0.1
#: How long a halting stage waits for its pump between draining the queue (so a blocked
#: put returns): short, since the pump exits right after its next put.
_DRAIN_SECONDS = 0.05
#: What statistics() and weft.exec say about the prefetch thread.
_REASON = "prefetch: one background thread fills a bounded queue"


class _Failure:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _pump(node: Prefetch, up: Node, q: Channel, stop: threading.Event) -> None:
    """Pull from ``up`` until the end, an error or ``stop``; put everything into ``q``."""
    perf = time.perf_counter
    while not stop.is_set():
        try:
            key, value = up.next()
            message: Any = (key, value, up.state())
        except StopIteration:
            message = _END
        except BaseException as exc:
            if stop.is_set():
                return  # upstream was closed under us on purpose
            message = _Failure(exc)
        try:
            q.put_nowait(message)
        except queue.Full:
            start = perf()
            q.put(message)
            node.wait_down += perf() - start
        if message is _END or type(message) is _Failure:
            return
        del message
    try:  # stopped: leave an end marker, so a reader blocked on this queue wakes up
        q.put_nowait(_END)
    except queue.Full:
        pass


class Prefetch(Node):
    kind = "prefetch"
    delegates_state = True

    def __init__(self, up: Node, n: int) -> None:
        super().__init__(up)
        self._n = n
        self._executor: Any = None
        self._queue: Channel | None = None
        self._stop = threading.Event()
        self._pump: Future[None] | None = None
        self._state: Any = None

    def _start(self) -> Channel:
        import weft.exec

        if self._executor is None:
            self._executor = weft.exec.create(
                "thread", workers=1, reason=_REASON)
        self._stop = threading.Event()
        self._queue = Channel(self._n)
        assert self.up is not None
        self._pump = self._executor.submit(_pump, self, self.up, self._queue, self._stop)
        return self._queue

    def next(self) -> tuple[Key, Any]:
        q = self._queue or self._start()
        try:
            message = q.get_nowait()
        except queue.Empty:
            start = time.perf_counter()
            message = self._wait(q)
            self.wait_up += time.perf_counter() - start
        if message is _END:
            self._halt()
            raise StopIteration
        if type(message) is _Failure:
            self._halt()
            raise message.exc
        key, value, self._state = message
        self.items += 1
        return key, value

    def _wait(self, q: Channel) -> Any:
        """Block for the next message; a queue that can no longer receive one ends the pass.

        That happens when another thread halted or restarted this stage while we waited
        (closing a pipeline whose prefetch stages are nested): never wait forever on it.
        """
        while True:
            try:
                return q.get(timeout=_RECHECK_SECONDS)
            except queue.Empty:
                pump = self._pump
                if q is not self._queue or (self._stop.is_set() and (pump is None or pump.done())):
                    try:  # a last message may have landed since the timeout
                        return q.get_nowait()
                    except queue.Empty:
                        return _END

    def _halt(self) -> None:
        """Stop the pump thread (it exits after at most one more item) and wait for it."""
        self._stop.set()
        q, pump = self._queue, self._pump
        if q is not None:
            while pump is not None and not pump.done():
                try:
                    q.get(timeout=_DRAIN_SECONDS)  # make room so a blocked put returns
                except queue.Empty:
                    pass
            try:
                q.put_nowait(_END)  # wake a reader blocked on this queue (a downstream pump)
            except queue.Full:
                pass
        self._queue = None
        self._pump = None

    def state(self) -> Any:
        return self._state

    def restore(self, state: Any) -> None:
        self._halt()
        assert self.up is not None
        self.up.restore(state)
        self._state = self.up.state()
        self._start()  # start reading ahead as soon as the pass starts

    def interrupt(self) -> None:
        self._stop.set()
        super().interrupt()
        q = self._queue
        if q is not None:
            try:
                q.put_nowait(_END)  # wake a downstream pump blocked on this queue
            except queue.Full:
                pass

    def close(self) -> None:
        self._stop.set()
        if self.up is not None:
            self.up.interrupt()  # cancel queued upstream work so the pump returns promptly
        self._halt()
        super().close()  # upstream is no longer used by any thread
        if self._executor is not None:
            self._executor.close(cancel=True)

    def _extra_statistics(self) -> dict[str, Any]:
        q = self._queue
        return {"backend": "thread", "reason": _REASON,
                "extra": {"queued": float(q.qsize() if q is not None else 0), "capacity": float(self._n)}}
