"""How many threads a map stage with ``workers="auto"`` runs: hill climbing on items/s.

Work that mostly waits (network reads, remote calls) goes faster with more threads until
something else limits it: the remote service, the CPU the calls still need, the thread
that hands items on, or the source feeding the stage. No count is right everywhere, so
the stage measures: it starts at the usable cores, doubles its threads while each
doubling raises the items/s it delivers by at least :data:`CLIMB_GAIN`, and settles where
throughput levels off, on the count that measured faster (the smaller one on a tie).
It never exceeds its maximum (``max_workers``, default :data:`DEFAULT_MAX_THREADS`) nor
``max_in_flight`` (a thread beyond the items in flight has nothing to run); and it
shrinks to what the source can feed when the stage waits on its source rather than on
its workers (more threads would wait too), growing again if the source speeds up.

:class:`ThreadSizing` only decides: the map stage feeds it the items its chunks
completed, the seconds each item took on a worker and the seconds the stage has waited
on its source so far, on a clock it is given (tests drive it with a synthetic clock and
throughput model); the stage resizes its :class:`~weft.exec.ThreadExecutor`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = [
    "CLIMB_GAIN",
    "DEFAULT_MAX_THREADS",
    "KEEP_MARGIN",
    "MIN_WINDOW_ITEMS",
    "MIN_WINDOW_SECONDS",
    "SETTLE_CALLS",
    "SOURCE_HEADROOM",
    "SOURCE_WAIT_SHARE",
    "WINDOW_CALLS",
    "ThreadSizing",
    "monotonic",
]

#: Default ceiling of threads. 256 threads waiting 50 ms each deliver ~5,000 items/s,
#: about what one Python thread can hand on for light items; each thread costs a stack
#: (mostly untouched virtual memory) and a turn in the GIL's switching.
DEFAULT_MAX_THREADS = 256
#: A doubling must raise items/s by this share to keep climbing (a smaller step, capped by
#: a ceiling, by this share of its own proportional gain). Doubling the threads of work that
#: still waits doubles its throughput (+100 %); +25 % is far below that, and far above the
#: error of one measurement window (see WINDOW_CALLS).
CLIMB_GAIN = 0.25
#: When a doubling gains less than CLIMB_GAIN, the larger count is kept only if it was at
#: least this much faster (else the smaller count: the same items/s on fewer threads).
KEEP_MARGIN = 0.05
#: A window spans this many calls of one thread: a thread's calls that straddle the
#: window's ends then change its count by at most about 1/4 of a call each side.
WINDOW_CALLS = 4
#: ...and at least this long and this many items, so that very short calls are measured
#: over more than a few hand-offs of the clock and of chunks.
MIN_WINDOW_SECONDS = 0.02
MIN_WINDOW_ITEMS = 8
#: After a resize, this many calls' time is not measured: the new threads take their
#: first calls and the stage pulls the items that keep them fed.
SETTLE_CALLS = 1
#: A stage that waited on its source this share of a window is fed too slowly to use more
#: threads: the source is the bottleneck.
SOURCE_WAIT_SHARE = 0.5
#: Threads kept beyond what the source's rate needs (Little's law: rate x seconds per
#: call), so a source that speeds up a little is not held back at once.
SOURCE_HEADROOM = 1.5


def monotonic() -> float:
    """The clock a stage's sizing reads (tests replace it with a synthetic one)."""
    return time.perf_counter()


