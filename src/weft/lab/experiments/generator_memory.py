"""Peak memory of summing squares through a generator vs through a list (tracemalloc)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

from weft.lab._claim import Claim
from weft.lab._context import Context

CLAIM = Claim(
    name="generator_memory", group="memory",
    text="A generator saves 95% of the memory of the equivalent list (10^6 squares), i.e. "
         "the list's peak is at least 20x the generator's.",
    source="'generators save memory' tips, often quoting ~95% savings",
    baseline="list", candidate="generator", threshold=20.0, metric="bytes")


def peak(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure(ctx: Context) -> None:
    n = ctx.pick(full=1_000_000, quick=1_000_000, smoke=50_000)
    ctx.param("items", n)
    repeats = ctx.pick(full=5, quick=2, smoke=1)
    for _ in range(repeats):  # peaks are deterministic up to allocator noise; few repeats suffice
        ctx.record("list", [peak(lambda: sum([x * x for x in range(n)]))], unit="bytes")
        ctx.record("generator", [peak(lambda: sum(x * x for x in range(n)))], unit="bytes")
