"""numba ``@njit(parallel=True)`` with ``prange`` vs the serial ``@njit`` loop."""

from __future__ import annotations

from typing import Any

from weft.lab._claim import Claim
from weft.lab._context import Context
from weft.lab.experiments._numba import compiled, import_numba
from weft.lab.experiments._work import set_scaling_threshold

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
    threads = min(ctx.cores, numba.config.NUMBA_NUM_THREADS)
    ctx.param("threads", threads)
    numba.set_num_threads(threads)
    set_scaling_threshold(ctx, threads)
    a: Any = np.random.default_rng(0).random(n)
    njit, parallel = compiled(ctx, numba, a)
    ctx.time({"njit": lambda: njit(a), "parallel": lambda: parallel(a)})
