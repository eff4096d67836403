"""Module-level functions for tests: process workers import them by name."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np


def square(x: int) -> int:
    return x * x


def slow_square(x: int) -> int:
    time.sleep(0.001 * (x % 3))
    return x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"three is not allowed (got {x})")
    return x


def double_array(a: np.ndarray) -> np.ndarray:
    return a * 2


def array_stats(payload: dict[str, np.ndarray]) -> dict[str, object]:
    return {"sum": float(payload["x"].sum()), "echo": payload["x"], "shape": payload["x"].shape}


def make_array(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float32)


def die_on_two(x: int, stamp: str | None = None) -> int:
    """Kill the worker on 2; first write ``time.monotonic()`` to ``stamp`` if given (the
    clock is system-wide, so the test can time how fast the death is noticed)."""
    if x == 2:
        if stamp is not None:
            Path(stamp).write_text(repr(time.monotonic()))
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def die_once(marker: str) -> str:
    """Kill the worker the first time (the marker file does not exist yet), succeed after."""
    path = Path(marker)
    if not path.exists():
        path.write_text("died")
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def python_loop(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def block_until(path: str) -> str:
    """Wait (bounded) until a file exists: lets a test hold a worker busy without sleeps.

    Creates ``path + ".started"`` first, so the test knows the call is running.
    """
    Path(path + ".started").touch()
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.005)
    return path


def return_lock(_: int) -> object:
    """A result that cannot be pickled."""
    import threading

    return threading.Lock()


def identity(x: object) -> object:
    return x


class SlowToPickle:
    """Takes ``seconds`` to pickle and as long again to unpickle, like a large argument or
    result, or a function whose module is imported when the first call is unpickled."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __reduce__(self) -> tuple[object, tuple[float]]:
        time.sleep(self.seconds)
        return (_unpickle_slowly, (self.seconds,))


def _unpickle_slowly(seconds: float) -> SlowToPickle:
    time.sleep(seconds)
    return SlowToPickle(seconds)


class NeedsTwoArguments(Exception):
    """Pickles, but cannot be unpickled: pickle re-creates it with ``args`` only."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def raise_needs_two(x: int) -> int:
    raise NeedsTwoArguments(f"bad input {x}", 7)
