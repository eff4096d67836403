"""The ``auto`` backend: threads or processes, chosen by facts that can be stated.

The rule:

1. The GIL is off (free-threaded build): threads. They run Python in parallel and
   share data by reference, so processes can only add copying.
2. Only one usable core: threads (processes add start-up and copying, no parallelism).
3. Otherwise, :meth:`AutoExecutor.map` calibrates on the first items of the input
   (see :func:`calibrate`): calls that mostly wait (I/O) use threads; CPU-bound calls
   run a few rounds on ``workers`` threads, and if the process then used at least 1.5
   cores (or all usable cores, if fewer) and the threads reached 60% of ideal speed-up,
   the function releases the GIL: threads.
   Otherwise it holds the GIL: processes. Calls so short that inter-process transfer
   would dominate (< 50 us) stay on threads.

Calibration results are not thrown away: they are yielded first. ``submit`` without
a prior ``map`` has no sample to measure, so on a GIL build it assumes CPU-bound
Python and uses processes.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from weft import runtime
from weft.exec._base import Executor, ExecutorStatistics, annotate

__all__ = ["AutoExecutor", "Calibration", "calibrate"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """What the calibration measured and decided."""

    backend: str
    reason: str
    serial_seconds_per_item: float | None = None
    thread_efficiency: float | None = None


def _interpreter_rule(workers: int) -> Calibration | None:
    if not runtime.gil_enabled():
        return Calibration(backend="thread", reason="the GIL is off: threads run Python in parallel, sharing data by reference")
    if min(workers, runtime.usable_cores()) <= 1:
        return Calibration(backend="thread", reason="one usable core or worker: processes would add copying, not parallelism")
    return None


def calibrate(fn: Callable[[T], R], items: Iterator[tuple[int, T]], *, workers: int,
              min_parallel_cores: float = 1.5, min_thread_efficiency: float = 0.6,
              min_process_item_seconds: float = 50e-6,
              budget_seconds: float = 0.25) -> tuple[Calibration, list[tuple[int, R]]]:
    """Measure ``fn`` on items from ``items`` (pairs of index and item).

    Serially, it times calls on the wall clock and on the thread's CPU clock: a call
    that spends most of its time off the CPU is waiting (I/O) and threads overlap the
    waits. A CPU-bound call is then run on ``workers`` threads: if the process used at
    least ``min_parallel_cores`` cores meanwhile AND the threads reached
    ``min_thread_efficiency`` of ideal speed-up, the call releases the GIL and threads
    win (a failed trial is run once more, and the better one counts: load from elsewhere
    only ever lowers the figures). A GIL-bound call cannot use much more than one core,
    however busy or idle the machine; requiring real speed-up as well guards against CPU
    time that other threads of the process spent in the same window.

    Returns the decision and the ``(index, result)`` pairs computed while measuring.
    """
    from weft.exec._thread import ThreadExecutor

    done: list[tuple[int, R]] = []

    def run(index: int, item: T) -> None:
        try:
            done.append((index, fn(item)))
        except BaseException as exc:
            raise annotate(exc, fn, index, item) from None

    first = next(items, None)  # warm-up call: imports, caches
    if first is None:
        return Calibration(backend="thread", reason="no items to measure"), done
    run(*first)
    serial_count, serial_wall, serial_cpu = 0, 0.0, 0.0
    while serial_wall < budget_seconds / 3 and serial_count < 16:
        pair = next(items, None)
        if pair is None:
            return Calibration(backend="thread", reason="too few items to measure: threads"), done
        wall0, cpu0 = time.perf_counter(), time.thread_time()
        run(*pair)
        serial_cpu += time.thread_time() - cpu0
        serial_wall += time.perf_counter() - wall0
        serial_count += 1
    per_item = serial_wall / serial_count
    if per_item < min_process_item_seconds:
        return Calibration(backend="thread", serial_seconds_per_item=per_item,
                           reason=f"calls take {per_item * 1e6:.0f} us: too short to repay sending them to processes"), done
    cpu_share = serial_cpu / serial_wall if serial_wall > 0 else 1.0
    if cpu_share < 0.5:
        return Calibration(backend="thread", serial_seconds_per_item=per_item,
                           reason=f"calls spend {1 - cpu_share:.0%} of their time waiting (I/O): threads overlap the waits"), done

    rounds = max(1, min(8, int(budget_seconds / 2 / max(per_item, 1e-9))))
    cores = min(workers, runtime.usable_cores())
    best: tuple[float, float] | None = None
    # A second trial only when the first one fails: on a busy machine a GIL-releasing
    # function can measure low once, but a GIL-bound one can never reach the bar (it
    # cannot compute on more than one core), so the better of two trials is safe.
    for _trial in range(2):
        batch = list(itertools.islice(items, workers * rounds))
        if len(batch) < workers:
            for pair in batch:
                run(*pair)
            if best is None:
                return Calibration(backend="thread", serial_seconds_per_item=per_item,
                                   reason="too few items to measure threads: threads"), done
            break
        with ThreadExecutor(workers=workers) as pool:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            futures: list[Future[R]] = [pool.submit(fn, item) for _, item in batch]
            for (index, item), future in zip(batch, futures, strict=True):
                try:
                    done.append((index, future.result()))
                except BaseException as exc:
                    raise annotate(exc, fn, index, item) from None
            wall = time.perf_counter() - wall0
            cores_used = (time.process_time() - cpu0) / wall if wall > 0 else 0.0
        efficiency = (len(batch) / wall) / (cores / per_item)
        if best is None or (cores_used, efficiency) > best:
            best = (cores_used, efficiency)
        # Both signals must agree. CPU use alone can be inflated by other threads of this
        # process working meanwhile; wall-clock efficiency alone by other load on the machine.
        if cores_used >= min(min_parallel_cores, cores) and efficiency >= min_thread_efficiency:
            return Calibration(backend="thread", serial_seconds_per_item=per_item, thread_efficiency=efficiency,
                               reason=f"{_measured(cores_used, cores, efficiency)}: the function releases "
                                      "the GIL, so threads run it in parallel"), done
    assert best is not None
    cores_used, efficiency = best
    return Calibration(backend="process", serial_seconds_per_item=per_item, thread_efficiency=efficiency,
                       reason=f"{_measured(cores_used, cores, efficiency)}: the function holds the GIL, "
                              "so processes run it in parallel"), done


def _measured(cores_used: float, cores: int, efficiency: float) -> str:
    return f"threads used {cores_used:.1f} of {cores} cores ({efficiency:.0%} parallel efficiency)"


class AutoExecutor(Executor):
    """Chooses threads or processes on first use; see the module docstring for the rule."""

    backend = "auto"

    def __init__(self, *, workers: int, reason: str = "", **process_options: Any) -> None:
        super().__init__(workers=workers, reason=reason or "not chosen yet")
        self._process_options = process_options
        self._inner: Executor | None = None
        self.calibration: Calibration | None = None

    @property
    def chosen(self) -> str | None:
        """The backend in use, or None before the first call."""
        return None if self._inner is None else self._inner.backend

    def _resolve(self, decision: Calibration) -> Executor:
        from weft.exec._process import ProcessExecutor
        from weft.exec._thread import ThreadExecutor

        if self._inner is None:
            self.calibration = decision
            self.reason = decision.reason
            if decision.backend == "process":
                self._inner = ProcessExecutor(workers=self.workers, reason=decision.reason, **self._process_options)
            else:
                self._inner = ThreadExecutor(workers=self.workers, reason=decision.reason)
        return self._inner

    def _submit(self, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[R]:
        inner = self._inner or self._resolve(_interpreter_rule(self.workers) or Calibration(
            backend="process", reason="no sample to measure and the GIL is on: processes, assuming CPU-bound Python"))
        return inner.submit(fn, *args, **kwargs)

    def map_indexed(self, fn: Callable[[T], R], items: Iterable[T], *, ordered: bool = True,
                    max_in_flight: int | None = None) -> Iterator[tuple[int, R]]:
        if self._inner is not None:
            return self._inner.map_indexed(fn, items, ordered=ordered, max_in_flight=max_in_flight)
        return self._calibrated_map(fn, items, ordered=ordered, max_in_flight=max_in_flight)

    def _calibrated_map(self, fn: Callable[[T], R], items: Iterable[T], *, ordered: bool,
                        max_in_flight: int | None) -> Iterator[tuple[int, R]]:
        pairs = iter(enumerate(items))
        rule = _interpreter_rule(self.workers)
        if rule is not None:
            early: list[tuple[int, R]] = []
            decision = rule
        else:
            decision, early = calibrate(fn, pairs, workers=self.workers)
        inner = self._resolve(decision)
        yield from early
        # calibration ran exactly the prefix it consumed; indices continue after it
        offset = len(early)
        rest = (item for _, item in pairs)
        for index, result in inner.map_indexed(fn, rest, ordered=ordered, max_in_flight=max_in_flight):
            yield offset + index, result

    def statistics(self) -> ExecutorStatistics:
        if self._inner is None:
            return super().statistics()
        return replace(self._inner.statistics(), backend=f"auto:{self._inner.backend}")

    def _shutdown(self, *, cancel: bool, timeout: float | None) -> None:
        if self._inner is not None:
            self._inner.close(cancel=cancel, timeout=timeout)
