"""The wrapper factory behind timed, retry, logged and cached: one plan, four callable kinds."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Generator, Iterator
from concurrent.futures import Future
from typing import Any

import pytest

import weft.train as wt
from weft.train._wrap import (
    CALL,
    COLLECT,
    NEXT,
    REST,
    START,
    Emit,
    Finished,
    Sleep,
    Wait,
    make_wrapper,
)


def recording_plans(log: list[str]) -> tuple[Any, Any]:
    """A call plan and an iterate plan that write what they see to ``log``."""

    def call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
        log.append(f"call {args} {kwargs}")
        try:
            result = yield CALL
        except ValueError as exc:
            log.append(f"error {exc}")
            raise
        log.append(f"result {result}")
        return result

    def iterate(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
        log.append(f"iterate {args}")
        yield START
        while True:
            item = yield NEXT
            if isinstance(item, Finished):
                log.append(f"finished {item.value}")
                return item.value
            try:
                sent = yield Emit(item)
            except GeneratorExit:
                log.append("closed")
                raise
            log.append(f"item {item} sent {sent}")

    return call, iterate


def test_each_kind_keeps_its_kind_name_and_signature() -> None:
    log: list[str] = []
    call, iterate = recording_plans(log)

    def plain(x: int, *, y: int = 1) -> int:
        """Plain."""
        return x + y

    async def coroutine(x: int) -> int:
        return x * 2

    def numbers(n: int) -> Iterator[int]:
        yield from range(n)
        return None

    async def anumbers(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    wrapped = [make_wrapper(f, call=call, iterate=iterate, attributes={"marker": 7})
               for f in (plain, coroutine, numbers, anumbers)]
    assert [w.__name__ for w in wrapped] == ["plain", "coroutine", "numbers", "anumbers"]
    assert all(w.marker == 7 for w in wrapped)
    assert wrapped[0].__doc__ == "Plain." and str(inspect.signature(wrapped[0])) == "(x: 'int', *, y: 'int' = 1) -> 'int'"
    assert inspect.iscoroutinefunction(wrapped[1])
    assert inspect.isgeneratorfunction(wrapped[2])
    assert inspect.isasyncgenfunction(wrapped[3])

    assert wrapped[0](1, y=2) == 3
    assert asyncio.run(wrapped[1](5)) == 10
    assert list(wrapped[2](2)) == [0, 1]

    async def consume() -> list[int]:
        return [i async for i in wrapped[3](2)]

    assert asyncio.run(consume()) == [0, 1]
    assert log == ["call (1,) {'y': 2}", "result 3", "call (5,) {}", "result 10",
                   "iterate (2,)", "item 0 sent None", "item 1 sent None", "finished None",
                   "iterate (2,)", "item 0 sent None", "item 1 sent None", "finished None"]


def test_errors_reach_the_plan_and_propagate_unchanged() -> None:
    log: list[str] = []
    call, iterate = recording_plans(log)
    error = ValueError("boom")

    def fails() -> None:
        raise error

    with pytest.raises(ValueError) as info:
        make_wrapper(fails, call=call, iterate=iterate)()
    assert info.value is error and log == ["call () {}", "error boom"]


def test_stop_iteration_from_a_function_is_not_turned_into_runtime_error() -> None:
    """A ``next()`` helper may raise StopIteration on purpose; every decorator lets it through."""
    items = iter([1])

    def take() -> int:
        return next(items)

    for decorate in (wt.timed, wt.logged, wt.retry(attempts=1), wt.cached(key=lambda: object())):
        items = iter([1])
        wrapped = decorate(take)
        assert wrapped() == 1
        with pytest.raises(StopIteration):
            wrapped()


def test_generator_consumer_sends_closes_and_return_value() -> None:
    log: list[str] = []
    call, iterate = recording_plans(log)
    closed = threading.Event()

    def echo() -> Generator[int, Any, str]:
        try:
            yield 1
            yield 2
            yield 3
        finally:
            closed.set()
        return "done"

    gen = make_wrapper(echo, call=call, iterate=iterate)()
    assert next(gen) == 1
    assert gen.send("hello") == 2
    gen.close()
    assert closed.is_set(), "closing the wrapper closes the wrapped generator"
    assert log[-2:] == ["item 1 sent hello", "closed"]

    def finite() -> Generator[int, None, str]:
        yield 1
        return "result"

    gen = make_wrapper(finite, call=call, iterate=iterate)()
    assert next(gen) == 1
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "result", "a generator's return value comes through"


def test_rest_delegates_send_and_collect_gathers() -> None:
    def first_then_rest(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
        yield START
        first = yield NEXT
        yield Emit(first * 10)
        return (yield REST)

    def accumulate() -> Generator[int, int, str]:
        total = 0
        while total < 5:
            total += (yield total) or 0
        return f"total {total}"

    gen = make_wrapper(accumulate, call=first_then_rest, iterate=first_then_rest)()
    assert next(gen) == 0  # the first item, times ten
    assert next(gen) == 0
    assert gen.send(2) == 2, "after REST, sent values reach the wrapped generator"
    with pytest.raises(StopIteration) as stop:
        gen.send(4)
    assert stop.value.value == "total 6"

    def collect(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
        yield START
        items = yield COLLECT
        yield Emit(items)

    async def anumbers() -> AsyncIterator[int]:
        for i in range(3):
            yield i

    async def consume() -> list[Any]:
        return [x async for x in make_wrapper(anumbers, call=collect, iterate=collect)()]

    assert asyncio.run(consume()) == [(0, 1, 2)]


def test_sleep_and_wait_in_sync_and_async_code() -> None:
    slept: list[float] = []
    future: Future[int] = Future()

    def plan(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
        yield Sleep(0.25, slept.append)
        value = yield Wait(future)
        return value + (yield CALL)

    def one() -> int:
        return 1

    async def two() -> int:
        return 2

    async def async_sleep(seconds: float) -> None:
        slept.append(-seconds)

    future.set_result(40)
    assert make_wrapper(one, call=plan, iterate=plan)() == 41
    assert asyncio.run(make_wrapper(two, call=plan, iterate=plan)()) == 42
    assert slept == [0.25, 0.25]

    def awaiting_plan(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
        yield Sleep(0.5, async_sleep)
        return (yield Wait(pending))

    pending: Future[int] = Future()
    setter = threading.Thread(target=pending.set_result, args=(7,))
    setter.start()
    assert asyncio.run(make_wrapper(two, call=awaiting_plan, iterate=awaiting_plan)()) == 7
    setter.join()
    assert slept[-1] == -0.5, "an async function awaits an async sleep"


def test_an_instruction_of_the_wrong_kind_is_a_weft_bug() -> None:
    def wrong(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
        return (yield NEXT)

    with pytest.raises(AssertionError, match="NEXT"):
        make_wrapper(lambda: 1, call=wrong, iterate=wrong)()


def test_decorators_stack() -> None:
    clock = iter(range(100)).__next__
    calls: list[int] = []

    @wt.timed(clock=lambda: float(clock()))
    @wt.cached
    @wt.retry(attempts=2, on=KeyError, jitter=0, sleep=lambda s: None)
    def lookup(key: int) -> int:
        calls.append(key)
        if len(calls) == 1:
            raise KeyError(key)
        return key * 2

    assert lookup(3) == lookup(3) == 6
    assert calls == [3, 3], "retried once, then cached"
    assert lookup.statistics().count == 2  # type: ignore[attr-defined]
