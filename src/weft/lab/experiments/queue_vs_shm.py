"""Moving a 32 MB array between processes: pickled through multiprocessing.Queue vs shared
memory (the producer writes into a shared block and sends a short message)."""

from __future__ import annotations

import multiprocessing
from multiprocessing import shared_memory
from typing import Any

from weft.lab._claim import Claim
from weft.lab._context import Context
from weft.lab.experiments._work import array_server, import_numpy

CLAIM = Claim(
    name="queue_vs_shm", group="parallelism",
    text="Handing a 32 MB array to another process through shared memory is at least 2x faster "
         "than pickling it through multiprocessing.Queue.",
    source="the multiprocessing.shared_memory docs and 'zero-copy IPC' articles",
    baseline="queue", candidate="shared_memory", threshold=2.0)

#: Failure bounds only: a reply takes milliseconds, and the child stops as soon as it reads "stop".
_REPLY_TIMEOUT_SECONDS = 60.0
_STOP_TIMEOUT_SECONDS = 30.0


def measure(ctx: Context) -> None:
    np = import_numpy(ctx)
    megabytes = ctx.pick(full=32, quick=32, smoke=4)
    n = megabytes * 1024 * 1024 // 8
    ctx.param("array_megabytes", megabytes)
    mp = multiprocessing.get_context("spawn")
    requests, replies = mp.Queue(), mp.Queue()
    shm = shared_memory.SharedMemory(create=True, size=n * 8)
    # In a list so that the finally block can drop it before closing the segment.
    views: list[Any] = [np.ndarray((n,), dtype=np.float64, buffer=shm.buf)]
    child = mp.Process(target=array_server, args=(requests, replies, n, shm.name), daemon=True)
    child.start()
    try:
        def by_queue() -> None:
            requests.put("queue")
            received: Any = replies.get(timeout=_REPLY_TIMEOUT_SECONDS)
            assert received[-1] == n - 1

        def by_shm() -> None:
            requests.put("shm")
            replies.get(timeout=_REPLY_TIMEOUT_SECONDS)
            assert views[0][-1] == n - 1

        ctx.time({"queue": by_queue, "shared_memory": by_shm})
        ctx.note("shared_memory includes the producer's copy into the shared block; the "
                 "consumer reads it in place")
    finally:
        requests.put("stop")
        child.join(timeout=_STOP_TIMEOUT_SECONDS)
        if child.is_alive():
            child.kill()
            child.join()
        views.clear()
        shm.close()
        shm.unlink()
        requests.close()
        replies.close()
