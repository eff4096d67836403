"""``timed``: per-function (or per-block) duration statistics.

Count, total, mean and max are exact; p50 and p95 come from a bounded reservoir
sample (Vitter's algorithm R, 1,024 entries by default), so memory stays constant
however many calls are timed. Timers are registered by name: every ``with
timed("step"):`` in the process adds to the same statistics.
"""

from __future__ import annotations

import contextvars
import logging
import random
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, overload

from weft._checks import check_int
from weft.errors import ConfigError
from weft.train._wrap import CALL, NEXT, START, Emit, Finished, make_wrapper, qualified_name

__all__ = ["Timer", "TimingStatistics", "timed", "timings"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Durations sampled per timer for p50/p95: from 1,024 samples a p95 is off by about 0.7
#: percentile points (one standard error, sqrt(0.95 * 0.05 / 1024)), in 8 KiB per timer.
_RESERVOIR = 1024


@dataclass(frozen=True, kw_only=True)
class TimingStatistics:
    """Durations in seconds of one timer. Percentiles are over a bounded sample."""

    name: str
    count: int
    total: float
    mean: float
    p50: float
    p95: float
    max: float
    min: float
    errors: int


class Timer:
    """Named duration statistics; a context manager and a decorator.

    ``clock`` (default ``time.perf_counter``) can be replaced in tests. With ``log``
    set to a level (e.g. ``logging.INFO``) every measurement is also logged.
    """

    def __init__(self, name: str, *, clock: Callable[[], float] = time.perf_counter,
                 log: int | None = None, reservoir: int = _RESERVOIR) -> None:
        check_int("reservoir", reservoir)
        self.name = name
        self.clock = clock
        self.log = log
        self._lock = threading.Lock()
        self._capacity = reservoir
        self._sample: list[float] = []
        self._random = random.Random(0)
        self._count = self._errors = 0
        self._total = 0.0
        self._max = 0.0
        self._min = float("inf")
        # one stack of start times per thread / asyncio task, so a shared Timer nests
        self._starts: contextvars.ContextVar[tuple[float, ...]] = contextvars.ContextVar(
            f"weft-timer-{name}", default=())

    def record(self, seconds: float, *, error: bool = False) -> None:
        """Add one duration (what the context manager and decorators call)."""
        with self._lock:
            self._count += 1
            self._errors += int(error)
            self._total += seconds
            self._max = max(self._max, seconds)
            self._min = min(self._min, seconds)
            if len(self._sample) < self._capacity:
                self._sample.append(seconds)
            else:
                slot = self._random.randrange(self._count)
                if slot < self._capacity:
                    self._sample[slot] = seconds
        if self.log is not None:
            logger.log(self.log, "%s took %.3f ms%s", self.name, seconds * 1e3, " (raised)" if error else "")

    def statistics(self) -> TimingStatistics:
        with self._lock:
            sample = sorted(self._sample)
            count, total = self._count, self._total
            return TimingStatistics(
                name=self.name, count=count, total=total,
                mean=total / count if count else 0.0,
                p50=_percentile(sample, 0.50), p95=_percentile(sample, 0.95),
                max=self._max, min=self._min if count else 0.0, errors=self._errors)

    def reset(self) -> None:
        with self._lock:
            self._sample.clear()
            self._count = self._errors = 0
            self._total = self._max = 0.0
            self._min = float("inf")

    # -- context manager ---------------------------------------------------------
    def __enter__(self) -> Timer:
        self._starts.set((*self._starts.get(), self.clock()))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        stack = self._starts.get()
        if not stack:
            raise ConfigError(f"timer {self.name!r} exited without being entered; use it as "
                              "`with timer:` or as a decorator")
        self._starts.set(stack[:-1])
        self.record(self.clock() - stack[-1], error=exc_type is not None)

    # -- decorator ---------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        wrapped: F = _wrap(fn, self)
        return wrapped

    def __repr__(self) -> str:
        s = self.statistics()
        return f"Timer({self.name!r}, count={s.count}, mean={s.mean * 1e3:.3f} ms)"


def _percentile(sorted_sample: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (NumPy's default)."""
    if not sorted_sample:
        return 0.0
    position = q * (len(sorted_sample) - 1)
    low = int(position)
    high = min(low + 1, len(sorted_sample) - 1)
    return sorted_sample[low] + (sorted_sample[high] - sorted_sample[low]) * (position - low)


def _wrap(fn: Callable[..., Any], timer: Timer) -> Any:
    clock = timer.clock

    def call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
        start = clock()
        failed = True
        try:
            result = yield CALL
            failed = False
            return result
        finally:
            timer.record(clock() - start, error=failed)

    def iterate(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
        # time spent inside the generator body, summed over its steps, recorded once
        yield START
        spent = 0.0
        failed = True
        try:
            while True:
                start = clock()
                try:
                    item = yield NEXT
                finally:
                    spent += clock() - start
                if isinstance(item, Finished):
                    failed = False
                    return item.value
                try:
                    yield Emit(item)
                except GeneratorExit:
                    failed = False  # the consumer stopped early: not an error
                    raise
        finally:
            timer.record(spent, error=failed)

    return make_wrapper(fn, call=call, iterate=iterate,
                        attributes={"statistics": timer.statistics, "timer": timer})


_registry: dict[str, Timer] = {}
_registry_lock = threading.Lock()


def _timer(name: str, clock: Callable[[], float] | None, log: int | None) -> Timer:
    with _registry_lock:
        timer = _registry.get(name)
        if timer is None:
            timer = _registry[name] = Timer(name, clock=clock or time.perf_counter, log=log)
        else:
            if clock is not None:
                timer.clock = clock
            if log is not None:
                timer.log = log
        return timer


@overload
def timed(target: F, /) -> F: ...
@overload
def timed(target: str, /, *, clock: Callable[[], float] | None = None,
          log: int | None = None) -> Timer: ...
@overload
def timed(target: None = None, /, *, clock: Callable[[], float] | None = None,
          log: int | None = None) -> Callable[[F], F]: ...


def timed(target: Any = None, /, *, clock: Callable[[], float] | None = None,
          log: int | None = None) -> Any:
    """Time a function, a method, an async function, a generator or a block.

    ``@timed`` registers a timer under the function's qualified name; ``@timed("name")``
    or ``with timed("name"):`` under that name. The decorated function gains
    ``.statistics()`` (a :class:`TimingStatistics`); :func:`timings` returns every timer's.
    A generator is timed over its whole iteration (time inside its body only, not the
    consumer's). ``log=logging.INFO`` logs every measurement.
    """
    if callable(target):
        return _wrap(target, _timer(qualified_name(target), clock, log))
    if target is not None and not isinstance(target, str):
        raise ConfigError(f"timed() takes a function or a timer name, got {target!r}")
    if target is None:
        # @timed(clock=...) on a function: named when applied
        def decorate(fn: F) -> F:
            wrapped: F = _wrap(fn, _timer(qualified_name(fn), clock, log))
            return wrapped
        return decorate
    return _timer(target, clock, log)


def timings() -> dict[str, TimingStatistics]:
    """Statistics of every timer registered in this process, by name."""
    with _registry_lock:
        timers = list(_registry.values())
    return {t.name: t.statistics() for t in timers}
