"""Module-level functions for weft.data tests: process workers import them by name."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np


class Pair(NamedTuple):
    """A record type: batches of these are namedtuples of batches."""

    x: Any
    y: Any


def inc(x: int) -> int:
    return x + 1


def double(x: int) -> int:
    return 2 * x


def not_div3(x: int) -> bool:
    return int(x) % 3 != 0


def fail_on_7(x: int) -> int:
    if x == 7:
        raise ValueError(f"seven is not allowed (got {x})")
    return x


def jitter(x: int) -> int:
    """Finishes out of order: later items are sometimes faster."""
    time.sleep(0.0005 * ((x * 7) % 4))
    return x


def flaky(arg: tuple[str, int]) -> int:
    """Fails the first two calls for each item (counted in files), then succeeds."""
    directory, x = arg
    marker = Path(directory) / f"{x}.count"
    n = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(n + 1))
    if n < 2:
        raise ConnectionError(f"transient failure {n + 1} for item {x}")
    return x


def megabyte(i: int) -> np.ndarray:
    """A fresh 1 MB item; only one page is touched, so a leak would still grow RSS by 4 KB per item."""
    a = np.empty(1 << 20, dtype=np.uint8)
    a[0] = i & 0xFF
    return a


def pid_of(_: object) -> int:
    return os.getpid()


def row_of(i: int) -> np.ndarray:
    """A small int32 row whose values name the item (results a worker packs into one array)."""
    return np.full(8, i, dtype=np.int32)


def ragged_row(i: int) -> np.ndarray:
    """Rows of two different lengths: a chunk of these cannot be packed."""
    return np.full(1 + i % 2, i, dtype=np.int64)


def worker_id(_: object) -> tuple[int, int]:
    """Which process and thread ran the call."""
    import threading

    return os.getpid(), threading.get_ident()


def batch_sum(batch: np.ndarray) -> int:
    return int(np.asarray(batch).sum())


def ragged_at_500(i: int) -> np.ndarray:
    """Rows of length 4 before item 500 and 5 from it on."""
    return np.full(4 if i < 500 else 5, i, dtype=np.int32)


# -- results of many nested shapes, for packing (one array per field) ----------------------
def record(i: int) -> dict[str, Any]:
    """The usual ML item: an image, a label, a name and a float weight."""
    return {"image": np.full((3, 4), i, dtype=np.float32), "label": i % 10, "name": f"item{i}", "weight": i / 2}


def image_label(i: int) -> tuple[np.ndarray, int]:
    return np.full(5, i, dtype=np.int16), i


def nested_record(i: int) -> dict[str, Any]:
    """Containers inside containers: a dict of a namedtuple and a list."""
    return {"pair": Pair(np.full(2, i, dtype=np.int64), np.float32(i)),
            "parts": [np.full((2, 2), i, dtype=np.uint8), bool(i % 2)]}


def mixed_dtype_record(i: int) -> dict[str, Any]:
    """The image's dtype changes every 7 items: packed chunks of one dtype, batches promote."""
    return {"image": np.full(3, i, dtype=np.float32 if (i // 7) % 2 else np.int32), "label": i}


def ragged_record(i: int) -> dict[str, Any]:
    """A ragged field next to a regular one: the ragged one cannot stack."""
    return {"tokens": np.arange(1 + i % 3, dtype=np.int32), "mask": np.ones(4, dtype=bool)}


def record_failing_on_7s(i: int) -> dict[str, Any]:
    if i % 10 == 7:
        raise ValueError(f"seven at {i}")
    return record(i)
