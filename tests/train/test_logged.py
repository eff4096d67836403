"""logged: one line per call, arguments summarised, exceptions logged and re-raised."""

from __future__ import annotations

import asyncio
import inspect
import logging

import numpy as np
import pytest

import weft.train as wt
from weft.errors import ConfigError


def test_one_line_with_summarised_arguments(caplog: pytest.LogCaptureFixture) -> None:
    @wt.logged
    def combine(images: np.ndarray, label: str, *, extra: list[int] | None = None) -> np.ndarray:
        """Combine things."""
        return images.mean(axis=0)

    caplog.set_level(logging.INFO, logger=__name__)
    combine(np.zeros((32, 3, 8, 8), np.float32), "x" * 500, extra=list(range(1000)))
    assert len(caplog.records) == 1
    record = caplog.records[0]
    assert record.name == __name__ and record.levelno == logging.INFO
    message = record.getMessage()
    assert "ndarray[float32, (32, 3, 8, 8)]" in message
    assert "…(500 chars)" in message and "x" * 100 not in message
    assert "extra=list[len=1000]" in message
    assert "-> ndarray[float32, (3, 8, 8)]" in message and " ms" in message
    assert record.args, "%-style arguments, formatted lazily"
    assert combine.__doc__ == "Combine things."
    assert list(inspect.signature(combine).parameters) == ["images", "label", "extra"]


def test_exception_is_logged_and_reraised(caplog: pytest.LogCaptureFixture) -> None:
    @wt.logged(logger="weft.test.logged", error_level=logging.ERROR)
    def boom(x: int) -> int:
        raise ValueError(f"bad value {x}")

    caplog.set_level(logging.INFO, logger="weft.test.logged")
    with pytest.raises(ValueError, match="bad value 3"):
        boom(3)
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert "boom(3) raised ValueError: bad value 3" in record.getMessage()


def test_async_method_and_generator(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=__name__)

    class Service:
        @wt.logged(level=logging.DEBUG)
        async def get(self, key: str) -> dict[str, int]:
            await asyncio.sleep(0)
            return {key: 1}

    @wt.logged
    def count(n: int):  # type: ignore[no-untyped-def]
        yield from range(n)

    assert inspect.iscoroutinefunction(Service.get)
    assert asyncio.run(Service().get("a")) == {"a": 1}
    assert list(count(4)) == [0, 1, 2, 3]
    messages = [r.getMessage() for r in caplog.records]
    assert any("Service.get(" in m and "-> dict(len=1)" in m for m in messages)
    assert any("count(4) -> generator of 4 item(s)" in m for m in messages)


def test_async_generator_closed_early_and_generator_failing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=__name__)

    @wt.logged
    async def ticks(n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            yield i

    @wt.logged
    def broken():  # type: ignore[no-untyped-def]
        yield 1
        raise OSError("disk gone")

    async def take_two() -> list[int]:
        seen = []
        stream = ticks(10)
        async for item in stream:
            seen.append(item)
            if len(seen) == 2:
                break
        await stream.aclose()
        return seen

    assert asyncio.run(take_two()) == [0, 1]
    with pytest.raises(OSError, match="disk gone"):
        list(broken())
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert any(m.startswith("test_async_generator_closed_early_and_generator_failing.<locals>.ticks(10) -> "
                            "async generator closed after 2 item(s)") for _, m in messages), messages
    assert any(level == logging.WARNING and "broken() raised OSError: disk gone" in m for level, m in messages)


def test_nothing_formatted_when_disabled(caplog: pytest.LogCaptureFixture) -> None:
    class Loud:
        def __repr__(self) -> str:
            raise AssertionError("repr must not run when the level is disabled")

    @wt.logged(level=logging.DEBUG, error_level=logging.DEBUG)
    def f(x: object) -> None:
        return None

    caplog.set_level(logging.WARNING)
    f(Loud())


def test_summarize_is_safe() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert "repr failed" in wt.summarize(Broken())
    assert wt.summarize({"a": np.ones(3)}) == "{'a': ndarray[float64, (3,)]}"
    assert wt.summarize(b"x" * 1000) == "bytes[1000 bytes]"
    assert wt.summarize([1, 2, 3, 4, 5]) == "list[len=5]"
    with pytest.raises(ConfigError, match="width"):
        wt.logged(width=4)
