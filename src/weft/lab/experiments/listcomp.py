"""A list comprehension vs a for-loop calling append."""

from __future__ import annotations

from weft.lab._claim import Claim
from weft.lab._context import Context

CLAIM = Claim(
    name="listcomp", group="python",
    text="A list comprehension is faster than a for-loop with append (by 10% or more).",
    source="countless 'Python performance tips' lists",
    baseline="for_append", candidate="listcomp", threshold=1.1)


def for_append(n: int) -> list[int]:
    out = []
    for i in range(n):
        out.append(i * i)
    return out


def listcomp(n: int) -> list[int]:
    return [i * i for i in range(n)]


def measure(ctx: Context) -> None:
    n = ctx.pick(full=1_000_000, quick=200_000, smoke=10_000)
    ctx.param("items", n)
    ctx.time({"for_append": lambda: for_append(n), "listcomp": lambda: listcomp(n)})