class ThreadSizing:
    """Decides a thread count from the throughput each count delivered.

    ``start`` is the first count; ``maximum`` the ceiling; ``bound`` the stage's
    ``max_in_flight`` when the user set it (threads beyond it would idle), else None.
    """

    def __init__(self, *, start: int, maximum: int, bound: int | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self._clock = clock if clock is not None else monotonic
        self.maximum = maximum
        self.bound = bound
        self.cap = min(maximum, bound) if bound is not None else maximum
        self.workers = max(1, min(start, self.cap))
        self.reason = f"workers='auto': measuring items/s on {self.workers} threads"
        #: (threads, items/s) of each window measured while climbing, in order
        self.history: list[tuple[int, float]] = []
        #: "climbing", "settled" (levelled off or at a ceiling) or "fed" (held by the source)
        self.phase = "climbing"
        self._per_call: float | None = None
        self._begin(self._clock(), 0.0)

    def resume(self) -> None:
        """Measure afresh from now (a new pass on the same threads: its stage counts its
        waits from zero, and the pause between passes is no throughput)."""
        self._begin(self._clock(), 0.0)

    # -- windows ------------------------------------------------------------------------
    def _begin(self, now: float, upstream: float) -> None:
        """Start measuring after the settle time of the current count."""
        self._settle_until = now + SETTLE_CALLS * (self._per_call or 0.0)
        self._start: float | None = None
        self._items = 0
        self._upstream0 = upstream

    def completed(self, items: int, seconds_per_item: float, upstream_seconds: float) -> int | None:
        """Take in ``items`` finished on the workers (each took ``seconds_per_item`` there);
        ``upstream_seconds`` is the stage's total wait on its source so far. Returns the
        new thread count when it changes, else None."""
        now = self._clock()
        self._per_call = seconds_per_item if self._per_call is None else 0.8 * self._per_call + 0.2 * seconds_per_item
        if self._start is None:
            if now < self._settle_until:
                return None
            self._start, self._upstream0 = now, upstream_seconds
            return None  # the window opens at a completion, so it counts whole calls
        self._items += items
        elapsed = now - self._start
        if elapsed < max(MIN_WINDOW_SECONDS, WINDOW_CALLS * self._per_call) or self._items < MIN_WINDOW_ITEMS:
            return None
        rate = self._items / elapsed
        waited = min(1.0, max(0.0, upstream_seconds - self._upstream0) / elapsed)
        before = self.workers
        self._decide(rate, waited)
        self._begin(now, upstream_seconds)
        return self.workers if self.workers != before else None

    # -- decisions ------------------------------------------------------------------------
    def _decide(self, rate: float, waited: float) -> None:
        n = self.workers
        if waited >= SOURCE_WAIT_SHARE:
            needed = max(1, min(self.cap, math.ceil(rate * (self._per_call or 0.0) * SOURCE_HEADROOM)))
            target = min(n, needed)
            self.phase = "fed"
            self.reason = (f"workers='auto' {'shrank to' if target < n else 'holds'} {target} threads: the stage "
                           f"waited on its source {waited:.0%} of the time, and {needed} threads keep up with the "
                           f"{rate:,.0f} items/s it delivers; a faster source lets it grow again")
            self.workers = target
            return
        if self.phase == "fed":  # the source keeps up again: measure upward from here
            self.phase, self.history = "climbing", []
        if self.phase == "settled":
            return
        self.history.append((n, rate))
        if len(self.history) >= 2:
            prev_n, prev_rate = self.history[-2]
            gain = CLIMB_GAIN * (n / prev_n - 1)
            if rate < prev_rate * (1 + gain):
                keep = n if rate >= prev_rate * (1 + KEEP_MARGIN) else prev_n
                self.phase, self.workers = "settled", keep
                change = "rose only" if rate >= prev_rate else "fell"
                self.reason = (f"workers='auto' settled on {keep} threads: throughput levelled off "
                               f"({self._figures()}; doubling to {n} {change} "
                               f"{abs(rate / prev_rate - 1):.0%}, under the {gain:.0%} that step had to gain)")
                return
        if n >= self.cap:
            self.phase = "settled"
            if self.bound is not None and self.bound <= self.maximum:
                limit = f"max_in_flight={self.bound} (a thread beyond the items in flight has nothing to run)"
            else:
                limit = f"its maximum, max_workers={self.maximum}"
            self.reason = (f"workers='auto' settled on {n} threads, {limit}, while throughput still rose "
                           f"({self._figures()}): raise it if the work waits on something that scales")
            return
        self.workers = min(self.cap, 2 * n)
        self.reason = f"workers='auto': growing to {self.workers} threads while throughput rises ({self._figures()})"

    def _figures(self) -> str:
        return ", ".join(f"{n}: {rate:,.0f} items/s" for n, rate in self.history)
