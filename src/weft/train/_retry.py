"""``retry``: exponential backoff with jitter, a maximum delay and honest give-up errors.

When every attempt fails, the **last** error is raised; its ``__cause__`` is an
``ExceptionGroup`` holding the earlier errors in order (so the traceback shows all
of them), and a note says how many attempts were made. Exceptions not listed in
``on`` pass straight through on the first occurrence.
"""

from __future__ import annotations

import functools
import inspect
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from weft.errors import ConfigError
from weft.train._wrap import kind_of, qualified_name

__all__ = ["RetryEvent", "RetryStatistics", "retry"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, kw_only=True)
class RetryEvent:
    """What ``on_retry`` receives before each sleep."""

    function: str
    attempt: int          # the attempt that failed, from 1
    error: BaseException
    delay: float          # seconds about to be slept
    elapsed: float        # seconds since the first attempt started


@dataclass(frozen=True, kw_only=True)
class RetryStatistics:
    """Counters of one decorated function."""

    calls: int
    retries: int
    gave_up: int


@dataclass(frozen=True, kw_only=True)
class _Policy:
    attempts: int
    on: tuple[type[BaseException], ...]
    backoff: float
    multiplier: float
    max_delay: float
    jitter: float
    deadline: float | None

    def delay(self, failures: int, rng: random.Random) -> float:
        base = min(self.max_delay, self.backoff * self.multiplier ** (failures - 1))
        if self.jitter:
            base *= 1.0 + rng.uniform(-self.jitter, self.jitter)
        return max(0.0, min(self.max_delay, base))


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = self.retries = self.gave_up = 0

    def statistics(self) -> RetryStatistics:
        with self.lock:
            return RetryStatistics(calls=self.calls, retries=self.retries, gave_up=self.gave_up)


def _give_up(errors: list[BaseException], attempts: int, name: str) -> BaseException:
    last = errors[-1]
    last.add_note(f"weft.train.retry: {name} gave up after {attempts} attempt(s)")
    if len(errors) > 1:
        # BaseExceptionGroup returns an ExceptionGroup when every member is an Exception
        last.__cause__ = BaseExceptionGroup(f"{len(errors) - 1} earlier attempt(s) of {name} failed",
                                            errors[:-1])
    return last


def retry(*, attempts: int = 3, on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
          backoff: float = 0.1, multiplier: float = 2.0, max_delay: float = 30.0, jitter: float = 0.1,
          deadline: float | None = None, on_retry: Callable[[RetryEvent], object] | None = None,
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], object] | None = None,
          seed: int | None = None) -> Callable[[F], F]:
    """Call the function again when it raises one of ``on``.

    The n-th retry sleeps ``min(max_delay, backoff * multiplier**(n-1))`` scaled by a
    random factor in ``[1 - jitter, 1 + jitter]`` (then capped at ``max_delay``). With
    ``deadline`` (seconds), no retry starts whose sleep would end past it. ``clock`` and
    ``sleep`` can be replaced (tests); an async function awaits ``sleep`` if it returns
    an awaitable, and uses ``asyncio.sleep`` by default. A generator is retried only if
    it fails before yielding its first item: after that, items would repeat.
    The decorated function gains ``.statistics()`` (a :class:`RetryStatistics`).
    """
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ConfigError(f"attempts must be an integer >= 1, got {attempts!r}")
    errors_on = on if isinstance(on, tuple) else (on,)
    if not errors_on or not all(isinstance(e, type) and issubclass(e, BaseException) for e in errors_on):
        raise ConfigError(f"on must be an exception class or a tuple of them, got {on!r}")
    for label, value in (("backoff", backoff), ("max_delay", max_delay)):
        if not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{label} must be a number >= 0 (seconds), got {value!r}")
    if not isinstance(multiplier, int | float) or multiplier < 1:
        raise ConfigError(f"multiplier must be >= 1, got {multiplier!r}")
    if not isinstance(jitter, int | float) or not 0 <= jitter <= 1:
        raise ConfigError(f"jitter must be a fraction in [0, 1], got {jitter!r}")
    policy = _Policy(attempts=attempts, on=errors_on, backoff=float(backoff), multiplier=float(multiplier),
                     max_delay=float(max_delay), jitter=float(jitter), deadline=deadline)
    rng = random.Random(seed)
    rng_lock = threading.Lock()

    def decorate(fn: F) -> F:
        name = qualified_name(fn)
        state = _State()
        kind = kind_of(fn)

        def next_delay(failures: int, error: BaseException, started: float) -> float | None:
            """Seconds to wait before the next attempt, or None to give up."""
            if failures >= policy.attempts:
                return None
            with rng_lock:
                delay = policy.delay(failures, rng)
            elapsed = clock() - started
            if policy.deadline is not None and elapsed + delay > policy.deadline:
                return None
            with state.lock:
                state.retries += 1
            logger.info("%s failed (attempt %d of %d: %s: %s); retrying in %.3f s",
                        name, failures, policy.attempts, type(error).__name__, error, delay)
            if on_retry is not None:
                on_retry(RetryEvent(function=name, attempt=failures, error=error, delay=delay, elapsed=elapsed))
            return delay

        def after_failure(errors: list[BaseException], error: BaseException, started: float) -> float:
            """Record ``error``; return the delay before the next attempt, or raise if giving up."""
            errors.append(error)
            delay = next_delay(len(errors), error, started)
            if delay is None:
                with state.lock:
                    state.gave_up += 1
                final = _give_up(errors, len(errors), name)
                raise final from final.__cause__
            return delay

        def count_call() -> float:
            with state.lock:
                state.calls += 1
            return clock()

        wrapper: Any
        if kind == "async":
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                started = count_call()
                errors: list[BaseException] = []
                while True:
                    try:
                        return await fn(*args, **kwargs)
                    except policy.on as exc:
                        delay = after_failure(errors, exc, started)
                    await _async_sleep(sleep, delay)
            wrapper = async_wrapper
        elif kind == "generator":
            @functools.wraps(fn)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
                started = count_call()
                errors: list[BaseException] = []
                while True:
                    inner = fn(*args, **kwargs)
                    try:
                        first = next(inner)
                    except StopIteration as stop:
                        return stop.value
                    except policy.on as exc:
                        delay = after_failure(errors, exc, started)
                        (sleep or time.sleep)(delay)
                        continue
                    yield first
                    return (yield from inner)
            wrapper = gen_wrapper
        elif kind == "async_generator":
            @functools.wraps(fn)
            async def agen_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                started = count_call()
                errors: list[BaseException] = []
                while True:
                    inner = fn(*args, **kwargs)
                    try:
                        first = await inner.__anext__()
                    except StopAsyncIteration:
                        return
                    except policy.on as exc:
                        delay = after_failure(errors, exc, started)
                        await _async_sleep(sleep, delay)
                        continue
                    yield first
                    async for item in inner:
                        yield item
                    return
            wrapper = agen_wrapper
        else:
            @functools.wraps(fn)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                started = count_call()
                errors: list[BaseException] = []
                while True:
                    try:
                        return fn(*args, **kwargs)
                    except policy.on as exc:
                        delay = after_failure(errors, exc, started)
                    (sleep or time.sleep)(delay)
            wrapper = sync_wrapper
        wrapper.statistics = state.statistics
        return wrapper  # type: ignore[no-any-return]

    return decorate


async def _async_sleep(sleep: Callable[[float], object] | None, delay: float) -> None:
    if sleep is None:
        import asyncio  # here, not at the top: `import weft.train` stays light

        await asyncio.sleep(delay)
        return
    result = sleep(delay)
    if inspect.isawaitable(result):
        await result

