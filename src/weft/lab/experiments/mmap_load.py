"""Resident memory after ``np.load`` of a .npy file, full vs ``mmap_mode="r"``, reading 1%."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from weft.lab._claim import Claim
from weft.lab._context import Context
from weft.lab.experiments._work import import_numpy

CLAIM = Claim(
    name="mmap_load", group="memory",
    text="`np.load(path, mmap_mode='r')` keeps memory low: reading 1% of a large array costs "
         "at least 10x less RSS than loading it whole.",
    source="the numpy.load / numpy.memmap docs and 'datasets larger than RAM' articles",
    baseline="full_load", candidate="mmap", threshold=10.0, metric="bytes")

_STATM = "/proc/self/statm"


def rss() -> int:
    with open(_STATM) as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(ctx: Context) -> None:
    np = import_numpy(ctx)
    if not os.path.exists(_STATM):
        ctx.skip(f"needs {_STATM} (Linux) to read this process's resident memory")
    # > 32 MB so that glibc always serves it with mmap and gives it back on free.
    megabytes = ctx.pick(full=256, quick=64, smoke=40)
    rows = megabytes * 1024 * 1024 // (8 * 128)
    ctx.param("file_megabytes", megabytes)
    page = os.sysconf("SC_PAGE_SIZE")
    with tempfile.TemporaryDirectory(prefix="weft-lab-") as tmp:
        path = os.path.join(tmp, "array.npy")
        np.save(path, np.random.default_rng(0).random((rows, 128)))

        def delta(mmap_mode: str | None) -> int:
            before = rss()
            arr: Any = np.load(path, mmap_mode=mmap_mode)
            float(arr[: rows // 100].sum())  # read the first 1% of the rows
            grown = rss() - before
            del arr
            return max(grown, page)  # never below one page, so the ratio stays finite

        for _ in range(ctx.pick(full=5, quick=3, smoke=2)):
            ctx.record("full_load", [delta(None)], unit="bytes")
            ctx.record("mmap", [delta("r")], unit="bytes")
