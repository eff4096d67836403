"""``from math import sqrt`` then ``sqrt(x)`` vs ``math.sqrt(x)`` in a hot loop."""

from __future__ import annotations

import math
from math import sqrt

from weft.lab._claim import Claim
from weft.lab._context import Context

CLAIM = Claim(
    name="from_import", group="python",
    text="`from math import sqrt; sqrt(x)` beats `math.sqrt(x)` (by 5% or more).",
    source="'avoid dots' in the Python wiki PerformanceTips and many tips lists",
    baseline="module_attr", candidate="from_import", threshold=1.05)


def module_attr(n: int) -> float:
    total = 0.0
    for i in range(n):
        total += math.sqrt(i)
    return total


def from_import(n: int) -> float:
    total = 0.0
    for i in range(n):
        total += sqrt(i)
    return total


def measure(ctx: Context) -> None:
    n = ctx.pick(full=2_000_000, quick=300_000, smoke=10_000)
    ctx.param("iterations", n)
    ctx.time({"module_attr": lambda: module_attr(n), "from_import": lambda: from_import(n)})
