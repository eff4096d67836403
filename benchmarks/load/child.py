"""One measured configuration, run in its own fresh process by ``run.py``.

Usage (internal): ``python child.py '<json spec>'``. Builds the contender's pipeline, runs
``warmup + epochs + cooldown`` epochs over the items through one pipeline object and prints
one JSON line with the timings. The measured window spans the middle epochs only: the
warm-up epoch absorbs worker start-up and calibration, and the cool-down epoch keeps the
producers busy until the window closes, so items prefetched ahead are never counted as
produced for free (a deep prefetch buffer drains at the very end, outside the window). It writes ``start`` and
``end`` to the file descriptor named by ``WEFT_BENCH_MARK_FD`` when the measured window
opens and closes, so the parent attributes the process tree's CPU time to that window.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def _mark(fd: int | None, what: str) -> None:
    if fd is not None:
        os.write(fd, f"{what} {time.monotonic():.6f}\n".encode())


def _batch_len(batch: Any) -> int:
    shape = getattr(batch, "shape", None)
    if shape is not None:
        return int(shape[0])
    return len(batch)


def main() -> int:
    spec = json.loads(sys.argv[1])
    fd_text = os.environ.get("WEFT_BENCH_MARK_FD")
    mark_fd = int(fd_text) if fd_text else None
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import contenders

    import workloads

    w = workloads.WORKLOADS[spec["workload"]]
    items = workloads.items_for(w.name, int(spec["items"]))
    warmup = int(spec.get("warmup", 1))
    measured = int(spec.get("epochs", 1))
    cooldown = int(spec.get("cooldown", 1))
    epochs = warmup + measured + cooldown
    builder = contenders.BUILDERS[spec["contender"]]

    per_epoch = len(items)
    open_at, close_at = warmup * per_epoch, (warmup + measured) * per_epoch
    t_start = time.perf_counter()
    batches, info = builder(w, items, epochs, dict(spec.get("options", {})))
    seen = 0
    first_batch = None
    window_start = window_end = None
    window_open_items = window_close_items = 0
    shape = dtype = None
    if open_at == 0:
        window_start = t_start
        _mark(mark_fd, "start")
    for batch in batches:
        if first_batch is None:
            first_batch = time.perf_counter() - t_start
            shape = [int(s) for s in getattr(batch, "shape", ())]
            dtype = str(getattr(batch, "dtype", type(batch).__name__))
        seen += _batch_len(batch)
        del batch
        if window_start is None and seen >= open_at:
            window_start = time.perf_counter()
            window_open_items = seen
            _mark(mark_fd, "start")
        if window_end is None and seen >= close_at:
            window_end = time.perf_counter()
            window_close_items = seen
            _mark(mark_fd, "end")
    t_end = time.perf_counter()
    if seen != per_epoch * epochs:
        print("WEFT-BENCH-RESULT " + json.dumps({"error": f"expected {per_epoch * epochs} items, got {seen}"}))
        return 1
    assert window_start is not None and window_end is not None
    result = {
        "items_total": seen,
        "time_to_first_batch_s": first_batch,
        "warmup_s": window_start - t_start,
        "window_s": window_end - window_start,
        "window_items": window_close_items - window_open_items,
        "epochs": {"warmup": warmup, "measured": measured, "cooldown": cooldown},
        "total_s": t_end - t_start,
        "batch_shape": shape,
        "batch_dtype": dtype,
        "python": sys.version.split()[0],
        "gil_enabled": bool(getattr(sys, "_is_gil_enabled", lambda: True)()),
        "info": info(),
        "versions": contenders.versions(spec["contender"]),
    }
    print("WEFT-BENCH-RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
