"""One contender on one workload, in a fresh process (run by ``run.py``).

Usage (internal): ``python child.py '<json spec>'``. Starts the engine (Ray or Dask, on
this machine's cores), builds the contender's pipeline, iterates two epochs and prints
one JSON line: engine start-up, time to first batch (from the pipeline's construction,
the engine already up), items/s over the second epoch (the first absorbs worker
start-up), and what the contender reports about itself.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
LOAD = os.path.join(os.path.dirname(HERE), "load")
for path in (HERE, LOAD):
    if path not in sys.path:
        sys.path.insert(0, path)

import workloads  # noqa: E402  (benchmarks/load: the same items and functions as the Load benchmark)

EPOCHS = 2


# --------------------------------------------------------------------------- Ray Data's per-batch functions
class MapBatch:
    """What Ray Data's map_batches runs: the workload function on each row, stacked.

    As a class it runs on an actor pool (built once per actor); an instance is the
    plain-task form.
    """

    def __init__(self, workload: str = "") -> None:
        self.fn = workloads.WORKLOADS[workload].fn if workload else None

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        return {"x": np.stack([self.fn(x) for x in batch["item"]])}  # type: ignore[misc]


def _ray_data_batches(w: Any, items: list[Any], actors: bool, workers: int) -> Iterator[Any]:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    for _ in range(EPOCHS):  # a training loop iterates the dataset once per epoch
        ds = ray.data.from_items([{"item": x} for x in items])
        if actors:
            ds = ds.map_batches(MapBatch, fn_constructor_kwargs={"workload": w.name}, batch_size=w.batch_size,
                                concurrency=workers, num_cpus=1)
        else:
            ds = ds.map_batches(MapBatch(w.name), batch_size=w.batch_size, num_cpus=1)
        for batch in ds.iter_batches(batch_size=w.batch_size, batch_format="numpy"):
            yield batch["x"]


def build(contender: str, w: Any, items: list[Any], workers: int, address: str | None) -> Iterable[Any]:
    if contender.startswith("raydata"):
        return _ray_data_batches(w, items, contender == "raydata-actors", workers)
    import weft.data as wd

    backend = {"weft-ray": "ray", "weft-dask": "dask", "weft-process": "process"}[contender]
    options = {"address": address} if address else None
    return (wd.from_iterable(items).map(w.fn, workers=workers, backend=backend, backend_options=options)
            .batch(w.batch_size).prefetch(2).epochs(EPOCHS))


def main() -> int:
    spec = json.loads(sys.argv[1])
    w = workloads.WORKLOADS[spec["workload"]]
    items = workloads.items_for(w.name, int(spec["items"]), root=__import__("pathlib").Path(spec["data"]))
    workers = int(spec["workers"])
    contender = spec["contender"]
    started = time.perf_counter()
    address = None
    cluster: Any = None
    if contender.startswith(("raydata", "weft-ray")):
        import ray

        ray.init(num_cpus=workers, include_dashboard=False, logging_level="ERROR")
    elif contender == "weft-dask":
        import logging

        from distributed import LocalCluster

        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               scheduler_kwargs={"dashboard_address": ":0"}, silence_logs=logging.ERROR)
        address = cluster.scheduler_address
    engine_up = time.perf_counter()
    batches = build(contender, w, items, workers, address)
    first = epoch_end = None
    seen = 0
    for batch in batches:
        if first is None:
            first = time.perf_counter()
        seen += len(batch)
        if epoch_end is None and seen >= len(items):
            epoch_end = time.perf_counter()
    end = time.perf_counter()
    stats = ""
    if hasattr(batches, "statistics"):
        stats = str(batches.statistics())
        batches.close()
    if cluster is not None:
        cluster.close()
    assert seen == EPOCHS * len(items), (seen, len(items))
    assert first is not None and epoch_end is not None
    print(json.dumps({
        "engine_start_seconds": engine_up - started,
        "first_batch_seconds": first - engine_up,
        "items_per_second": len(items) / (end - epoch_end),
        "first_epoch_seconds": epoch_end - engine_up,
        "statistics": stats,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
