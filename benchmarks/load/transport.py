"""Process transport: MB/s of NumPy results received by the owner, fresh segments vs pools.

Two process workers run chunks of a map stage (``weft.data._work.run_chunk``, which packs a
chunk of equal arrays into one) whose items cost nothing but making the array, so the
transport is what is timed. The owner keeps two chunks per worker in flight, as the map
stage does, and reads one byte of every page of each result (a consumer faults the pages
in). Workers are started and warmed before timing. ``fresh`` turns the result pools off
(``result_pool_bytes=0``: one new segment per array, today's path before the pools);
``pool`` uses the default pools. The two alternate, round after round; the median of the
rounds is reported.

    flock /work/.locks/test.lock python benchmarks/load/transport.py [--rounds 3] [--mb 200]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from typing import Any

import numpy as np

import weft.exec
from weft.data._work import run_chunk

#: result size -> items per chunk (about 1 MB of results a chunk, at least one item)
SIZES = {80 * 1024: 12, 512 * 1024: 2, 4 * 1024 * 1024: 1}
MODES = {"fresh": 0, "pool": None}
PAGE = 4096


def make(nbytes: int) -> np.ndarray:
    return np.ones(nbytes, dtype=np.uint8)


def one_pass(ex: Any, nbytes: int, per_chunk: int, total: int) -> float:
    """Seconds to receive ``total`` bytes of ``nbytes`` results in chunks of ``per_chunk``."""
    chunks = max(1, total // (nbytes * per_chunk))
    values = [nbytes] * per_chunk
    window: collections.deque[Any] = collections.deque()
    start = time.perf_counter()
    sent = 0
    touched = 0
    while sent < chunks or window:
        while sent < chunks and len(window) < 2 * ex.workers:
            window.append(ex.submit(run_chunk, make, values, 0, True))
            sent += 1
        results = window.popleft().result().results
        for r in results:
            touched += int(r.reshape(-1).view(np.uint8)[::PAGE].sum())
        del results, r
    seconds = time.perf_counter() - start
    assert touched == chunks * per_chunk * (nbytes // PAGE)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mb", type=int, default=200, help="MB received per size, mode and round")
    args = parser.parse_args()
    total = args.mb * 1024 * 1024
    executors = {mode: weft.exec.create("process", workers=2, result_pool_bytes=size)
                 for mode, size in MODES.items()}
    try:
        for ex in executors.values():  # start and warm up: spawn and first faults are not timed
            for nbytes, per_chunk in SIZES.items():
                one_pass(ex, nbytes, per_chunk, 8 * nbytes * per_chunk)
        rates: dict[tuple[int, str], list[float]] = collections.defaultdict(list)
        for _ in range(args.rounds):
            for nbytes, per_chunk in SIZES.items():
                for mode, ex in executors.items():
                    seconds = one_pass(ex, nbytes, per_chunk, total)
                    rates[nbytes, mode].append(total / seconds / 1e6)
    finally:
        for ex in executors.values():
            ex.close()
    print(f"python {sys.version.split()[0]}, 2 process workers, medians of {args.rounds} rounds, "
          f"{args.mb} MB per measurement")
    print("| result | fresh segments MB/s | pool MB/s | pool / fresh |")
    print("|---|--:|--:|--:|")
    for nbytes in SIZES:
        fresh = statistics.median(rates[nbytes, "fresh"])
        pool = statistics.median(rates[nbytes, "pool"])
        label = f"{nbytes // 1024} KB" if nbytes < 1024 * 1024 else f"{nbytes // (1024 * 1024)} MB"
        print(f"| {label} | {fresh:,.0f} | {pool:,.0f} | {pool / fresh:.2f}x |")


if __name__ == "__main__":
    main()
