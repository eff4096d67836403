"""A pairwise-difference matrix by NumPy broadcasting vs nested Python loops."""

from __future__ import annotations

from typing import Any

from weft.lab._claim import Claim
from weft.lab._context import Context
from weft.lab.experiments._work import import_numpy

CLAIM = Claim(
    name="broadcasting", group="numpy",
    text="NumPy broadcasting is at least 10x faster than nested Python loops.",
    source="the NumPy broadcasting docs and vectorisation tutorials",
    baseline="nested_loops", candidate="broadcasting", threshold=10.0)


def nested_loops(a: list[float], b: list[float]) -> list[list[float]]:
    out = []
    for x in a:
        row = []
        for y in b:
            row.append(abs(x - y))
        out.append(row)
    return out


def measure(ctx: Context) -> None:
    np = import_numpy(ctx)
    m = ctx.pick(full=1_000, quick=400, smoke=50)
    ctx.param("matrix", f"{m}x{m}")
    rng = np.random.default_rng(0)
    a: Any = rng.random(m)
    b: Any = rng.random(m)
    la, lb = a.tolist(), b.tolist()
    ctx.time({"nested_loops": lambda: nested_loops(la, lb),
              "broadcasting": lambda: np.abs(a[:, None] - b[None, :])})
