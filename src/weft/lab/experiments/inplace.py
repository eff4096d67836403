"""In-place NumPy arithmetic (``a += b``) vs an expression that allocates a new array."""

from __future__ import annotations

from typing import Any

from weft.lab._claim import Claim
from weft.lab._context import Context
from weft.lab.experiments._work import import_numpy

CLAIM = Claim(
    name="inplace", group="numpy",
    text="In-place NumPy operations (`a += b`) are faster than copying ones (`c = a + b`), "
         "by 10% or more.",
    source="NumPy performance tips ('avoid temporaries, use out= and in-place operators')",
    baseline="copy", candidate="in_place", threshold=1.1)


def measure(ctx: Context) -> None:
    np = import_numpy(ctx)
    n = ctx.pick(full=8_000_000, quick=4_000_000, smoke=100_000)
    ctx.param("items", n)
    ctx.param("megabytes", n * 8 / 1e6)
    a: Any = np.ones(n)
    b: Any = np.full(n, 1e-9)
    holder: list[Any] = [None]

    def copy() -> None:
        holder[0] = a + b  # a fresh array each time, as `c = a + b` does

    def in_place() -> None:
        a.__iadd__(b)

    ctx.time({"copy": copy, "in_place": in_place})
    holder[0] = None
