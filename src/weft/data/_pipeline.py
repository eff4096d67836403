"""Pipeline: the chain a user builds, and the run that iterating it starts.

A :class:`Pipeline` is an immutable description: every chaining method returns a new
one. Iterating it starts a *run* (the running nodes, their executors and threads).
The run belongs to the iterator alone, so breaking out of a ``for`` loop, an
exception in the loop body, ``close()`` or garbage collection all stop it; its
final state and statistics stay readable from the pipeline.
"""

from __future__ import annotations

import logging
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from weft import runtime
from weft.data._build import Spec, build_chain
from weft.data._node import Node
from weft.data._stats import PipelineStats, verdict
from weft.errors import ConfigError, ResumeError

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)

_STATE_VERSION = 1
_FOLDS_PAST = ("map", "filter")  # stages a shuffle/shard on a random-access source commutes with
_BACKENDS = ("auto", "thread", "process", "serial")
_ON_ERROR = ("raise", "skip", "retry")


def _positive(name: str, value: Any, *, zero: bool = False) -> int:
    low = 0 if zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def _fn_name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__name__", None) or type(fn).__name__)


def _close_parked(parked: dict[int, Any]) -> None:
    """Stop the workers a persistent pipeline kept between passes."""
    while parked:
        _index, (executor, *_rest) = parked.popitem()
        executor.close(cancel=True)


