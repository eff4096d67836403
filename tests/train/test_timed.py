"""timed: exact counts and sums with an injected clock, bounded percentiles, every callable kind."""

from __future__ import annotations

import asyncio
import inspect
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import weft.train as wt
from weft.errors import ConfigError


class FakeClock:
    """Advances only when told; thread-safe enough for a lock-protected counter."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_function_statistics_with_injected_clock() -> None:
    clock = FakeClock()

    @wt.timed(clock=clock)
    def work(seconds: float) -> float:
        """Pretend to work."""
        clock.advance(seconds)
        return seconds

    for s in (1.0, 2.0, 3.0, 4.0, 10.0):
        assert work(s) == s
    stats = work.statistics()  # type: ignore[attr-defined]
    assert stats.count == 5
    assert stats.total == pytest.approx(20.0)
    assert stats.mean == pytest.approx(4.0)
    assert stats.p50 == pytest.approx(3.0)
    assert stats.p95 == pytest.approx(8.8)  # linear interpolation between 4 and 10
    assert stats.max == pytest.approx(10.0) and stats.min == pytest.approx(1.0)
    assert work.__name__ == "work" and work.__doc__ == "Pretend to work."
    assert str(inspect.signature(work)) == "(seconds: 'float') -> 'float'"


def test_block_form_shares_one_timer_by_name_and_counts_errors() -> None:
    clock = FakeClock()
    name = "test_timed.block"
    wt.timed(name, clock=clock).reset()
    for _ in range(3):
        with wt.timed(name):
            clock.advance(0.5)
    with pytest.raises(KeyError), wt.timed(name):
        clock.advance(1.0)
        raise KeyError("x")
    stats = wt.timings()[name]
    assert stats.count == 4 and stats.errors == 1
    assert stats.total == pytest.approx(2.5)


def test_nested_use_of_one_timer() -> None:
    clock = FakeClock()
    timer = wt.Timer("nested", clock=clock)
    with timer:
        clock.advance(1.0)
        with timer:
            clock.advance(2.0)
    stats = timer.statistics()
    assert stats.count == 2 and stats.total == pytest.approx(5.0)  # inner 2, outer 3


def test_methods_async_and_generators() -> None:
    clock = FakeClock()

    class Model:
        @wt.timed(clock=clock)
        def step(self, n: int) -> int:
            clock.advance(0.25)
            return n + 1

    @wt.timed(clock=clock)
    async def fetch(x: int) -> int:
        clock.advance(1.0)
        await asyncio.sleep(0)
        return x * 2

    @wt.timed(clock=clock)
    def numbers(n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            clock.advance(0.1)
            yield i

    assert Model().step(1) == 2 and Model.step.statistics().count == 1  # type: ignore[attr-defined]
    assert inspect.iscoroutinefunction(fetch)
    assert asyncio.run(fetch(4)) == 8
    assert fetch.statistics().total == pytest.approx(1.0)  # type: ignore[attr-defined]
    assert inspect.isgeneratorfunction(numbers)
    gen = numbers(5)
    clock.advance(100.0)  # the consumer's time between items is not counted
    assert list(gen) == [0, 1, 2, 3, 4]
    stats = numbers.statistics()  # type: ignore[attr-defined]
    assert stats.count == 1 and stats.total == pytest.approx(0.5) and stats.errors == 0


def test_async_generator_counts_only_its_own_steps() -> None:
    clock = FakeClock()

    @wt.timed(clock=clock)
    async def stream(n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            clock.advance(0.5)
            await asyncio.sleep(0)
            yield i

    async def consume() -> list[int]:
        seen = []
        async for item in stream(4):
            clock.advance(10.0)  # the consumer's time
            seen.append(item)
        return seen

    assert inspect.isasyncgenfunction(stream)
    assert asyncio.run(consume()) == [0, 1, 2, 3]
    stats = stream.statistics()  # type: ignore[attr-defined]
    assert stats.count == 1 and stats.total == pytest.approx(2.0) and stats.errors == 0


def test_failing_generator_step_is_counted_as_an_error() -> None:
    clock = FakeClock()

    @wt.timed(clock=clock)
    def breaks():  # type: ignore[no-untyped-def]
        clock.advance(1.0)
        yield 1
        clock.advance(2.0)
        raise KeyError("broken")

    with pytest.raises(KeyError):
        list(breaks())
    stats = breaks.statistics()  # type: ignore[attr-defined]
    assert stats.count == 1 and stats.errors == 1 and stats.total == pytest.approx(3.0)


def test_generator_closed_early_is_not_an_error() -> None:
    @wt.timed
    def forever():  # type: ignore[no-untyped-def]
        i = 0
        while True:
            yield i
            i += 1

    for i in forever():
        if i == 3:
            break
    stats = forever.statistics()  # type: ignore[attr-defined]
    assert stats.count == 1 and stats.errors == 0


def test_reservoir_is_bounded_and_counts_exact() -> None:
    timer = wt.Timer("bounded", reservoir=64)
    for i in range(10_000):
        timer.record(float(i % 100))
    stats = timer.statistics()
    assert stats.count == 10_000 and stats.max == 99.0 and stats.min == 0.0
    assert stats.mean == pytest.approx(49.5)
    assert len(timer._sample) == 64
    assert 0.0 <= stats.p50 <= stats.p95 <= 99.0


def test_threads_lose_no_counts() -> None:
    timer = wt.Timer("threads")
    barrier = threading.Barrier(8)

    def hammer() -> None:
        barrier.wait()
        for _ in range(2_000):
            with timer:
                pass

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert timer.statistics().count == 16_000


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=200))
def test_statistics_match_numpy(durations: list[float]) -> None:
    import numpy as np

    timer = wt.Timer("h")
    for d in durations:
        timer.record(d)
    s = timer.statistics()
    assert s.count == len(durations)
    assert s.total == pytest.approx(sum(durations))
    assert s.p50 == pytest.approx(float(np.percentile(durations, 50)))
    assert s.p95 == pytest.approx(float(np.percentile(durations, 95)))
    assert s.max == max(durations)


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        wt.timed(42)  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match="reservoir"):
        wt.Timer("x", reservoir=0)
    with pytest.raises(ConfigError, match="without being entered"):
        wt.Timer("x").__exit__(None, None, None)
