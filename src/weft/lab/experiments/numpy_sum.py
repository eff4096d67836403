"""``ndarray.sum()`` vs a Python for-loop adding up a list."""

from __future__ import annotations

from typing import Any

from weft.lab._claim import Claim
from weft.lab._context import Context
from weft.lab.experiments._work import import_numpy

CLAIM = Claim(
    name="numpy_sum", group="numpy",
    text="Vectorise with NumPy: summing 10^7 numbers with NumPy is at least 10x faster than a "
         "Python loop.",
    source="'vectorise with NumPy' in nearly every Python-for-data-science performance guide",
    baseline="python_loop", candidate="numpy", threshold=10.0)


def python_loop(values: list[float]) -> float:
    total = 0.0
    for v in values:
        total += v
    return total


def measure(ctx: Context) -> None:
    np = import_numpy(ctx)
    n = ctx.pick(full=10_000_000, quick=10_000_000, smoke=50_000)
    ctx.param("items", n)
    array: Any = np.random.default_rng(0).random(n)
    values = array.tolist()
    ctx.time({"python_loop": lambda: python_loop(values),
              "builtin_sum": lambda: sum(values),
              "numpy": lambda: array.sum()})