class _Run:
    """One pass over the pipeline: owns the nodes; closing it stops every worker."""

    def __init__(self, pipe: Pipeline, node: Node, *, epoch: int, end: int | None, state: Any,
                 finished: bool) -> None:
        self._pipe = pipe
        self.node = node
        self.epoch = epoch
        self.end = end
        self.finished = finished
        self.closed = False
        self.yielded = 0
        self.wait = 0.0
        self.started = time.perf_counter()
        node.set_epoch(epoch)
        node.restore(state)

    def __iter__(self) -> _Run:
        return self

    def __next__(self) -> Any:
        if self.finished or self.closed:
            raise StopIteration
        start = time.perf_counter()
        try:
            while True:
                try:
                    _key, value = self.node.next()
                    break
                except StopIteration:
                    if self.end is not None and self.epoch + 1 >= self.end:
                        self.finished = True
                        raise
                    self.epoch += 1
                    self.node.set_epoch(self.epoch)
                    self.node.restore(None)
        except BaseException:
            self.close()
            raise
        self.wait += time.perf_counter() - start
        self.yielded += 1
        return value

    def state_dict(self) -> dict[str, Any]:
        stages = None if self.finished else self.node.export(self.node.state())
        return {"version": _STATE_VERSION, "epoch": self.epoch, "end": self.end,
                "finished": self.finished, "stages": stages}

    def stats(self) -> PipelineStats:
        now = time.perf_counter()
        stages = tuple(n.stats(now) for n in self.node.chain())
        elapsed = now - self.started
        fraction = min(1.0, self.wait / elapsed) if elapsed > 0 else 0.0
        text = verdict(stages, consumer_wait_fraction=fraction, gil=runtime.gil_enabled(),
                       cores=runtime.usable_cores())
        return PipelineStats(stages=stages, consumer_wait_seconds=self.wait, elapsed_seconds=elapsed, verdict=text)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._pipe._remember(self.state_dict(), self.stats())
        finally:
            self.closed = True
            self.node.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


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
        self._run: weakref.ref[_Run] | None = None
        self._last_state: dict[str, Any] | None = None
        self._last_stats: PipelineStats | None = None
        self._persistent = False
        # map stage index -> its parked workers, between passes (persistent_workers only)
        self._parked: dict[int, Any] = {}
        self._release = weakref.finalize(self, _close_parked, self._parked)

    # -- building ----------------------------------------------------------------------
    def _then(self, spec: Spec) -> Pipeline:
        return self._derive(self._specs + (spec,))

    def _derive(self, specs: tuple[Spec, ...]) -> Pipeline:
        out = Pipeline(specs, classes=self._classes)
        out._epochs, out._epoch = self._epochs, self._epoch
        out._persistent = self._persistent
        return out

    def _foldable(self) -> bool:
        return self._specs[0].kind == "random" and all(s.kind in _FOLDS_PAST for s in self._specs[1:])

    def _fold(self, transform: tuple[Any, ...]) -> Pipeline:
        source = self._specs[0]
        folded = source.replace(transforms=source.args["transforms"] + (transform,))
        return self._derive((folded,) + self._specs[1:])

    @property
    def classes(self) -> list[str]:
        """Class names of a ``from_image_folder`` source (index = class index)."""
        if self._classes is None:
            raise AttributeError("this pipeline's source has no classes: only from_image_folder sets them")
        return list(self._classes)

    def map(self, fn: Callable[[Any], Any], *, workers: int | None = None, backend: str = "auto",
            ordered: bool = True, max_in_flight: int | None = None, on_error: str = "raise",
            retries: int = 2, name: str | None = None) -> Pipeline:
        """Apply ``fn`` to every item on ``workers`` workers (default: usable cores).

        ``backend``: ``"auto"`` (threads when the GIL is off or ``fn`` releases it, as
        measured on the first items; processes otherwise), ``"thread"``, ``"process"``
        (``fn`` must be importable) or ``"serial"`` (inline). ``ordered=False`` hands
        results on as they complete. ``on_error``: ``"raise"`` (with the source index),
        ``"skip"`` (counted in stats) or ``"retry"`` (``retries`` more tries, then raise).
        """
        if not callable(fn):
            raise ConfigError(f"map needs a callable, got {fn!r}")
        if backend not in _BACKENDS:
            raise ConfigError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        if on_error not in _ON_ERROR:
            raise ConfigError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")
        if workers is None:
            workers = runtime.usable_cores()
        workers = _positive("workers", workers, zero=True)
        if workers == 0:
            backend = "serial"
        workers = max(1, workers)
        limit = None if max_in_flight is None else _positive("max_in_flight", max_in_flight)
        return self._then(Spec("map", dict(fn=fn, workers=workers, backend=backend, ordered=bool(ordered),
                                           max_in_flight=limit, on_error=on_error,
                                           retries=_positive("retries", retries, zero=True),
                                           name=name or _fn_name(fn))))

    def filter(self, pred: Callable[[Any], Any], *, name: str | None = None) -> Pipeline:
        """Keep the items for which ``pred(item)`` is true (runs inline)."""
        if not callable(pred):
            raise ConfigError(f"filter needs a callable, got {pred!r}")
        return self._then(Spec("filter", dict(pred=pred, name=name or _fn_name(pred))))

    def shard(self, rank: int, world_size: int) -> Pipeline:
        """Keep this rank's share of the source (item ``i`` goes to rank ``i % world_size``)."""
        world_size = _positive("world_size", world_size)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ConfigError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
        if self._foldable():
            return self._fold(("shard", rank, world_size))
        if any(s.kind in ("batch", "unbatch") for s in self._specs):
            raise ConfigError("shard before batch: shard splits source items, so put .shard() first")
        return self._then(Spec("shard", dict(rank=rank, world_size=world_size)))

    def shuffle(self, buffer: int = 1024, seed: int = 0) -> Pipeline:
        """A seeded shuffle, reshuffled every epoch.

        On a random-access source (with only map/filter in between) this is a full
        permutation of the source indices and ``buffer`` is not needed; on a stream it
        is a buffer shuffle over ``buffer`` items.
        """
        buffer = _positive("buffer", buffer)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        if self._foldable():
            return self._fold(("shuffle", seed))
        return self._then(Spec("shuffle", dict(buffer=buffer, seed=seed)))

    def batch(self, size: int, *, drop_last: bool = False,
              collate: Callable[[Sequence[Any]], Any] | None = None) -> Pipeline:
        """Group ``size`` items; ``collate`` (default: stack arrays and numbers per field)."""
        return self._then(Spec("batch", dict(size=_positive("size", size), drop_last=bool(drop_last),
                                             collate=collate)))

    def unbatch(self) -> Pipeline:
        """Split batches back into items."""
        return self._then(Spec("unbatch"))

    def prefetch(self, n: int = 2) -> Pipeline:
        """Run everything before this point in a background thread, ``n`` items ahead."""
        return self._then(Spec("prefetch", dict(n=_positive("n", n))))

    def take(self, n: int) -> Pipeline:
        """End each epoch after ``n`` items."""
        return self._then(Spec("take", dict(n=_positive("n", n, zero=True))))

    def skip(self, n: int) -> Pipeline:
        """Drop the first ``n`` items of each epoch."""
        return self._then(Spec("skip", dict(n=_positive("n", n, zero=True))))

    def epochs(self, n: int | None) -> Pipeline:
        """Iterate ``n`` epochs in one pass (``None``: forever), reshuffling each."""
        out = self._derive(self._specs)
        out._epochs = None if n is None else _positive("epochs", n)
        return out

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next pass starts at (seeds every shuffle)."""
        self._epoch = _positive("epoch", epoch, zero=True)

    # -- running -----------------------------------------------------------------------
    def _live(self) -> _Run | None:
        run = None if self._run is None else self._run()
        return None if run is None or run.closed else run

    def __iter__(self) -> Iterator[Any]:
        old = self._live()
        if old is not None:
            old.close()
        node = build_chain(self._specs)
        if self._persistent:
            self._lend_workers(node)
        loaded, self._loaded = self._loaded, None
        self._last_state = None
        if loaded is None:
            end = None if self._epochs is None else self._epoch + self._epochs
            run = _Run(self, node, epoch=self._epoch, end=end, state=None, finished=False)
        else:
            try:
                internal = None if loaded["stages"] is None else node.load(loaded["stages"])
                run = _Run(self, node, epoch=loaded["epoch"], end=loaded["end"], state=internal,
                           finished=bool(loaded["finished"]))
            except BaseException:
                node.close()
                raise
        self._run = weakref.ref(run)
        return run

    def _inexact_resume(self) -> bool:
        """Whether an unordered map runs over batches an earlier unordered map composed."""
        mixed = batched_mixed = False
        for spec in self._specs:
            a = spec.args
            unordered = spec.kind == "map" and not a["ordered"] and a["backend"] != "serial"
            if unordered and batched_mixed:
                return True
            if unordered:
                mixed = True
            elif spec.kind == "batch" and mixed:
                batched_mixed = True
            elif spec.kind == "unbatch":
                batched_mixed = False
        return False

    def _lend_workers(self, node: Node) -> None:
        from weft.data._map import MapNode

        parked = self._parked
        for stage in node.chain():
            if isinstance(stage, MapNode):
                kept = parked.pop(stage.index, None)
                if kept is not None:
                    stage.adopt(kept)
                stage.park = lambda p, i=stage.index: parked.__setitem__(i, p)  # type: ignore[misc]

    def persistent_workers(self, keep: bool = True) -> Pipeline:
        """Keep map workers (threads and processes) running between passes.

        ``for epoch in range(n): for batch in pipe: ...`` then starts workers once, as
        DataLoader's ``persistent_workers=True`` does. They stop at :meth:`close`, at the
        end of a ``with pipe:`` block, or when the pipeline is garbage-collected.
        """
        out = self._derive(self._specs)
        out._persistent = bool(keep)
        return out

    def _remember(self, state: dict[str, Any], stats: PipelineStats) -> None:
        self._last_state, self._last_stats = state, stats

    def state_dict(self) -> dict[str, Any]:
        """Where the current (or last) pass stands: small, plain data.

        Loading it into the same pipeline yields exactly the items not yet yielded.
        """
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
        return {"version": _STATE_VERSION, "epoch": self._epoch, "end": end, "finished": False, "stages": None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state`` on the next iteration (closes a pass in progress)."""
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise ResumeError(f"not a weft.data pipeline state (version {_STATE_VERSION}): {state!r:.80}")
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

    def stats(self) -> PipelineStats:
        """Per-stage statistics of the current (or last) pass, with a bottleneck verdict."""
        run = self._live()
        if run is not None:
            return run.stats()
        if self._last_stats is not None:
            return self._last_stats
        return PipelineStats(stages=(), consumer_wait_seconds=0.0, elapsed_seconds=0.0,
                             verdict="not started: iterate the pipeline first")

    def progress(self, *, total: int | None = None, description: str = "weft.data") -> Iterator[Any]:
        """Iterate with a rich progress bar; prints the bottleneck verdict at the end."""
        from weft.data._progress import progress

        return progress(self, total=total, description=description)

    def close(self) -> None:
        """Stop the pass in progress, if any: workers, threads and processes end
        (also those kept between passes by :meth:`persistent_workers`)."""
        run = self._live()
        if run is not None:
            run.close()
        _close_parked(self._parked)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "Pipeline(" + " -> ".join(s.kind for s in self._specs) + ")"
