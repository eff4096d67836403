"""100 waits of 10 ms: asyncio vs threads vs one after another."""

from __future__ import annotations

import asyncio
import threading
import time

from weft.lab._claim import Claim
from weft.lab._context import Context

CLAIM = Claim(
    name="async_waits", group="parallelism",
    text="For many concurrent waits, asyncio beats threads (by 10% or more).",
    source="asyncio tutorials ('asyncio is faster and lighter than threads for I/O')",
    baseline="threads", candidate="asyncio", threshold=1.1)

WAIT = 0.010


def serial(n: int) -> None:
    for _ in range(n):
        time.sleep(WAIT)


def threads(n: int) -> None:
    pool = [threading.Thread(target=time.sleep, args=(WAIT,)) for _ in range(n)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


async def _gather(n: int) -> None:
    await asyncio.gather(*(asyncio.sleep(WAIT) for _ in range(n)))


def with_asyncio(n: int) -> None:
    asyncio.run(_gather(n))


def measure(ctx: Context) -> None:
    n = ctx.pick(full=100, quick=100, smoke=20)
    ctx.param("waits", n)
    ctx.param("wait_ms", WAIT * 1000)
    ctx.time({"threads": lambda: threads(n), "asyncio": lambda: with_asyncio(n)})
    # Serial takes n x 10 ms by construction: a few runs show it.
    ctx.time({"serial": lambda: serial(n)}, repeats=ctx.pick(full=5, quick=1, smoke=1), warmups=0)
