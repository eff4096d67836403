"""numba ``@njit(parallel=True)`` with ``prange`` vs the serial ``@njit`` loop."""

from __future__ import annotations

from typing import Any

from weft.lab._claim import Claim
from weft.lab._context import Context
from weft.lab.experiments._numba import compiled, import_numba

CLAIM = Claim(
    name="numba_parallel", group="numpy",
    text="`@njit(parallel=True)` with `prange` scales a numeric loop with the cores "
         "(>= 70% parallel efficiency).",
    source="the numba parallel docs and numba tutorials",
    baseline="njit", candidate="parallel", threshold=1.4)


def measure(ctx: Context) -> None:
    np, numba = import_numba(ctx)
    if ctx.cores < 2:
        ctx.skip("only one usable core: there is nothing for parallel=True to scale onto")
    n = ctx.pick(full=20_000_000, quick=10_000_000, smoke=200_000)
    ctx.param("items", n)
    ctx.param("threads", ctx.cores)
    numba.set_num_threads(min(ctx.cores, numba.config.NUMBA_NUM_THREADS))
    ctx.set_threshold(0.7 * ctx.cores, f"threshold: 70% of {ctx.cores} cores = {0.7 * ctx.cores:g}x")
    a: Any = np.random.default_rng(0).random(n)
    njit, parallel = compiled(ctx, numba, a)
    ctx.time({"njit": lambda: njit(a), "parallel": lambda: parallel(a)})
