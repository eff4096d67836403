"""A process pool vs serial for CPU-bound pure Python."""

from __future__ import annotations

import multiprocessing
import time

from weft.lab._claim import Claim
from weft.lab._context import Context
from weft.lab.experiments._work import cpu_work, one_worker_per_core, set_scaling_threshold

CLAIM = Claim(
    name="processes", group="parallelism",
    text="A process pool makes CPU-bound pure Python scale with the cores (>= 70% parallel "
         "efficiency), because each process has its own interpreter.",
    source="the multiprocessing docs ('side-steps the Global Interpreter Lock') and most "
           "'threads vs processes' articles",
    baseline="serial", candidate="processes", threshold=1.4)


def measure(ctx: Context) -> None:
    workers, n = one_worker_per_core(ctx, on_one_core="there is nothing for processes to scale onto")
    set_scaling_threshold(ctx, workers)
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(cpu_work, [1] * workers, chunksize=1)  # every worker started and warm
        startup = time.perf_counter() - started
        ctx.note(f"spawn start method; starting the pool took {startup * 1000:.0f} ms, "
                 "excluded from the timings")
        ctx.time({"serial": lambda: [cpu_work(n) for _ in range(workers)],
                  "processes": lambda: pool.map(cpu_work, [n] * workers, chunksize=1)})
