"""Pipeline: the chain a user builds.

A :class:`Pipeline` is an immutable description: every chaining method returns a new
one, holding one more stage specification (:mod:`weft.data._build`). Iterating it
starts a *run* (:mod:`weft.data._run`: the running nodes, their executors and
threads); the run's final state and statistics stay readable from the pipeline.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from weft import runtime
from weft._checks import check_int, check_one_of
from weft.data._build import (
    FOLDABLE_SOURCES,
    BatchSpec,
    FilterSpec,
    IterableSourceSpec,
    MapSpec,
    PrefetchSpec,
    RandomSourceSpec,
    ShardSpec,
    ShuffleSpec,
    SkipSpec,
    Spec,
    TakeSpec,
    UnbatchSpec,
    build_chain,
    chain_length,
    check_workers,
)
from weft.data._collate import pad_collate
from weft.data._run import STATE_VERSION, Run, WorkerPark
from weft.data._sources import ShardOrder, ShuffleOrder, Transform
from weft.data._stats import PipelineStatistics
from weft.errors import ConfigError, ResumeError
from weft.exec._policy import validate_backend

__all__ = ["Pipeline"]

_FOLDS_PAST = (MapSpec, FilterSpec)  # stages a shuffle/shard on a random-access source commutes with
_ON_ERROR = ("raise", "skip", "retry")


def _fn_name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__name__", None) or type(fn).__name__)


def _backend_options(backend: str, resources: Mapping[str, float] | None,
                     backend_options: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """The keyword arguments a map stage passes to ``weft.exec.create``, checked where they can be."""
    if backend_options is None:
        backend_options = {}
    if not isinstance(backend_options, Mapping) or not all(isinstance(k, str) for k in backend_options):
        raise ConfigError(f"backend_options must be a mapping of keyword arguments of weft.exec.create, "
                          f"got {backend_options!r}")
    reserved = {"workers", "reason", "resources"} & set(backend_options)
    if reserved:
        raise ConfigError(f"backend_options cannot set {sorted(reserved)}: pass workers= and resources= to map")
    options = dict(backend_options)
    if resources is not None:
        if backend != "ray":
            raise ConfigError(f"resources={dict(resources)!r} is for backend='ray' (what one call needs on the "
                              f"cluster); backend {backend!r} takes none")
        options["resources"] = dict(resources)
    if options and backend in ("serial", "auto"):
        raise ConfigError(f"backend_options={dict(backend_options)!r} need a named backend such as 'ray' or "
                          f"'dask'; backend {backend!r} takes none")
    return tuple(sorted(options.items()))


class Pipeline:
    """A chain of stages over a source; iterate it to get items (or batches).

    Build one with ``weft.data.from_*`` and chain stages; each method returns a new
    pipeline. See the README section "Load" for the resume and statistics story.
    """

    def __init__(self, specs: tuple[Spec, ...], *, classes: Sequence[str] | None = None) -> None:
        self._specs = specs
        self._classes = None if classes is None else list(classes)
        self._epochs: int | None = 1
        self._epoch = 0
        self._loaded: dict[str, Any] | None = None
        self._run: weakref.ref[Run] | None = None
        self._last_state: dict[str, Any] | None = None
        self._last_statistics: PipelineStatistics | None = None
        self._persistent = False
        # map stages' workers between passes (persistent_workers only)
        self._park = WorkerPark()
        self._release = weakref.finalize(self, self._park.close)

    # -- building ----------------------------------------------------------------------
    def _then(self, spec: Spec) -> Pipeline:
        return self._derive(self._specs + (spec,))

    def _derive(self, specs: tuple[Spec, ...]) -> Pipeline:
        out = Pipeline(specs, classes=self._classes)
        out._epochs, out._epoch = self._epochs, self._epoch
        out._persistent = self._persistent
        return out

    def _foldable(self) -> bool:
        return isinstance(self._specs[0], FOLDABLE_SOURCES) and all(isinstance(s, _FOLDS_PAST)
                                                                    for s in self._specs[1:])

    def _fold(self, transform: Transform, buffer: int = 1) -> Pipeline:
        source = self._specs[0]
        assert isinstance(source, FOLDABLE_SOURCES)
        return self._derive((source.fold(transform, buffer),) + self._specs[1:])

    @property
    def classes(self) -> list[str]:
        """Class names of a ``from_image_folder`` source (index = class index)."""
        if self._classes is None:
            raise AttributeError("this pipeline's source has no classes: only from_image_folder sets them")
        return list(self._classes)

    def map(self, fn: Callable[[Any], Any], *, workers: int | Literal["auto"] | None = None,
            backend: str = "auto", ordered: bool = True, max_in_flight: int | None = None,
            on_error: str = "raise", retries: int = 2, name: str | None = None,
            resources: Mapping[str, float] | None = None, backend_options: Mapping[str, Any] | None = None,
            max_workers: int | None = None) -> Pipeline:
        """Apply ``fn`` to every item on ``workers`` workers (default: usable cores).

        ``workers="auto"`` on threads (for work that waits: network, remote calls) starts
        at the usable cores and doubles the threads while the items/s delivered rises,
        settling where it levels off, at most ``max_workers`` (default 256) and
        ``max_in_flight``; it shrinks when the source cannot feed more.
        :meth:`statistics` says the count and why. On processes it is the usable cores.

        ``backend``: ``"auto"`` (threads when the GIL is off or ``fn`` releases it, as
        measured on the first items; processes otherwise), ``"thread"``, ``"process"``
        (``fn`` must be importable), ``"serial"`` (inline), ``"ray"`` or ``"dask"`` (a
        cluster: see the README section "Scale out") or the name of a backend added
        with ``weft.exec.register``. ``ordered=False`` hands results on as they complete.
        ``on_error``: ``"raise"`` (with the source index), ``"skip"`` (counted in
        :meth:`statistics`) or ``"retry"`` (``retries`` more tries, then raise).
        ``resources`` (``backend="ray"``): what one call needs, e.g. ``{"num_cpus": 1,
        "num_gpus": 0}``. ``backend_options``: further keyword arguments of
        ``weft.exec.create`` for the backend, e.g. ``{"address": "auto", "max_retries": 2,
        "timeout": 60.0}`` for a cluster.
        """
        if not callable(fn):
            raise ConfigError(f"map needs a callable, got {fn!r}")
        validate_backend(backend)
        check_one_of("on_error", on_error, _ON_ERROR)
        count, ceiling = check_workers(workers, max_workers)
        if count == 0:
            backend = "serial"
        options = _backend_options(backend, resources, backend_options)
        return self._then(MapSpec(fn=fn, workers=max(1, runtime.usable_cores() if count is None else count),
                                  backend=backend, ordered=bool(ordered),
                                  max_in_flight=check_int("max_in_flight", max_in_flight, none=True),
                                  on_error=on_error, retries=check_int("retries", retries, minimum=0),
                                  name=name or _fn_name(fn), options=options,
                                  auto_workers=count is None, max_workers=ceiling))

    def filter(self, pred: Callable[[Any], Any], *, name: str | None = None) -> Pipeline:
        """Keep the items for which ``pred(item)`` is true (runs inline)."""
        if not callable(pred):
            raise ConfigError(f"filter needs a callable, got {pred!r}")
        return self._then(FilterSpec(pred=pred, name=name or _fn_name(pred)))

    def shard(self, rank: int | str, world_size: int | None = None) -> Pipeline:
        """Keep this rank's share of the source (item ``i`` goes to rank ``i % world_size``).

        ``shard("auto")`` takes the rank and world size from ``torch.distributed`` (an
        initialised process group), Ray Train's context, or ``RANK``/``WORLD_SIZE``, in
        that order (none: rank 0 of 1), when it is called. Every rank builds the same
        pipeline, so the shares are disjoint and together hold every item once per epoch.
        """
        if rank == "auto":
            if world_size is not None:
                raise ConfigError(f"shard('auto') finds the world size itself: drop world_size={world_size!r}, "
                                  "or pass shard(rank, world_size)")
            from weft.data._shard import auto_placement

            rank, world_size, _ = auto_placement()
        if isinstance(rank, str) or world_size is None:
            raise ConfigError(f"shard takes (rank, world_size) or 'auto', got rank={rank!r}, "
                              f"world_size={world_size!r}")
        check_int("world_size", world_size)
        check_int("rank", rank, minimum=0, maximum=world_size - 1)
        if self._foldable():
            return self._fold(ShardOrder(rank, world_size))
        if isinstance(self._specs[0], FOLDABLE_SOURCES) and not isinstance(self._specs[0], RandomSourceSpec):
            raise ConfigError(f"shard a {self._specs[0].kind} source before anything but map and filter "
                              f"(here after {self._specs[-1].describe()}): it splits {self._specs[0].kind} units "
                              "between ranks, so put .shard() right after the source")
        if any(isinstance(s, (BatchSpec, UnbatchSpec)) for s in self._specs):
            raise ConfigError("shard before batch: shard splits source items, so put .shard() first")
        return self._then(ShardSpec(rank=rank, world_size=world_size))

    def shuffle(self, buffer: int = 1024, seed: int = 0) -> Pipeline:
        """A seeded shuffle, reshuffled every epoch.

        On a random-access source (with only map/filter in between) this is a full
        permutation of the source indices and ``buffer`` is not needed; on a stream it
        is a buffer shuffle over ``buffer`` items. On a Parquet or WebDataset source it
        is both: the row groups or shards are permuted, and a buffer shuffle of
        ``buffer`` items follows the source (its state keeps keys, not items).
        """
        check_int("buffer", buffer)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        if self._foldable():
            return self._fold(ShuffleOrder(seed), buffer)
        return self._then(ShuffleSpec(buffer=buffer, seed=seed))

    def batch(self, size: int, *, drop_last: bool = False,
              collate: Callable[[Sequence[Any]], Any] | None = None) -> Pipeline:
        """Group ``size`` items; ``collate`` (default: stack arrays and numbers per field)."""
        if collate is pad_collate:
            raise ConfigError("collate=pad_collate passes the factory itself: call it, collate=pad_collate() "
                              "(or pad_collate(pad_value=..., lengths=True))")
        if collate is not None and not callable(collate):
            raise ConfigError(f"collate must be a function of a list of items, got {collate!r}")
        return self._then(BatchSpec(size=check_int("size", size), drop_last=bool(drop_last), collate=collate))

    def unbatch(self) -> Pipeline:
        """Split batches back into items."""
        return self._then(UnbatchSpec())

    def prefetch(self, n: int = 2) -> Pipeline:
        """Run everything before this point in a background thread, ``n`` items ahead."""
        return self._then(PrefetchSpec(n=check_int("n", n)))

    def take(self, n: int) -> Pipeline:
        """End each epoch after ``n`` items."""
        return self._then(TakeSpec(n=check_int("n", n, minimum=0)))

    def skip(self, n: int) -> Pipeline:
        """Drop the first ``n`` items of each epoch."""
        return self._then(SkipSpec(n=check_int("n", n, minimum=0)))

    def epochs(self, n: int | None) -> Pipeline:
        """Iterate ``n`` epochs in one pass (``None``: forever), reshuffling each."""
        out = self._derive(self._specs)
        out._epochs = check_int("epochs", n, none=True)
        return out

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next pass starts at (seeds every shuffle)."""
        self._epoch = check_int("epoch", epoch, minimum=0)

    # -- running -----------------------------------------------------------------------
    def _live(self) -> Run | None:
        run = None if self._run is None else self._run()
        return None if run is None or run.closed else run

    def __iter__(self) -> Iterator[Any]:
        old = self._live()
        if old is not None:
            old.close()
        node = build_chain(self._specs)
        if self._persistent:
            self._park.lend(node)
        loaded, self._loaded = self._loaded, None
        self._last_state = None
        if loaded is None:
            end = None if self._epochs is None else self._epoch + self._epochs
            run = Run(node, epoch=self._epoch, end=end, state=None, finished=False, on_close=self._remember)
        else:
            try:
                internal = None if loaded["stages"] is None else node.load(loaded["stages"])
                run = Run(node, epoch=loaded["epoch"], end=loaded["end"], state=internal,
                          finished=bool(loaded["finished"]), on_close=self._remember)
            except BaseException:
                node.close()
                raise
        self._run = weakref.ref(run)
        return run

    def _inexact_resume(self) -> bool:
        """Whether an unordered map runs over batches an earlier unordered map composed."""
        mixed = batched_mixed = False
        for spec in self._specs:
            unordered = isinstance(spec, MapSpec) and spec.unordered
            if unordered and batched_mixed:
                return True
            if unordered:
                mixed = True
            elif isinstance(spec, BatchSpec) and mixed:
                batched_mixed = True
            elif isinstance(spec, UnbatchSpec):
                batched_mixed = False
        return False

    def persistent_workers(self, keep: bool = True) -> Pipeline:
        """Keep map workers (threads and processes) running between passes.

        ``for epoch in range(n): for batch in pipe: ...`` then starts workers once, as
        DataLoader's ``persistent_workers=True`` does. They stop at :meth:`close`, at the
        end of a ``with pipe:`` block, or when the pipeline is garbage-collected.
        """
        out = self._derive(self._specs)
        out._persistent = bool(keep)
        return out

    def _remember(self, state: dict[str, Any], statistics: PipelineStatistics) -> None:
        self._last_state, self._last_statistics = state, statistics

    def state_dict(self) -> dict[str, Any]:
        """Where the current (or last) pass stands: small, plain data.

        Loading it into the same pipeline yields exactly the items not yet yielded.
        """
        source = self._specs[0]
        if isinstance(source, IterableSourceSpec) and source.one_shot is not None:
            warnings.warn(f"this pipeline reads a one-shot iterator ({source.name}): its state can only go on "
                          "with that same iterator object in this process; after a restart, or with a new "
                          "iterator, load_state_dict fails. Pass a list or an object whose __iter__ starts "
                          "over to resume anywhere", RuntimeWarning, stacklevel=2)
        if self._inexact_resume():
            warnings.warn("this pipeline has an unordered map over batches that an earlier unordered map "
                          "filled: after load_state_dict the batches re-form differently and items can be "
                          "repeated or lost; make either map ordered=True for an exact resume",
                          RuntimeWarning, stacklevel=2)
        run = self._live()
        if run is not None:
            return run.state_dict()
        if self._loaded is not None:
            return dict(self._loaded)
        if self._last_state is not None:
            return dict(self._last_state)
        end = None if self._epochs is None else self._epoch + self._epochs
        return {"version": STATE_VERSION, "epoch": self._epoch, "end": end, "finished": False, "stages": None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state`` on the next iteration (closes a pass in progress)."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ResumeError(f"not a weft.data pipeline state (version {STATE_VERSION}): {state!r:.80}")
        missing = {"epoch", "end", "finished", "stages"} - set(state)
        if missing:
            raise ResumeError(f"pipeline state lacks {sorted(missing)}: load a dict made by state_dict()")
        node = build_chain(self._specs)
        try:
            if state["stages"] is not None:
                node.load(state["stages"])  # validate the shape now, not at the next iteration
        finally:
            node.close()
        old = self._live()
        if old is not None:
            old.close()
        self._loaded = dict(state)

    def statistics(self) -> PipelineStatistics:
        """Per-stage statistics of the current (or last) pass, with a bottleneck verdict."""
        run = self._live()
        if run is not None:
            return run.statistics()
        if self._last_statistics is not None:
            return self._last_statistics
        return PipelineStatistics(stages=(), consumer_wait_seconds=0.0, elapsed_seconds=0.0,
                                  verdict="not started: iterate the pipeline first")

    def stats(self) -> PipelineStatistics:
        """Deprecated alias of :meth:`statistics` (removed in the next release)."""
        warnings.warn("Pipeline.stats() is deprecated and will be removed in the next release: "
                      "use Pipeline.statistics()", DeprecationWarning, stacklevel=2)
        return self.statistics()

    def progress(self, *, total: int | None = None, description: str = "weft.data") -> Iterator[Any]:
        """Iterate with a rich progress bar (its total: ``total``, else ``len(pipe)``
        where known); prints the bottleneck verdict at the end."""
        from weft.data._progress import progress

        return progress(self, total=total, description=description)

    def close(self) -> None:
        """Stop the pass in progress, if any: workers, threads and processes end
        (also those kept between passes by :meth:`persistent_workers`)."""
        run = self._live()
        if run is not None:
            run.close()
        self._park.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        """How many items one iteration yields, where that is known without reading: a
        random-access source followed only by map (not ``on_error="skip"``), shuffle,
        batch, prefetch, take and skip; times the epochs of one iteration. Otherwise
        ``TypeError``, as for any object without a length."""
        if self._epochs is None:
            raise TypeError("len() of a pipeline with epochs(None) is unbounded: it runs until stopped")
        return chain_length(self._specs) * self._epochs

    def __bool__(self) -> bool:
        return True  # a pipeline is a pipeline, whatever len() says (and where it cannot)

    def __repr__(self) -> str:
        stages = " -> ".join(s.describe() for s in self._specs)
        if self._epochs != 1:
            stages += f" -> epochs({self._epochs})"
        return f"Pipeline({stages})"
