"""A numeric loop compiled with numba ``@njit`` vs the same loop in the interpreter."""

from __future__ import annotations

from typing import Any

from weft.lab._claim import Claim
from weft.lab._context import Context
from weft.lab.experiments._numba import compiled, import_numba, sum_squares

CLAIM = Claim(
    name="numba_njit", group="numpy",
    text="numba's @njit compiles a numeric loop to C speed: at least 10x faster than the "
         "interpreter, close to NumPy.",
    source="the numba docs ('speed of C or FORTRAN') and numba tutorials",
    baseline="python_loop", candidate="njit", threshold=10.0)


def measure(ctx: Context) -> None:
    np, numba = import_numba(ctx)
    n = ctx.pick(full=2_000_000, quick=300_000, smoke=20_000)
    ctx.param("items", n)
    a: Any = np.random.default_rng(0).random(n)
    njit, _ = compiled(ctx, numba, a)
    ctx.note("the Python loop indexes the NumPy array, as the code numba compiles does")
    ctx.time({"python_loop": lambda: sum_squares(a), "njit": lambda: njit(a),
              "numpy_dot": lambda: float(a @ a)})
