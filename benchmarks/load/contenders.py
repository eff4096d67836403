"""How each contender loads a workload: one builder per contender, each its documented best.

A builder gets the workload, the items, the number of epochs and its options, and returns an
iterable over the batches of all epochs (one pipeline object reused across epochs, the way a
training loop uses it) plus a function returning facts to report afterwards (e.g. the
backend weft chose). Peer libraries are imported inside the builders: this module is loaded
in every peer's own environment, where the others are absent.

Sources of the configurations (read from each project's documentation):

- torch ``DataLoader``: map-style dataset, ``num_workers`` = usable cores,
  ``persistent_workers=True``, ``prefetch_factor`` tuned, default collate (tensors travel
  through shared memory), fork start method (the Linux default).
- SPDL (``spdl.pipeline.PipelineBuilder``): "MT" (thread pool; the docs' choice when the
  stage releases the GIL, for I/O and on free-threaded builds) and "MP" (the docs'
  "multi-processing (combined)" pattern: aggregate first, then a process pool runs
  map-and-collate per batch, as DataLoader does).
- Grain (``grain.MapDataset`` -> ``to_iter_dataset(ReadOptions)`` -> ``mp_prefetch``): worker
  processes for CPU-bound work (mp_prefetch, shared-memory output), reader threads for I/O.
- ``torchdata.nodes``: the docs' DataLoader equivalent: SamplerWrapper -> Batcher ->
  ParallelMapper(map-and-collate, method="process" | "thread") -> Prefetcher -> Loader.
- weft (``weft.data``): ``from_iterable(items).map(fn, workers=..., backend="auto")
  .batch(n).prefetch(k)``, iterated over ``epochs(n)``.
- thread pool (a baseline, not a library): what users write by hand, a
  ``concurrent.futures.ThreadPoolExecutor`` running map-and-collate per batch, a bounded
  number of batches ahead. On a free-threaded build it is the ceiling of threads for the
  workload: no pipeline in between.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from workloads import Workload, collate

Builder = Callable[[Workload, list[Any], int, dict[str, Any]], tuple[Iterable[Any], Callable[[], dict[str, Any]]]]


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _no_info() -> dict[str, Any]:
    return {}


# --------------------------------------------------------------------------- helpers shared by peers
class MapAndCollate:
    """Map a batch of items with the workload function, then collate (picklable)."""

    def __init__(self, fn: Callable[[Any], Any], collate_fn: Callable[[list[Any]], Any]) -> None:
        self.fn = fn
        self.collate_fn = collate_fn

    def __call__(self, batch: Sequence[Any]) -> Any:
        return self.collate_fn([self.fn(x) for x in batch])


class ListDataset:
    """A map-style dataset: ``dataset[i] = fn(items[i])``."""

    def __init__(self, items: list[Any], fn: Callable[[Any], Any]) -> None:
        self.items = items
        self.fn = fn

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        return self.fn(self.items[index])


def _epochs_of(items: list[Any], epochs: int) -> Iterator[Any]:
    for _ in range(epochs):
        yield from items


def _batches_of(items: list[Any], epochs: int, size: int) -> Iterator[list[Any]]:
    for _ in range(epochs):
        for start in range(0, len(items), size):
            yield items[start:start + size]


# --------------------------------------------------------------------------- serial
def build_serial(w: Workload, items: list[Any], epochs: int, opts: dict[str, Any]):  # type: ignore[no-untyped-def]
    fn = w.fn

    def run() -> Iterator[Any]:
        for chunk in _batches_of(items, epochs, w.batch_size):
            yield collate([fn(x) for x in chunk])

    return run(), _no_info


# --------------------------------------------------------------------------- thread pool
def build_threads(w: Workload, items: list[Any], epochs: int, opts: dict[str, Any]):  # type: ignore[no-untyped-def]
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    workers = int(opts.get("workers", usable_cores()))
    ahead = int(opts.get("ahead", 2 * workers))
    task = MapAndCollate(w.fn, collate)

    def run() -> Iterator[Any]:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: deque[Future[Any]] = deque()
            for chunk in _batches_of(items, epochs, w.batch_size):
                pending.append(pool.submit(task, chunk))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def info() -> dict[str, Any]:
        return {"config": f"ThreadPoolExecutor({workers}): map-and-collate per batch, {ahead} batches ahead"}

    return run(), info


# --------------------------------------------------------------------------- weft
def build_weft(w: Workload, items: list[Any], epochs: int, opts: dict[str, Any]):  # type: ignore[no-untyped-def]
    import weft.data as wd

    workers = opts.get("workers", usable_cores())
    backend = str(opts.get("backend", "auto"))
    map_kwargs: dict[str, Any] = {"workers": workers if workers == "auto" else int(workers), "backend": backend}
    if "ordered" in opts:
        map_kwargs["ordered"] = bool(opts["ordered"])
    pipe = wd.from_iterable(items).map(w.fn, **map_kwargs).batch(w.batch_size)
    if opts.get("prefetch", 2):
        pipe = pipe.prefetch(int(opts.get("prefetch", 2)))
    stream = pipe.epochs(epochs) if epochs > 1 else pipe

    def info() -> dict[str, Any]:
        out: dict[str, Any] = {"config": f"from_iterable(items).map(fn, {', '.join(f'{k}={v!r}' for k, v in map_kwargs.items())})"
                                         f".batch({w.batch_size})" + (f".prefetch({opts.get('prefetch', 2)})" if opts.get("prefetch", 2) else "")
                                         + f".epochs({epochs})"}
        try:
            stats = stream.statistics()
            out["verdict"] = str(stats.verdict)
            out["backends"] = [{"stage": s.name, "backend": s.backend, "workers": s.workers, "reason": s.reason,
                                "workers_reason": getattr(s, "workers_reason", "")}
                               for s in stats.stages if s.kind == "map"]
            out["stats"] = str(stats)
        except Exception as exc:  # the benchmark must still report throughput
            out["stats_error"] = repr(exc)
        return out

    return stream, info


# --------------------------------------------------------------------------- torch DataLoader
def build_torch(w: Workload, items: list[Any], epochs: int, opts: dict[str, Any]):  # type: ignore[no-untyped-def]
    import torch
    from torch.utils.data import DataLoader

    torch.set_num_threads(1)  # the main process only collects batches
    workers = int(opts.get("workers", usable_cores()))
    loader = DataLoader(ListDataset(items, w.fn), batch_size=w.batch_size, shuffle=False,
                        num_workers=workers, persistent_workers=workers > 0,
                        prefetch_factor=int(opts.get("prefetch_factor", 4)) if workers > 0 else None,
                        pin_memory=False)

    def run() -> Iterator[Any]:
        for _ in range(epochs):
            yield from loader

    def info() -> dict[str, Any]:
        return {"config": f"DataLoader(num_workers={workers}, persistent_workers=True, "
                          f"prefetch_factor={opts.get('prefetch_factor', 4)})"}

    return run(), info


# --------------------------------------------------------------------------- torchdata.nodes
def build_torchdata(w: Workload, items: list[Any], epochs: int, opts: dict[str, Any]):  # type: ignore[no-untyped-def]
    import torchdata.nodes as tn
    from torch.utils.data import SequentialSampler, default_collate

    workers = int(opts.get("workers", usable_cores()))
    method = str(opts.get("method", "process"))
    if method == "thread":
        # the getting-started layout: map items on threads, then batch and collate
        node: Any = tn.IterableWrapper(items)
        node = tn.ParallelMapper(node, map_fn=w.fn, num_workers=workers, method="thread", in_order=True)
        node = tn.Batcher(node, batch_size=w.batch_size, drop_last=False)
        node = tn.Mapper(node, default_collate)
        layout = f"IterableWrapper -> ParallelMapper(fn, num_workers={workers}, method='thread') -> Batcher -> collate"
    else:
        # the DataLoader-equivalent layout of the migration guide: batch indices, map-and-collate in processes
        node = tn.SamplerWrapper(SequentialSampler(range(len(items))))
        node = tn.Batcher(node, batch_size=w.batch_size, drop_last=False)
        node = tn.ParallelMapper(node, map_fn=MapAndCollate(_Indexed(items, w.fn), default_collate),
                                 num_workers=workers, method="process", in_order=True)
        layout = f"SamplerWrapper -> Batcher -> ParallelMapper(map-and-collate, num_workers={workers}, method='process')"
    prefetch = int(opts.get("prefetch_factor", 2 * min(workers, usable_cores())))
    node = tn.Prefetcher(node, prefetch_factor=prefetch)
    layout += f" -> Prefetcher({prefetch})"
    loader = tn.Loader(node)

    def run() -> Iterator[Any]:
        for _ in range(epochs):
            yield from loader

    def info() -> dict[str, Any]:
        return {"config": layout}

    return run(), info


class _Indexed:
    """index -> fn(items[index]) (what a map-style dataset's __getitem__ does)."""

    def __init__(self, items: list[Any], fn: Callable[[Any], Any]) -> None:
        self.items = items
        self.fn = fn

    def __call__(self, index: int) -> Any:
        return self.fn(self.items[index])


# --------------------------------------------------------------------------- SPDL
def build_spdl(w: Workload, items: list[Any], epochs: int, opts: dict[str, Any]):  # type: ignore[no-untyped-def]
    from spdl.pipeline import PipelineBuilder

    mode = str(opts.get("mode", "mt"))
    cores = usable_cores()
    if mode == "mt":
        threads = int(opts.get("threads", cores))
        pipeline = (
            PipelineBuilder()
            .add_source(_epochs_of(items, epochs))
            .pipe(w.fn, concurrency=threads)
            .aggregate(w.batch_size)
            .pipe(collate)
            .add_sink(int(opts.get("buffer", 3)))
            .build(num_threads=threads)
        )
        config = f"MT: pipe(fn, concurrency={threads}).aggregate({w.batch_size}), build(num_threads={threads})"
        executor = None
    else:
        from concurrent.futures import ProcessPoolExecutor

        workers = int(opts.get("workers", cores))
        executor = ProcessPoolExecutor(max_workers=workers)
        pipeline = (
            PipelineBuilder()
            .add_source(_batches_of(items, epochs, w.batch_size))
            .pipe(MapAndCollate(w.fn, collate), executor=executor, concurrency=workers)
            .add_sink(int(opts.get("buffer", 3)))
            .build(num_threads=workers)
        )
        config = f"MP: aggregate({w.batch_size}) then map-and-collate on ProcessPoolExecutor({workers})"

    def run() -> Iterator[Any]:
        with pipeline.auto_stop():
            yield from pipeline
        if executor is not None:
            executor.shutdown()

    def info() -> dict[str, Any]:
        return {"config": config}

    return run(), info


# --------------------------------------------------------------------------- Grain
def build_grain(w: Workload, items: list[Any], epochs: int, opts: dict[str, Any]):  # type: ignore[no-untyped-def]
    import grain

    workers = int(opts.get("workers", usable_cores()))
    threads = int(opts.get("threads", 16))
    buffer = int(opts.get("buffer", 500))
    ds: Any = grain.MapDataset.source(items).repeat(epochs).map(w.fn)
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=buffer))
    ds = ds.batch(w.batch_size, batch_fn=collate)
    if workers > 0:
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    config = (f"MapDataset.map -> to_iter_dataset(ReadOptions(num_threads={threads}, "
              f"prefetch_buffer_size={buffer})) -> batch" + (f" -> mp_prefetch(num_workers={workers})" if workers else ""))

    def run() -> Iterator[Any]:
        it = iter(ds)
        try:
            yield from it
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def info() -> dict[str, Any]:
        return {"config": config}

    return run(), info


def versions(contender: str) -> dict[str, str]:
    """Versions of the libraries a contender runs on."""
    from importlib import metadata

    names = {"weft": ["weft"], "torch": ["torch"], "torchdata": ["torchdata", "torch"], "spdl": ["spdl"],
             "grain": ["grain"], "serial": [], "threads": []}[contender] + ["numpy", "pillow"]
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "?"
    return out


BUILDERS: dict[str, Builder] = {
    "serial": build_serial,
    "threads": build_threads,
    "weft": build_weft,
    "torch": build_torch,
    "torchdata": build_torchdata,
    "spdl": build_spdl,
    "grain": build_grain,
}
