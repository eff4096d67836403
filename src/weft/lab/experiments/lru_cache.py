"""``functools.lru_cache`` on a function called again and again with the same arguments."""

from __future__ import annotations

import functools

from weft.lab._claim import Claim
from weft.lab._context import Context

CLAIM = Claim(
    name="lru_cache", group="python",
    text="`functools.lru_cache` makes repeated calls of a pure function at least 2x faster.",
    source="the functools docs and 'memoisation' tips",
    baseline="uncached", candidate="cached", threshold=2.0)


def features(key: int) -> float:
    """A small pure computation (about 10 microseconds)."""
    total = 0.0
    for i in range(150):
        total += (key * i) % 13 / (i + 1)
    return total


def measure(ctx: Context) -> None:
    calls = ctx.pick(full=20_000, quick=4_000, smoke=300)
    distinct = 50
    ctx.param("calls", calls)
    ctx.param("distinct_arguments", distinct)
    keys = [i % distinct for i in range(calls)]

    def uncached() -> None:
        for k in keys:
            features(k)

    def cached() -> None:
        f = functools.lru_cache(maxsize=128)(features)  # fresh cache: misses are counted too
        for k in keys:
            f(k)

    ctx.time({"uncached": uncached, "cached": cached})
