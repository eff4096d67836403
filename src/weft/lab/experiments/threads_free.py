"""Threads vs serial for CPU-bound pure Python on a free-threaded build with the GIL off."""

from __future__ import annotations

from weft.lab._claim import Claim
from weft.lab._context import Context
from weft.lab.experiments._work import (
    cpu_work,
    note_cores_used,
    one_worker_per_core,
    set_scaling_threshold,
)
from weft.lab.experiments.threads_gil import run_threads

CLAIM = Claim(
    name="threads_free", group="parallelism",
    text="On the free-threaded build, threads make CPU-bound pure Python scale with the cores "
         "(>= 70% parallel efficiency).",
    source="PEP 703 and the 3.13/3.14 'free-threaded CPython' announcements and articles",
    baseline="serial", candidate="threads", threshold=1.4)


def measure(ctx: Context) -> None:
    from weft.runtime import gil_enabled, is_free_threaded_build

    if not is_free_threaded_build():
        ctx.skip("not a free-threaded build (python3.13t or later); pass one with --python")
    if gil_enabled():
        ctx.skip("free-threaded build, but the GIL is enabled now (PYTHON_GIL=1 or an "
                 "extension that re-enabled it)")
    workers, n = one_worker_per_core(ctx, on_one_core="there is nothing for threads to scale onto")
    set_scaling_threshold(ctx, workers)
    ctx.time({"serial": lambda: [cpu_work(n) for _ in range(workers)],
              "threads": lambda: run_threads(n, workers)})
    note_cores_used(ctx, "threads", workers)
