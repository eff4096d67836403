"""Shared by the numba experiments: import numba (or skip) and compile the loops."""

from __future__ import annotations

import sys
import time
from typing import Any

from weft.lab._context import Context
from weft.lab.experiments._work import import_numpy

__all__ = ["compiled", "import_numba", "sum_squares"]


def sum_squares(a: Any) -> float:
    """The loop people write; numba compiles exactly this source."""
    total = 0.0
    for i in range(a.shape[0]):
        total += a[i] * a[i]
    return total


def import_numba(ctx: Context) -> tuple[Any, Any]:
    np = import_numpy(ctx)
    try:
        import numba
    except ImportError:
        ctx.skip(f"numba is not installed for {sys.executable} (pip install 'weft[lab]'; "
                 "numba has no wheel for free-threaded builds yet)")
    return np, numba


def compiled(ctx: Context, numba: Any, a: Any) -> tuple[Any, Any]:
    """``sum_squares`` under ``@njit`` and the ``prange`` version under ``parallel=True``,
    compiled (and the compile time noted) before any timing."""
    njit = numba.njit(cache=False)(sum_squares)

    def par(a: Any) -> float:
        total = 0.0
        for i in numba.prange(a.shape[0]):
            total += a[i] * a[i]
        return total

    parallel = numba.njit(parallel=True, cache=False)(par)
    for name, fn in (("njit", njit), ("parallel", parallel)):
        started = time.perf_counter()
        fn(a[:10])
        ctx.note(f"compiling the {name} version took {(time.perf_counter() - started) * 1000:.0f} "
                 "ms, excluded from the timings")
    return njit, parallel
