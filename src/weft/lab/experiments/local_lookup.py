"""Reading a local variable vs a module global in a hot loop."""

from __future__ import annotations

from weft.lab._claim import Claim
from weft.lab._context import Context

CLAIM = Claim(
    name="local_lookup", group="python",
    text="Local variables are faster than globals in a hot loop (by 5% or more).",
    source="the Python wiki 'PerformanceTips' (local variables) and many tips lists",
    baseline="global", candidate="local", threshold=1.05)

SCALE = 3
OFFSET = 1


def use_globals(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * SCALE + OFFSET
    return total


def use_locals(n: int) -> int:
    scale, offset = SCALE, OFFSET
    total = 0
    for i in range(n):
        total += i * scale + offset
    return total


def measure(ctx: Context) -> None:
    n = ctx.pick(full=2_000_000, quick=300_000, smoke=10_000)
    ctx.param("iterations", n)
    ctx.time({"global": lambda: use_globals(n), "local": lambda: use_locals(n)})
