"""``retry``: exponential backoff with jitter, a maximum delay and honest give-up errors.

When every attempt fails, the **last** error is raised; its ``__cause__`` is an
``ExceptionGroup`` holding the earlier errors in order (so the traceback shows all
of them), and a note says how many attempts were made. Exceptions not listed in
``on`` pass straight through on the first occurrence.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from weft._checks import check_int, check_number
from weft.errors import ConfigError
from weft.train._wrap import (
    CALL,
    NEXT,
    REST,
    START,
    Emit,
    Finished,
    Sleep,
    make_wrapper,
    qualified_name,
)

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
    timeout: float | None

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
          timeout: float | None = None, on_retry: Callable[[RetryEvent], object] | None = None,
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], object] | None = None,
          seed: int | None = None, deadline: float | None = None) -> Callable[[F], F]:
    """Call the function again when it raises one of ``on``.

    The n-th retry sleeps ``min(max_delay, backoff * multiplier**(n-1))`` scaled by a
    random factor in ``[1 - jitter, 1 + jitter]`` (then capped at ``max_delay``). With
    ``timeout`` (seconds since the first attempt started), no retry starts whose sleep
    would end past it. ``clock`` and ``sleep`` can be replaced (tests); an async
    function awaits ``sleep`` if it returns an awaitable, and uses ``asyncio.sleep`` by
    default. A generator is retried only if it fails before yielding its first item:
    after that, items would repeat. The decorated function gains ``.statistics()``
    (a :class:`RetryStatistics`). ``deadline=`` is the former name of ``timeout=``
    (deprecated).
    """
    if deadline is not None:
        if timeout is not None:
            raise ConfigError("retry() got both timeout= and deadline=; pass only timeout= "
                              "(deadline= is its deprecated name)")
        warnings.warn("retry(deadline=...) is deprecated; pass timeout=... (the same seconds)",
                      DeprecationWarning, stacklevel=2)
        timeout = deadline
    check_int("attempts", attempts)
    errors_on = on if isinstance(on, tuple) else (on,)
    if not errors_on or not all(isinstance(e, type) and issubclass(e, BaseException) for e in errors_on):
        raise ConfigError(f"on must be an exception class or a tuple of them, got {on!r}")
    check_number("backoff", backoff)
    check_number("max_delay", max_delay)
    check_number("timeout", timeout, none=True)
    check_number("multiplier", multiplier, minimum=1.0)
    if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter <= 1:
        raise ConfigError(f"jitter must be a fraction in [0, 1], got {jitter!r}")
    policy = _Policy(attempts=attempts, on=errors_on, backoff=float(backoff), multiplier=float(multiplier),
                     max_delay=float(max_delay), jitter=float(jitter), timeout=timeout)
    rng = random.Random(seed)
    rng_lock = threading.Lock()

    def decorate(fn: F) -> F:
        name = qualified_name(fn)
        state = _State()

        def next_delay(failures: int, error: BaseException, started: float) -> float | None:
            """Seconds to wait before the next attempt, or None to give up."""
            if failures >= policy.attempts:
                return None
            with rng_lock:
                delay = policy.delay(failures, rng)
            elapsed = clock() - started
            if policy.timeout is not None and elapsed + delay > policy.timeout:
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

        def call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
            started = count_call()
            errors: list[BaseException] = []
            while True:
                try:
                    return (yield CALL)
                except policy.on as exc:
                    delay = after_failure(errors, exc, started)
                yield Sleep(delay, sleep)

        def iterate(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
            # retried until the first item; afterwards a retry would repeat items
            started = count_call()
            errors: list[BaseException] = []
            while True:
                yield START
                try:
                    first = yield NEXT
                except policy.on as exc:
                    delay = after_failure(errors, exc, started)
                    yield Sleep(delay, sleep)
                    continue
                if isinstance(first, Finished):
                    return first.value
                yield Emit(first)
                return (yield REST)

        wrapped: F = make_wrapper(fn, call=call, iterate=iterate, attributes={"statistics": state.statistics})
        return wrapped

    return decorate
