"""Threads vs serial for CPU-bound pure Python under the GIL."""

from __future__ import annotations

import threading

from weft.lab._claim import Claim
from weft.lab._context import Context
from weft.lab.experiments._work import cpu_chunk, cpu_work
from weft.runtime import gil_enabled

CLAIM = Claim(
    name="threads_gil", group="parallelism",
    text="Threads do not speed up CPU-bound pure Python under the GIL.",
    source="the threading docs ('only one thread can execute Python code at once') and most "
           "'threads vs processes' articles",
    baseline="serial", candidate="threads", threshold=1.1, direction="at_most")


def run_threads(n: int, workers: int) -> None:
    threads = [threading.Thread(target=cpu_work, args=(n,)) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def measure(ctx: Context) -> None:
    if not gil_enabled():
        ctx.skip("the GIL is off in this interpreter; threads_free measures this case")
    workers = max(2, ctx.cores)
    n = cpu_chunk(ctx)
    ctx.param("workers", workers)
    ctx.param("iterations_per_worker", n)
    ctx.time({"serial": lambda: [cpu_work(n) for _ in range(workers)],
              "threads": lambda: run_threads(n, workers)})
