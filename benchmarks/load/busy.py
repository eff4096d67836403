"""weft.data's thread pipelines beside CPU-bound processes: handoffs between threads.

A training loop or another job computing on every core leaves a data pipeline's threads
runnable but waiting for a core. On a free-threaded build (3.13t) a contended lock first
spins with ``sched_yield``, and every yield hands the core to the busy process for a
whole time slice: a handoff that blocks in ``threading.Condition`` (``queue.Queue``,
``Future.result``) then costs milliseconds. This measures items/s of cheap items (so
handoffs, not the function, set the pace) through a map, a batch and a prefetch, quiet
and beside ``--hogs`` busy processes, rounds interleaved.

    python benchmarks/load/busy.py [--hogs 2] [--items 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import weft.data as wd


def item(i: int) -> np.ndarray:
    return np.full(1000, i, np.float32)


PIPELINES: dict[str, Callable[[int], Any]] = {
    "map (2 threads)": lambda n: wd.from_range(n).map(item, workers=2, backend="thread"),
    "map + batch(8)": lambda n: wd.from_range(n).map(item, workers=2, backend="thread").batch(8, collate=list),
    "map + batch(8) + prefetch(4)": lambda n: (wd.from_range(n).map(item, workers=2, backend="thread")
                                               .batch(8, collate=list).prefetch(4)),
    "source + prefetch(4)": lambda n: wd.from_range(n).prefetch(4),
    "unordered map + batch(8)": lambda n: (wd.from_range(n).map(item, workers=2, backend="thread", ordered=False)
                                           .batch(8, collate=list)),
}


def rate(build: Callable[[int], Any], n: int) -> float:
    start = time.perf_counter()
    for _ in build(n):
        pass
    return n / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hogs", type=int, default=2, help="busy processes beside the pipeline (default 2)")
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    results: dict[tuple[str, bool], list[float]] = {}
    for _ in range(args.rounds):
        for busy in (False, True):
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs if busy else 0)]
            try:
                for name, build in PIPELINES.items():
                    results.setdefault((name, busy), []).append(rate(build, args.items))
            finally:
                for hog in hogs:
                    hog.kill()
                    hog.wait()
    print(f"Python {sys.version.split()[0]} ({'GIL' if gil else 'free-threaded, GIL off'}), {args.items} items, "
          f"median of {args.rounds} rounds, items/s")
    print(f"| pipeline | quiet | beside {args.hogs} busy processes | busy / quiet |")
    print("|---|---:|---:|---:|")
    for name in PIPELINES:
        quiet, busy = statistics.median(results[(name, False)]), statistics.median(results[(name, True)])
        print(f"| {name} | {quiet:,.0f} | {busy:,.0f} | {busy / quiet:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
