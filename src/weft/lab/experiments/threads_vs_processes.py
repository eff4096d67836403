"""Threads vs a process pool for the same CPU-bound pure Python, on each interpreter."""

from __future__ import annotations

import multiprocessing

from weft.lab._claim import Claim
from weft.lab._context import Context
from weft.lab.experiments._work import cpu_work, one_worker_per_core
from weft.lab.experiments.threads_gil import run_threads

CLAIM = Claim(
    name="threads_vs_processes", group="parallelism",
    text="For CPU-bound pure Python, threads are slower than processes (processes at least "
         "10% faster).",
    source="most 'threading vs multiprocessing' articles ('use processes for CPU-bound work')",
    baseline="threads", candidate="processes", threshold=1.1)


def measure(ctx: Context) -> None:
    workers, n = one_worker_per_core(ctx, on_one_core="neither threads nor processes can run in parallel")
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(cpu_work, [1] * workers, chunksize=1)  # every worker started and warm
        ctx.note("spawn start method; the pool is started before timing (start-up excluded)")
        ctx.time({"threads": lambda: run_threads(n, workers),
                  "processes": lambda: pool.map(cpu_work, [n] * workers, chunksize=1)})
