"""retry: backoff schedule with an injected clock and sleep (no real sleeps), give-up errors."""

from __future__ import annotations

import asyncio
import inspect

import pytest

import weft.train as wt
from weft.errors import ConfigError


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def flaky(failures: int, error: type[Exception] = ConnectionError):  # type: ignore[no-untyped-def]
    calls = {"n": 0}

    def fn(x: int) -> int:
        """Fails the first ``failures`` times."""
        calls["n"] += 1
        if calls["n"] <= failures:
            raise error(f"failure {calls['n']}")
        return x * 10

    return fn, calls


def test_exponential_backoff_capped_without_jitter() -> None:
    t = FakeTime()
    fn, calls = flaky(5)
    wrapped = wt.retry(attempts=6, on=ConnectionError, backoff=0.5, multiplier=2, max_delay=3.0, jitter=0,
                       clock=t.clock, sleep=t.sleep)(fn)
    assert wrapped(2) == 20
    assert calls["n"] == 6
    assert t.sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert wrapped.statistics() == wt.RetryStatistics(calls=1, retries=5, gave_up=0)  # type: ignore[attr-defined]
    assert wrapped.__name__ == "fn" and wrapped.__doc__ == "Fails the first ``failures`` times."
    assert str(inspect.signature(wrapped)) == "(x: 'int') -> 'int'"


def test_jitter_stays_within_bounds() -> None:
    t = FakeTime()
    fn, _ = flaky(9)
    wt.retry(attempts=10, on=ConnectionError, backoff=1.0, multiplier=1, max_delay=10, jitter=0.25, seed=3,
             clock=t.clock, sleep=t.sleep)(fn)(1)
    assert len(t.sleeps) == 9
    assert all(0.75 <= s <= 1.25 for s in t.sleeps)
    assert len(set(t.sleeps)) > 1, "jitter must vary the delays"


def test_gives_up_with_last_error_and_earlier_ones_as_cause() -> None:
    t = FakeTime()
    fn, calls = flaky(100)
    events: list[wt.RetryEvent] = []
    wrapped = wt.retry(attempts=3, on=(ConnectionError, TimeoutError), backoff=0.1, jitter=0,
                       on_retry=events.append, clock=t.clock, sleep=t.sleep)(fn)
    with pytest.raises(ConnectionError, match="failure 3") as info:
        wrapped(1)
    assert calls["n"] == 3
    cause = info.value.__cause__
    assert isinstance(cause, ExceptionGroup)
    assert [str(e) for e in cause.exceptions] == ["failure 1", "failure 2"]
    assert any("gave up after 3 attempt" in n for n in info.value.__notes__)
    assert [(e.attempt, str(e.error), e.delay) for e in events] == [(1, "failure 1", 0.1), (2, "failure 2", 0.2)]
    assert wrapped.statistics().gave_up == 1  # type: ignore[attr-defined]


def test_unlisted_exceptions_pass_straight_through() -> None:
    t = FakeTime()
    fn, calls = flaky(1, error=KeyError)
    wrapped = wt.retry(attempts=5, on=ConnectionError, clock=t.clock, sleep=t.sleep)(fn)
    with pytest.raises(KeyError) as info:
        wrapped(1)
    assert calls["n"] == 1 and t.sleeps == []
    assert info.value.__cause__ is None


def test_timeout_stops_retrying() -> None:
    t = FakeTime()
    fn, calls = flaky(100)
    wrapped = wt.retry(attempts=100, on=ConnectionError, backoff=1.0, multiplier=2, max_delay=100, jitter=0,
                       timeout=10.0, clock=t.clock, sleep=t.sleep)(fn)
    with pytest.raises(ConnectionError):
        wrapped(1)
    assert t.sleeps == [1.0, 2.0, 4.0]  # the next (8 s) would end past 10 s
    assert calls["n"] == 4


