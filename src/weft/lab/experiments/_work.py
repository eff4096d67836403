"""Workloads shared by several experiments. Module-level so spawned processes can import them."""

from __future__ import annotations

import sys
from typing import Any

from weft.lab._context import Context

__all__ = ["SCALING_EFFICIENCY", "array_server", "cpu_chunk", "cpu_work", "import_numpy", "note_cores_used",
           "one_worker_per_core", "set_scaling_threshold"]

#: What "scales with the cores" means in the claims: at least this share of the ideal
#: N-fold speed-up on N cores (the ">= 70% parallel efficiency" their texts state).
SCALING_EFFICIENCY = 0.7
#: Below this share of the cores it started threads on, a variant is taken to have
#: competed with other processes for the cores (or serialised) and the report says so.
_FULL_CORES_SHARE = 0.85


def cpu_work(n: int) -> int:
    """CPU-bound pure Python: holds the GIL for the whole call."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def cpu_chunk(ctx: Context) -> int:
    """Iterations per worker for the threads and processes experiments (same in all of them,
    so that serial timings can be compared across interpreters)."""
    return ctx.pick(full=1_000_000, quick=250_000, smoke=20_000)


def one_worker_per_core(ctx: Context, *, on_one_core: str) -> tuple[int, int]:
    """(workers, iterations per worker) of a parallel experiment, recorded as parameters:
    one worker per usable core. Skips with ``on_one_core`` when there is only one."""
    if ctx.cores < 2:
        ctx.skip(f"only one usable core: {on_one_core}")
    workers, n = ctx.cores, cpu_chunk(ctx)
    ctx.param("workers", workers)
    ctx.param("iterations_per_worker", n)
    return workers, n


def note_cores_used(ctx: Context, variant: str, workers: int) -> None:
    """Say how many cores ``variant``'s threads got; warn when other processes took some."""
    used = ctx.cores_used(variant)
    ctx.param(f"{variant}_cores_used", round(used, 2))
    if used < _FULL_CORES_SHARE * workers:
        ctx.note(f"{variant} got {used:.2f} cores of CPU time for {workers} threads (median): "
                 "either they serialised, or other processes were competing for the cores "
                 "during the run; rerun on an idle machine before trusting the ratio")


def set_scaling_threshold(ctx: Context, workers: int) -> None:
    """Make the claim's threshold :data:`SCALING_EFFICIENCY` of ``workers``-fold."""
    threshold = SCALING_EFFICIENCY * workers
    ctx.set_threshold(threshold, f"threshold: {SCALING_EFFICIENCY:.0%} of {workers} cores = {threshold:g}x")


def import_numpy(ctx: Context) -> Any:
    """NumPy, or skip the experiment saying it is not installed for this interpreter."""
    try:
        import numpy
    except ImportError:
        ctx.skip(f"NumPy is not installed for {sys.executable}")
    return numpy


def array_server(requests: Any, replies: Any, n: int, shm_name: str) -> None:
    """Child side of queue_vs_shm: send one float64 array of ``n`` items per request,
    either pickled through ``replies`` or written into shared memory ``shm_name``."""
    from multiprocessing import shared_memory

    import numpy as np

    data = np.arange(n, dtype=np.float64)
    # Spawned children share the parent's resource tracker, which already owns the segment.
    shm = shared_memory.SharedMemory(name=shm_name)
    view: Any = np.ndarray(data.shape, dtype=data.dtype, buffer=shm.buf)
    try:
        while True:
            command = requests.get()
            if command == "queue":
                replies.put(data)
            elif command == "shm":
                view[:] = data
                replies.put("ready")
            else:
                break
    finally:
        del view
        shm.close()
