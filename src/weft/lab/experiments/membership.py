"""Membership tests in a list vs a set vs a dict."""

from __future__ import annotations

from collections.abc import Container

from weft.lab._claim import Claim
from weft.lab._context import Context

CLAIM = Claim(
    name="membership", group="python",
    text="`x in a_set` is at least 10x faster than `x in a_list` for 10,000 items.",
    source="the Python TimeComplexity wiki page and most data-structure tips",
    baseline="list", candidate="set", threshold=10.0)


def count_hits(container: Container[int], probes: list[int]) -> int:
    hits = 0
    for p in probes:
        if p in container:
            hits += 1
    return hits


def measure(ctx: Context) -> None:
    n = ctx.pick(full=10_000, quick=10_000, smoke=1_000)
    lookups = ctx.pick(full=2_000, quick=300, smoke=50)
    ctx.param("items", n)
    ctx.param("lookups", lookups)
    items = list(range(0, 2 * n, 2))
    # Half the probes hit (spread through the list), half miss (a list scans all of it).
    probes = [(i * 7919) % (2 * n) for i in range(lookups)]
    as_set, as_dict = set(items), dict.fromkeys(items)
    ctx.time({"list": lambda: count_hits(items, probes),
              "set": lambda: count_hits(as_set, probes),
              "dict": lambda: count_hits(as_dict, probes)})