def test_deadline_is_the_deprecated_name_of_timeout() -> None:
    t = FakeTime()
    fn, calls = flaky(100)
    with pytest.warns(DeprecationWarning, match="timeout="):
        decorate = wt.retry(attempts=100, on=ConnectionError, backoff=1.0, multiplier=2, max_delay=100,
                            jitter=0, deadline=10.0, clock=t.clock, sleep=t.sleep)
    with pytest.raises(ConnectionError):
        decorate(fn)(1)
    assert t.sleeps == [1.0, 2.0, 4.0] and calls["n"] == 4, "the same schedule as timeout=10"
    with pytest.raises(ConfigError, match="both"):
        wt.retry(timeout=1.0, deadline=1.0)


def test_async_function_awaits_injected_sleep() -> None:
    t = FakeTime()
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    calls = {"n": 0}

    @wt.retry(attempts=4, on=ConnectionError, backoff=0.2, jitter=0, clock=t.clock, sleep=fake_sleep)
    async def fetch(x: int) -> int:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError("down")
        return x

    assert inspect.iscoroutinefunction(fetch)
    assert asyncio.run(fetch(7)) == 7
    assert slept == [0.2, 0.4]


def test_method_is_retried() -> None:
    t = FakeTime()

    class Client:
        def __init__(self) -> None:
            self.calls = 0

        @wt.retry(attempts=3, on=OSError, jitter=0, clock=t.clock, sleep=t.sleep)
        def get(self, key: str) -> str:
            self.calls += 1
            if self.calls == 1:
                raise OSError("once")
            return key.upper()

    c = Client()
    assert c.get("a") == "A" and c.calls == 2


def test_generator_retried_only_before_first_item() -> None:
    t = FakeTime()
    state = {"starts": 0}

    @wt.retry(attempts=3, on=ValueError, jitter=0, clock=t.clock, sleep=t.sleep)
    def items(fail_late: bool):  # type: ignore[no-untyped-def]
        state["starts"] += 1
        if state["starts"] == 1:
            raise ValueError("not ready")
        yield 1
        if fail_late:
            raise ValueError("after the first item")
        yield 2

    assert inspect.isgeneratorfunction(items)
    assert list(items(False)) == [1, 2] and state["starts"] == 2
    state["starts"] = 1
    gen = items(True)
    assert next(gen) == 1
    with pytest.raises(ValueError, match="after the first item"):
        next(gen)
    assert state["starts"] == 2, "a generator that already yielded is not restarted"


def test_async_generator_retried_only_before_first_item() -> None:
    t = FakeTime()
    starts = {"n": 0}

    @wt.retry(attempts=3, on=ConnectionError, jitter=0, clock=t.clock, sleep=t.sleep)
    async def stream(n: int):  # type: ignore[no-untyped-def]
        starts["n"] += 1
        if starts["n"] < 3:
            raise ConnectionError("not yet")
        for i in range(n):
            yield i
        raise ConnectionError("after items: not retried")

    async def consume() -> list[int]:
        seen: list[int] = []
        with pytest.raises(ConnectionError, match="after items"):
            async for item in stream(3):
                seen.append(item)
        return seen

    assert inspect.isasyncgenfunction(stream)
    assert asyncio.run(consume()) == [0, 1, 2]
    assert starts["n"] == 3 and t.sleeps == [0.1, 0.2]
    assert stream.statistics() == wt.RetryStatistics(calls=1, retries=2, gave_up=0)  # type: ignore[attr-defined]


def test_generator_gives_up_like_a_function() -> None:
    t = FakeTime()

    @wt.retry(attempts=2, on=OSError, jitter=0, clock=t.clock, sleep=t.sleep)
    def never():  # type: ignore[no-untyped-def]
        raise OSError("down")
        yield

    with pytest.raises(OSError, match="down") as info:
        list(never())
    assert isinstance(info.value.__cause__, ExceptionGroup)
    assert never.statistics().gave_up == 1  # type: ignore[attr-defined]


def test_bad_arguments() -> None:
    for kwargs in ({"attempts": 0}, {"on": 3}, {"backoff": -1}, {"jitter": 2.0}, {"multiplier": 0.5},
                   {"timeout": -1.0}, {"max_delay": float("nan")}):
        with pytest.raises(ConfigError):
            wt.retry(**kwargs)  # type: ignore[arg-type]
